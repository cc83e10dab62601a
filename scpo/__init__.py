"""scpo: Steerable Cultural Preference Optimization of reward models, reproducibly.

Two layers. The core follows the paper's method step by step, one job per module; a reader of
the paper finds the method in ``method``, ``variants``, ``scoring``, ``experiment`` and
``evaluate`` (with ``models`` for the reward models they train):

- ``config``     every setting, described once next to its field; presets
- ``pairs``      the tidy preference-pair table every data source produces
- ``prism``      PRISM (hub or local jsonl) -> pairs
- ``goqa``       GlobalOpinionQA (hub or local csv) -> pairs
- ``simulate``   a cultural-preference simulator writing PRISM-format files, truth known
- ``data``       one door from ``[data]`` to pairs, whatever the source; the global pool
- ``cache``      on-disk cache for embeddings and global-RM scores
- ``outdir``     where scpo may write: a user's folders are never replaced or deleted
- ``method``     the equations: p_glo, the filter, the weights, the weighted Bradley-Terry loss
- ``models``     reward models behind one door: built, loaded and asked alike on every tier
- ``scoring``    a run's shared inputs: its pairs, its global RM and that RM's scores, once
- ``variants``   the paper's variants as data
- ``experiment`` run countries x variants x seeds
- ``evaluate``   accuracy, pure-minority subset, bootstrap CIs, 1 - JSD, data efficiency
- ``results``    what a run writes and reads back, and the runs the chapters reopen
- ``companion``  the book's studies and tools, built on the core (which never imports them)
- ``cli``        the ``scpo`` command: the front door to both layers

``tests/test_layout.py`` holds the line: no core module imports ``scpo.companion``.
"""

__version__ = "0.1.0"
