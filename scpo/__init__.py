"""scpo: Steerable Cultural Preference Optimization of reward models, reproducibly.

The package follows the method step by step; each module has one job:

- ``pairs``      the tidy preference-pair table every data source produces
- ``prism``      PRISM (hub or local jsonl) -> pairs
- ``goqa``       GlobalOpinionQA (hub or local csv) -> pairs
- ``simulate``   a cultural-preference simulator writing PRISM-format files, truth known
- ``method``     the equations: p_glo, the filter, the weights, the weighted Bradley-Terry loss
- ``cache``      on-disk cache for embeddings and global-RM scores
- ``outdir``     where scpo may write: a user's folders are never replaced or deleted
- ``models``     reward models behind one interface (embedding head, Hugging Face)
- ``variants``   the paper's variants as data
- ``experiment`` run countries x variants x seeds
- ``published``  the authors' published country RMs (ids, model-card records) to rescore
- ``evaluate``   accuracy, pure-minority subset, bootstrap CIs, 1 - JSD, data efficiency
- ``scorecard``  does the paper hold up: its numbers and claims against every source
- ``bon``        best-of-N: the response a reward model picks, and what it is worth
- ``fetch``      the real inputs at their pinned revisions (``pins.toml``) into a data directory
- ``cli``        the ``scpo`` command
"""

__version__ = "0.1.0"
