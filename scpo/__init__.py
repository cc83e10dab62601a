"""scpo: Steerable Cultural Preference Optimization of reward models, reproducibly.

The package follows the method step by step; each module has one job:

- ``config``     every setting, described once next to its field; presets
- ``pairs``      the tidy preference-pair table every data source produces
- ``prism``      PRISM (hub or local jsonl) -> pairs
- ``goqa``       GlobalOpinionQA (hub or local csv) -> pairs
- ``simulate``   a cultural-preference simulator writing PRISM-format files, truth known
- ``data``       one door from ``[data]`` to pairs, whatever the source; the global pool
- ``fetch``      the real inputs at their pinned revisions (``pins.toml``) into a data directory
- ``cache``      on-disk cache for embeddings and global-RM scores
- ``outdir``     where scpo may write: a user's folders are never replaced or deleted
- ``method``     the equations: p_glo, the filter, the weights, the weighted Bradley-Terry loss
- ``models``     reward models behind one door: built, loaded and asked alike on every tier
- ``scoring``    a run's shared inputs: its pairs, its global RM and that RM's scores, once
- ``variants``   the paper's variants as data
- ``experiment`` run countries x variants x seeds
- ``curves``     learning curves: accuracy against the share of users; the share to match
- ``results``    what a run writes and reads back, and the runs the chapters reopen
- ``conditioned`` one reward model for every country: its training set, runs, timing
- ``steer``      steering at inference: the reward's and the weights' mix, the dial
- ``browser``    the embedding tier in a reader's browser: ONNX encoder, heads as arrays
- ``jsruntime``  the browser page's JavaScript: npm packages at pinned versions and sha512
- ``sliders``    figures that answer a slider: precomputed values along a dial
- ``published``  the authors' published country RMs (ids, model-card records) to rescore
- ``evaluate``   accuracy, pure-minority subset, bootstrap CIs, 1 - JSD, data efficiency
- ``report``     the book's tables: macro averages, the main table, claims' verdicts
- ``plots``      the book's figures
- ``carb``       CARB's best-of-N items, scored by any reward model
- ``bon``        best-of-N: the response a reward model picks, and what it is worth
- ``scorecard``  does the paper hold up: its numbers and claims against every source
- ``cli``        the ``scpo`` command
"""

__version__ = "0.1.0"
