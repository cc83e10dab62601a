"""The global RM scores each distinct (prompt, response) once, and every user shares the scores.

Scores are cached on disk under the model's fingerprint and each text's hash, so every
variant, country, seed and notebook reuses them. The global RM itself is
``scpo.models.build_global``'s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scpo.cache import ArrayCache, cached_compute
from scpo.config import cache_dir
from scpo.models import RewardModel
from scpo.models.base import text_rows
from scpo.pairs import text_key


def score_texts(rm: RewardModel, texts: pd.DataFrame, root: Path | None = None) -> np.ndarray:
    """r(x, y) for each row of ``texts`` (columns prompt, response), through the score cache."""
    keys = [text_key(p, r) for p, r in zip(texts["prompt"], texts["response"])]
    cache = ArrayCache((root or cache_dir()) / "scores", rm.fingerprint())

    def compute(idx: list[int]) -> np.ndarray:
        sub = texts.iloc[idx]
        return rm.score(sub["prompt"].tolist(), sub["response"].tolist()).astype(np.float64)

    return np.asarray(cached_compute(cache, keys, compute), dtype=np.float64).reshape(-1)


def add_global_scores(pairs: pd.DataFrame, rm: RewardModel,
                      root: Path | None = None) -> pd.DataFrame:
    """Columns ``rg_chosen`` and ``rg_rejected``: r_glo of y+ and y-, each text scored once."""
    texts, ic, ir = text_rows(pairs)
    scores = score_texts(rm, texts, root)
    return pairs.assign(rg_chosen=scores[ic], rg_rejected=scores[ir])
