"""The companion: the book's studies and tools, beside the method (``scpo``'s core).

Each module builds on the core and none of the core imports it (``tests/test_layout.py``):

- ``report``     the book's tables: macro averages, the main table, claims' verdicts
- ``plots``      the book's figures
- ``curves``     learning curves: accuracy against the share of users; the share to match
- ``scorecard``  does the paper hold up: its numbers and claims against every source
- ``conditioned`` one reward model for every country: its training set, runs, timing
- ``steer``      steering at inference: the reward's and the weights' mix, the dial
- ``bon``        best-of-N: the response a reward model picks, and what it is worth
- ``carb``       CARB's best-of-N items, scored by any reward model
- ``published``  the authors' published country RMs (ids, model-card records) to rescore
- ``fetch``      the real inputs at their pinned revisions (``scpo/pins.toml``) into a data
                 directory
- ``reward_fn``  an exported RM as a TRL reward function, scored as it was trained
- ``browser``    the embedding tier in a reader's browser: ONNX encoder, heads as arrays
- ``jsruntime``  the browser page's JavaScript: npm packages at pinned versions and sha512
- ``sliders``    figures that answer a slider: precomputed values along a dial
"""
