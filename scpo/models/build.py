"""Making reward models: what a run starts from, on whichever tier its config names.

    build_conditioned(global_rm, countries)  # one untrained model for every country
"""

from __future__ import annotations

from collections.abc import Sequence

from scpo.models.base import ConditionedRM, RewardModel


def build_conditioned(global_rm: RewardModel, countries: Sequence[str],
                      template: str | None = None) -> ConditionedRM:
    """An untrained conditioned model for ``countries``, started from ``global_rm`` and of its
    tier: the embedding tier's country-vector head (every vector at 0: it scores what the global
    RM scores), else a copy of the global RM reading the country from the prompt (``template``,
    default ``DEFAULT_TEMPLATE``)."""
    from scpo.models.conditioned import DEFAULT_TEMPLATE, CountryHeadRM, PromptConditionedRM
    from scpo.models.embedding import EmbeddingRM

    if isinstance(global_rm, EmbeddingRM):
        return CountryHeadRM.from_global(global_rm, countries)
    return PromptConditionedRM(global_rm.copy(), countries, template or DEFAULT_TEMPLATE)
