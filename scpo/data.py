"""One entry point from a DataConfig to a PairData, whatever the source, and the global pool."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import pandas as pd

from scpo.cache import write_dir_atomically
from scpo.config import DataConfig, cache_dir
from scpo.pairs import MAJORITY_COUNTRIES, PAPER_COUNTRIES, PairData, file_fingerprint

# The code that turns a simulation's files into pairs: a change to any of it rebuilds the
# cached pair tables (``cached_pairs``).
LOADER_SOURCES = ("data.py", "pairs.py", "prism.py", "simulate.py")
PAIR_CACHE_FORMAT = "scpo-pairs-1"

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

        def build() -> PairData:
            data = load_prism(sim_dir, prompt_context=cfg.prompt_context, **split)
            data.pairs = attach_truth(data.pairs, sim_dir)
            data.source = "sim"
            data.meta["sim_dir"] = str(sim_dir)
            return data

        return cached_pairs(sim_dir, {**split, "prompt_context": cfg.prompt_context}, build)
    raise ValueError(f"unknown dataset {cfg.dataset!r}; choose one of {DATASETS}")


def resolve_countries(names: list[str], data: PairData) -> list[str]:
    """["all"] -> the paper's 7 countries; every name must have pairs (error lists them)."""
    from scpo.pairs import select_country

    wanted = PAPER_COUNTRIES if list(names) == ["all"] else list(names)
    for c in wanted:
        select_country(data.pairs, c)
    return wanted


def covered_countries(data: PairData, names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The countries of ``names`` (["all"]: the paper's 7) a run can train and test on, and why
    each other one cannot (no pairs; no training or no test pairs): a book built on someone's
    PRISM-format data or GlobalOpinionQA copy runs the countries it has and says which it
    left out, instead of failing on the first one missing."""
    wanted = PAPER_COUNTRIES if list(names) == ["all"] else list(names)
    splits = data.pairs.groupby("country")["split"].agg(lambda s: set(s))
    ok, why = [], {}
    for c in wanted:
        have = splits.get(c, set())
        missing = [s for s in ("train", "test") if s not in have]
        if not have:
            why[c] = "no pairs in this data"
        elif missing:
            why[c] = f"no {' and no '.join(missing)} pairs"
        else:
            ok.append(c)
    return ok, why


def global_pool(data: PairData, without: Collection[str] = ()) -> pd.DataFrame:
    """Training pairs of the "global" population that trains a global RM from scratch.

    PRISM-format data (PRISM, the simulator): the majority countries (United States, United
    Kingdom). GlobalOpinionQA: every national sample's training questions. ``without``:
    countries taken out of it (a global RM that never saw them, for a left-out country).
    """
    train = data.pairs[data.pairs["split"] == "train"]
    if data.source == "goqa":
        pool = train
    else:
        pool = train[train["country"].isin(MAJORITY_COUNTRIES)]
    pool = pool[~pool["country"].isin(list(without))]
    if pool.empty:
        raise ValueError(
            f"the global pool of {data.source!r} data is empty (countries with training pairs: "
            f"{sorted(train['country'].unique())}, left out: {sorted(without)}); a global RM "
            "needs majority-country "
            f"({MAJORITY_COUNTRIES}) training pairs, or give a trained global model.")
    return pool


def pair_cache_key(data_dir: Path, settings: dict[str, Any]) -> str:
    """What a pair table is made of: the bytes of every file in ``data_dir``, where it is, the
    loader's settings and its source code (``LOADER_SOURCES``)."""
    files = sorted(p for p in data_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    code = hashlib.sha256()
    for name in LOADER_SOURCES:
        code.update((Path(__file__).parent / name).read_bytes())
    what = {"format": PAIR_CACHE_FORMAT, "dir": str(data_dir.resolve()),
            "files": [p.name for p in files], "bytes": file_fingerprint(*files),
            "settings": settings, "code": code.hexdigest()}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def cached_pairs(data_dir: Path, settings: dict[str, Any],
                 build: Callable[[], PairData]) -> PairData:
    """``build()``, or the table it built before from the same files, settings and code.

    Every notebook of the book loads the same simulation; rebuilding its pair table (parsing
    and joining ~170k JSON lines) takes seconds each time, reading it back a fraction of one.
    Stored under ``<cache>/pairs/<key>/`` (the table as parquet, the rest as JSON), written to a
    temporary directory and renamed into place, so an interrupted write is never read. An entry
    that cannot be read is reported, removed and built again.
    """
    where = cache_dir() / "pairs" / pair_cache_key(Path(data_dir), settings)
    if (where / "record.json").is_file():
        try:
            record = json.loads((where / "record.json").read_text(encoding="utf-8"))
            pairs = pd.read_parquet(where / "pairs.parquet")
            return PairData(pairs=pairs, source=record["source"], report=record["report"],
                            fingerprint=record["fingerprint"], meta=record["meta"])
        except (OSError, ValueError, KeyError) as e:
            warnings.warn(f"the cached pair table {where} cannot be read ({e}); it is removed "
                          "and built again", stacklevel=2)
            shutil.rmtree(where, ignore_errors=True)
    data = build()
    record = {"source": data.source, "report": data.report, "fingerprint": data.fingerprint,
              "meta": data.meta}
    try:
        text = json.dumps(record)
    except TypeError:  # a report JSON cannot hold: built every time, never stored changed
        return data
    if data.options is not None or json.loads(text) != record:
        return data

    def write(tmp: Path) -> None:
        data.pairs.to_parquet(tmp / "pairs.parquet")
        (tmp / "record.json").write_text(text, encoding="utf-8")

    try:
        write_dir_atomically(where, write)
    except OSError as e:  # e.g. a full disk: the table is still right, only not stored
        warnings.warn(f"the pair table could not be cached in {where} ({e})", stacklevel=2)
    return data
