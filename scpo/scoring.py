"""A run's shared inputs: its pairs, its global RM, and that RM's score of every pair.

    prep = prepare(cfg)        # the pairs, the global RM (scpo.models.build_global), its scores

The global RM scores each distinct (prompt, response) once; the scores are cached on disk under
the model's fingerprint and each text's hash, so every variant, country, seed and notebook
reuses them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scpo import models
from scpo.cache import ArrayCache, cached_compute
from scpo.config import Config, cache_dir
from scpo.data import global_pool, load_pairs, resolve_countries
from scpo.models import RewardModel
from scpo.models.base import text_rows
from scpo.pairs import PairData, text_key
from scpo.variants import Variant, resolve


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


@dataclass
class RunInputs:
    """A run's inputs, shared by every country, variant and seed (``prepare``'s): its config,
    its data, the pairs with the global RM's scores, that RM and the countries. Its record is
    ``scpo.results.run_record``."""

    cfg: Config
    data: PairData
    pairs: pd.DataFrame  # data.pairs + rg_chosen, rg_rejected
    global_rm: RewardModel
    countries: list[str]

    def data_description(self) -> dict[str, str]:
        return {"source": self.data.source, "fingerprint": self.data.fingerprint}


def prepare(cfg: Config, variants: Sequence[Variant] | None = None) -> RunInputs:
    """Load pairs, get the global RM and score every distinct text with it once
    (``variants``: ``cfg.run.variants`` resolved, when the caller has them)."""
    data = load_pairs(cfg.data)
    if cfg.data.prompt_context == "history" and models.reads_chat(cfg.model):
        # a chat-template model reads the conversation as a chat list, not as a joined text
        data.pairs = data.pairs.assign(prompt=data.pairs["messages"])
    countries = resolve_countries(cfg.run.countries, data)
    global_rm = models.build_global(cfg, data)
    variants = resolve(cfg.run.variants) if variants is None else variants
    if any(v.train for v in variants):
        pairs = add_global_scores(data.pairs, global_rm)
    else:  # evaluation only (e.g. the published RMs): score just the countries' test pairs
        mine = data.pairs[data.pairs["country"].isin(countries)]
        test = add_global_scores(mine[mine["split"] == "test"], global_rm)
        pairs = mine.assign(rg_chosen=np.nan, rg_rejected=np.nan)
        pairs.loc[test.index, ["rg_chosen", "rg_rejected"]] = test[["rg_chosen", "rg_rejected"]]
    global_rm.offload()  # its scores are in the table; from now on it is only copied
    return RunInputs(cfg, data, pairs, global_rm, countries)


def prepare_without(prep: RunInputs, countries: Collection[str]) -> tuple[RunInputs, list[str]]:
    """The run's data with a global RM that never saw ``countries``, and which of them it had
    to be retrained without.

    When the run trained its global RM on a pool holding some of them (GlobalOpinionQA's pool
    is every country's training questions; PRISM's and the simulator's, the majority
    countries), one trained the same way on the pool without them (cached as the run's is),
    every pair rescored by it; else the run's own: the pool never held them, or the global RM
    is a given model.
    """
    held = []
    if models.trains_global(prep.cfg.model):
        pool = global_pool(prep.data)
        held = sorted(set(countries) & set(pool["country"]))
    if not held:
        return prep, []
    rm = models.build_global(prep.cfg, prep.data, without=held)
    pairs = add_global_scores(prep.pairs.drop(columns=["rg_chosen", "rg_rejected"]), rm)
    rm.offload()
    return RunInputs(prep.cfg, prep.data, pairs, rm, prep.countries), held
