"""One entry point from a DataConfig to a PairData, whatever the source, and the global pool."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scpo.config import DataConfig, cache_dir
from scpo.pairs import MAJORITY_COUNTRIES, PAPER_COUNTRIES, PairData

DATASETS = ("sim", "prism", "goqa")


def load_pairs(cfg: DataConfig) -> PairData:
    """Build the pair table of ``cfg.dataset`` ("sim", "prism" or "goqa")."""
    split = dict(test_frac=cfg.test_frac, split_seed=cfg.split_seed, val_frac=cfg.val_frac)
    from scpo.prism import PROMPT_CONTEXTS

    if cfg.prompt_context not in PROMPT_CONTEXTS or (
            cfg.dataset == "goqa" and cfg.prompt_context != "turn"):
        raise ValueError(f"data.prompt_context={cfg.prompt_context!r}: PRISM-format data takes "
                         f"one of {PROMPT_CONTEXTS}; GlobalOpinionQA only 'turn'")
    if cfg.dataset == "prism":
        from scpo.prism import load_prism

        return load_prism(cfg.data_dir, revision=cfg.revision, prompt_context=cfg.prompt_context,
                          **split)
    if cfg.dataset == "goqa":
        from scpo.goqa import load_goqa

        return load_goqa(cfg.data_dir, revision=cfg.revision, min_share_gap=cfg.min_share_gap,
                         **split)
    if cfg.dataset == "sim":
        from scpo.prism import load_prism
        from scpo.simulate import attach_truth, ensure_simulation, sim_knobs

        # the simulator holds each split's response texts apart; it must split the users as the
        # loader will, so it is given the same test fraction and seed
        sim_dir = Path(cfg.data_dir) if cfg.data_dir else ensure_simulation(
            sim_knobs(cfg.sim, test_frac=cfg.test_frac, split_seed=cfg.split_seed),
            cache_dir() / "sim")
        data = load_prism(sim_dir, prompt_context=cfg.prompt_context, **split)
        data.pairs = attach_truth(data.pairs, sim_dir)
        data.source = "sim"
        data.meta["sim_dir"] = str(sim_dir)
        return data
    raise ValueError(f"unknown dataset {cfg.dataset!r}; choose one of {DATASETS}")


def resolve_countries(names: list[str], data: PairData) -> list[str]:
    """["all"] -> the paper's 7 countries; every name must have pairs (error lists them)."""
    from scpo.pairs import select_country

    wanted = PAPER_COUNTRIES if list(names) == ["all"] else list(names)
    for c in wanted:
        select_country(data.pairs, c)
    return wanted


def global_pool(data: PairData) -> pd.DataFrame:
    """Training pairs of the "global" population that trains a global RM from scratch.

    PRISM-format data (PRISM, the simulator): the majority countries (United States, United
    Kingdom). GlobalOpinionQA: every national sample's training questions.
    """
    train = data.pairs[data.pairs["split"] == "train"]
    if data.source == "goqa":
        pool = train
    else:
        pool = train[train["country"].isin(MAJORITY_COUNTRIES)]
    if pool.empty:
        raise ValueError(
            f"the global pool of {data.source!r} data is empty (countries with training pairs: "
            f"{sorted(train['country'].unique())}); a global RM needs majority-country "
            f"({MAJORITY_COUNTRIES}) training pairs, or give a trained global model.")
    return pool
