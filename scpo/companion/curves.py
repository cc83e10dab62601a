"""Learning curves: accuracy against the share of a country's training users, and the share at
which SCPO (F+W) matches the baseline trained on every user.

    points = curve_outcomes(prep, ["Chile"], shares=SHARES, seeds=[0, 1, 2])  # cached per point
    curve = curve_table(points)                     # macro and per-country accuracy, intervals
    match = share_to_match_table(points)            # the smallest share that matches

A subset is of *users*, not pairs: what a smaller survey of the country would have given. For
each (country, seed) the country's training users are put in one random order
(``user_order``); the subset at share s is its first ceil(s x n) users (``user_subset``), so
the subsets of one seed are nested, and another seed draws another order. The seed also seeds
the training, so the spread over seeds carries both which users were surveyed and the training
noise. Each variant's filter runs inside the subset (``scpo.experiment.kept_weights``), as it
would on less data; every model trains for ``train.max_steps`` steps whatever the subset's size
(the paper's step count sets the length, not epochs) and is scored on the country's full test
set. Intervals are ``scpo.evaluate.macro_bootstrap``'s, as on "Does the paper hold up?": test
users and seeds resampled, paired across every share and variant.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from scpo import evaluate
from scpo.companion import report
from scpo.config import cache_dir
from scpo.experiment import (
    EmptyFilterError,
    _train,
    country_splits,
    kept_weights,
    test_outcomes,
    test_scores,
    training_counts,
)
from scpo.results import country_slug
from scpo.scoring import RunInputs
from scpo.variants import VARIANTS

SHARES = (0.1, 0.2, 0.4, 0.7, 1.0)  # of a country's training users
CURVE_VARIANTS = ("global", "baseline", "filtered", "scpo_fw")  # the global RM is the floor
NOT_REACHED = math.inf  # a share to match that no share of the grid reaches
PAPER_EFFICIENCY = (1.7, 2.8)  # reported in the paper: "170-280 % data efficiency"
# The code a cached point depends on (besides the data, the global RM and the settings, which
# its key holds): editing any of it computes the points again.
CURVE_SOURCES = ("companion/curves.py", "experiment.py", "variants.py", "method.py", "evaluate.py",
                 "models")
CACHE_FORMAT = "scpo-curves-1"


# ---- which users a point trains on ----

def user_order(users: Any, seed: int, country: str) -> np.ndarray:
    """The distinct ``users`` (as strings) in a random order drawn from (``seed``, the
    country's name): sorted first, so the order does not depend on the rows' order."""
    names = np.unique(np.asarray(users).astype(str))
    rng = np.random.default_rng([int(seed), zlib.crc32(country.encode("utf-8"))])
    return names[rng.permutation(len(names))]


def n_users(share: float, n_total: int) -> int:
    """How many of ``n_total`` users a share keeps: ceil(share x n), at least one."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"a share of training users must be in (0, 1], got {share!r}")
    return max(1, math.ceil(round(share * n_total, 9)))  # round: 0.7 * 10 is 7.000000000000001


def user_subset(train: pd.DataFrame, share: float, seed: int, country: str) -> pd.DataFrame:
    """The training pairs of the first ``n_users(share, n)`` users of ``user_order``: every
    pair of a kept user, none of another, in ``train``'s order. Nested in ``share`` for one
    ``seed``; share 1.0 is ``train`` itself."""
    order = user_order(train["user_id"], seed, country)
    kept = order[:n_users(share, len(order))]
    return train[train["user_id"].astype(str).isin(kept)].reset_index(drop=True)


# ---- one point: (country, share, seed, variant) ----

def point_namespace(prep: RunInputs) -> str:
    """The cache folder of a run's points: what decides every number of a point except its
    (country, share, seed, variant) — the data, the global RM, the method's, training's and
    model's settings and the code (``CURVE_SOURCES``)."""
    root = Path(__file__).parents[1]  # the package: CURVE_SOURCES are paths under it
    h = hashlib.sha256()
    for name in CURVE_SOURCES:
        p = root / name
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    cfg = prep.cfg
    what = {"format": CACHE_FORMAT, "data": prep.data.fingerprint,
            "global_rm": prep.global_rm.fingerprint(), "code": h.hexdigest(),
            "method": cfg.to_dict()["method"], "train": cfg.to_dict()["train"],
            "model": cfg.to_dict()["model"]}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:24]


def compute_point(prep: RunInputs, splits: dict[str, pd.DataFrame], country: str, share: float,
                  seed: int, variant: str) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """(what it trained on, its outcome on each test pair) of one model: ``variant`` trained
    with ``seed`` on the users ``user_subset`` keeps, scored on the full test set. The global
    RM trains on nothing (the same at every share). None for the outcomes when the filter kept
    no pair of the subset (``counts["empty_filter"]``): there is no model to score."""
    cfg = prep.cfg
    v = VARIANTS[variant]
    if v.external or v.tuned:
        raise ValueError(f"learning curves train {variant!r}? Only variants trained with the "
                         f"run's tau and beta are: {CURVE_VARIANTS}")
    train, test = user_subset(splits["train"], share, seed, country), splits["test"]
    if not v.train:
        model, w = prep.global_rm, np.zeros(len(train))
    else:
        try:
            w = kept_weights(v, train, cfg.method.tau, cfg.method.beta, seed, country)
        except EmptyFilterError:
            counts = training_counts(train, np.zeros(len(train), bool), 0.0)
            return {**counts, "empty_filter": True}, None
        model, _ = _train(prep, train, w, seed, cfg.train.lr, None)
    counts = {**training_counts(train, w > 0, float(w.sum())), "empty_filter": False}
    return counts, test_outcomes(test, test_scores(prep, model, test))


def _point_files(folder: Path, country: str, share: float, seed: int,
                 variant: str) -> tuple[Path, Path]:
    stem = f"{country_slug(country)}-{share:g}-{seed}-{variant}"
    return folder / f"{stem}.json", folder / f"{stem}.parquet"


def cached_point(prep: RunInputs, splits: dict[str, pd.DataFrame], country: str, share: float,
                 seed: int, variant: str, folder: Path
                 ) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """``compute_point`` through the cache under ``folder``: a JSON of the counts, written
    last (each file written whole, then renamed into place), and a parquet of the outcomes."""
    meta, table = _point_files(folder, country, share, seed, variant)
    if meta.is_file():
        counts = json.loads(meta.read_text(encoding="utf-8"))
        if counts["empty_filter"]:
            return counts, None
        if table.is_file():
            return counts, pd.read_parquet(table)
    counts, outcomes = compute_point(prep, splits, country, share, seed, variant)
    folder.mkdir(parents=True, exist_ok=True)
    if outcomes is not None:
        tmp = table.with_suffix(f".{os.getpid()}.part")
        outcomes.to_parquet(tmp, index=False)
        os.replace(tmp, table)
    tmp = meta.with_suffix(f".{os.getpid()}.part")
    tmp.write_text(json.dumps(counts), encoding="utf-8")
    os.replace(tmp, meta)
    return counts, outcomes


def curve_outcomes(prep: RunInputs, countries: Sequence[str], shares: Sequence[float] = SHARES,
                   seeds: Sequence[int] | None = None,
                   variants: Sequence[str] = CURVE_VARIANTS, *, progress: bool = True,
                   root: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(outcomes, counts) of every (country, share, seed, variant): one row per test pair of
    each point (``scpo.evaluate.pair_outcomes``' columns plus country, share, seed, variant),
    and one row per point of what it trained on. Each point is cached
    (``<cache>/curves/<point_namespace>/``), so a second call trains nothing. ``seeds``: None
    = the run's."""
    seeds = list(prep.cfg.run.seeds if seeds is None else seeds)
    shares = sorted(float(s) for s in shares)
    for s in shares:
        n_users(s, 1)  # a share outside (0, 1] is refused before any training
    folder = (root or cache_dir()) / "curves" / point_namespace(prep)
    jobs = [(c, s, seed, v) for c in countries for s in shares for seed in seeds
            for v in variants]
    frames, rows, splits = [], [], {}
    for c, s, seed, v in tqdm(jobs, desc="learning curves", disable=not progress):
        if c not in splits:
            splits[c] = country_splits(prep, c)
        counts, outcomes = cached_point(prep, splits[c], c, s, seed, v, folder)
        who = {"country": c, "share": s, "seed": seed, "variant": v}
        rows.append({**who, **counts})
        if outcomes is not None:
            frames.append(outcomes.assign(**who))
    return pd.concat(frames, ignore_index=True), pd.DataFrame(rows)


# ---- accuracy against the share, with intervals ----

def _test_set(outcomes: pd.DataFrame, test_set: str) -> pd.DataFrame:
    if test_set == "overall":
        return outcomes
    if test_set == "pure_minority":
        return outcomes[outcomes["pure_minority"]]
    raise ValueError(f"test set {test_set!r}: choose 'overall' or 'pure_minority'")


def wide_outcomes(outcomes: pd.DataFrame, columns: Sequence[tuple[str, float]],
                  test_set: str = "overall") -> pd.DataFrame:
    """One row per (country, seed, test pair, user) of ``test_set``, one column per (variant,
    share) of ``columns``: 1.0 / 0.0 for right / wrong, NaN where that point has no model (its
    filter kept no pair). Every column is scored on the same pairs, so a bootstrap of the rows
    resamples them all alike (paired)."""
    o = _test_set(outcomes, test_set)
    keys = ["country", "seed", "pair", "user_id"]
    parts = {}
    for v, s in columns:
        mine = o[(o["variant"] == v) & np.isclose(o["share"], s)]
        parts[(v, s)] = mine.set_index(keys)["correct"].astype(float)
    wide = pd.concat(parts, axis=1, names=["variant", "share"])
    missing = [c for c in columns if c not in wide.columns]
    for c in missing:
        wide[c] = np.nan
    return wide[list(columns)].sort_index()


def macro_points(wide: pd.DataFrame, n_boot: int = report.N_BOOT, seed: int = report.BOOT_SEED
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(point, replicates) in percent of each column of ``wide`` (``wide_outcomes``): the macro
    mean over its countries of the mean over seeds, and ``scpo.evaluate.macro_bootstrap``'s
    replicates, all columns from the same draws of users and seeds. A column with any NaN (a
    point without a model) is NaN throughout."""
    complete = wide.notna().all(axis=0).to_numpy()
    point = np.full(wide.shape[1], np.nan)
    reps = np.full((int(n_boot), wide.shape[1]), np.nan)
    if complete.any():
        idx = wide.index
        p, r = evaluate.macro_bootstrap(
            wide.loc[:, complete].to_numpy(), idx.get_level_values("country"),
            idx.get_level_values("user_id"), idx.get_level_values("seed"), n_boot=n_boot,
            seed=seed)
        point[complete], reps[:, complete] = 100 * p, 100 * r
    return point, reps


def _groups(outcomes: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """("macro", every country), then each country alone."""
    countries = sorted(set(outcomes["country"]))
    return [("macro", outcomes)] + [(c, outcomes[outcomes["country"] == c]) for c in countries]


def _macro_by_group(outcomes: pd.DataFrame, columns: Sequence[tuple[str, float]], n_boot: int,
                    seed: int):
    """(test set, scope, wide, point, replicates) of ``columns`` for each test set and each
    scope of ``_groups`` that has outcomes: ``macro_points`` of ``wide_outcomes``."""
    for test_set in evaluate.TEST_SETS:
        for where, o in _groups(outcomes):
            wide = wide_outcomes(o, columns, test_set)
            if not wide.empty:
                yield (test_set, where, wide, *macro_points(wide, n_boot, seed))


def curve_table(outcomes: pd.DataFrame, n_boot: int = report.N_BOOT,
                seed: int = report.BOOT_SEED, level: float = report.LEVEL) -> pd.DataFrame:
    """Accuracy (%) of each (variant, share) on each test set, for the macro mean over the
    countries ("macro") and each country: the mean over seeds (then countries), its interval
    (``macro_points``' percentile interval at ``level``) and how many of its (country, seed)
    points had no model (``n_empty``)."""
    shares = sorted(set(outcomes["share"]))
    variants = list(dict.fromkeys(outcomes["variant"]))
    columns = [(v, s) for v in variants for s in shares]
    rows = []
    for test_set, where, wide, point, reps in _macro_by_group(outcomes, columns, n_boot, seed):
        empty = wide.isna().groupby(level=["country", "seed"]).all().sum(axis=0)
        for j, (v, s) in enumerate(columns):
            low, high = ((np.nan, np.nan) if np.isnan(point[j]) else
                         evaluate.percentile_interval(reps[:, j], level))
            rows.append({"scope": where, "test_set": test_set, "variant": v, "share": s,
                         "accuracy": point[j], "low": low, "high": high,
                         "n_empty": int(empty[(v, s)])})
    return pd.DataFrame(rows)


# ---- the share at which SCPO (F+W) matches the baseline on every user ----

MATCH_RULE = (
    "The share to match is the smallest share of the grid from which on SCPO (F+W)'s accuracy "
    "stays at or above the baseline's accuracy with every training user (share 1): at that "
    "share and at every larger one. Accuracies are the mean over seeds (then the mean over "
    "countries, for the macro figure) on the full test set. \"Not reached\" when SCPO (F+W) "
    "trained on every user is still below it. A share where SCPO (F+W)'s filter kept no pair "
    "of some seed's subset does not match. The grid is coarse, so the answer is a grid share, "
    "not interpolated between them. Read as \"keeps the baseline's accuracy\" (the "
    "scorecard's reading of \"comparable accuracy\"), the same rule counts an accuracy at "
    "most one point below the baseline's as matching. Its interval recomputes the share on "
    "each bootstrap replicate, the test users and the seeds resampled as for the accuracies "
    "(paired: the same draw for both models and every share), and takes the 2.5th and 97.5th "
    "percentiles of those shares, \"not reached\" ranking above every share.")


def share_to_match(shares: Sequence[float], accuracy: Any, target: Any,
                   tolerance: float = 0.0) -> np.ndarray:
    """``MATCH_RULE``: the smallest of ``shares`` (ascending) at which ``accuracy`` is at or
    above ``target - tolerance`` there and at every larger share; ``NOT_REACHED`` (inf) when
    the largest share is below it. A NaN accuracy (no model) is below. ``accuracy`` (k,) with
    ``target`` () gives (); (n, k) with (n,) gives (n,) — one per bootstrap replicate."""
    shares = np.asarray(shares, dtype=float)
    if shares.ndim != 1 or not shares.size or np.any(np.diff(shares) <= 0):
        raise ValueError(f"shares must be ascending and distinct, got {shares.tolist()}")
    acc = np.asarray(accuracy, dtype=float)
    one = acc.ndim == 1
    acc = np.atleast_2d(acc)
    if acc.shape[1] != shares.size:
        raise ValueError(f"{acc.shape[1]} accuracies for {shares.size} shares")
    goal = np.broadcast_to(np.asarray(target, dtype=float).reshape(-1, 1), (len(acc), 1))
    ok = np.nan_to_num(acc, nan=-np.inf) >= goal - tolerance
    stays = np.logical_and.accumulate(ok[:, ::-1], axis=1)[:, ::-1]  # ok here and after
    first = np.where(stays.any(axis=1), stays.argmax(axis=1), -1)
    out = np.where(first >= 0, shares[np.maximum(first, 0)], NOT_REACHED)
    return out[0] if one else out


def share_interval(replicates: Any, level: float = report.LEVEL) -> tuple[float, float]:
    """The percentile interval of shares to match (``NOT_REACHED`` included, ranked above
    every share): quantiles that are values taken (numpy's "inverted_cdf"), so an end is a grid
    share or "not reached", never a blend of the two."""
    r = np.sort(np.asarray(replicates, dtype=float))
    low, high = np.quantile(r, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
    return float(low), float(high)


def share_to_match_table(outcomes: pd.DataFrame, variant: str = "scpo_fw",
                         reference: str = "baseline", tolerance: float = 0.0,
                         n_boot: int = report.N_BOOT, seed: int = report.BOOT_SEED,
                         level: float = report.LEVEL) -> pd.DataFrame:
    """Per test set, for the macro mean ("macro") and each country: ``share_to_match`` of
    ``variant`` against ``reference`` at the largest share (the target, %), with its interval
    (``share_interval`` of the same rule on each bootstrap replicate). ``MATCH_RULE``;
    ``tolerance`` (points): reaching ``target - tolerance`` counts (``report.KEEP_POINTS``:
    the scorecard's "keeps the baseline's accuracy", read with at most one point lost)."""
    shares = sorted(set(outcomes["share"]))
    full = shares[-1]
    columns = [(reference, full)] + [(variant, s) for s in shares]
    rows = []
    for test_set, where, _, point, reps in _macro_by_group(outcomes, columns, n_boot, seed):
        at = float(share_to_match(shares, point[1:], point[0], tolerance))
        low, high = share_interval(share_to_match(shares, reps[:, 1:], reps[:, 0], tolerance),
                                   level)
        rows.append({"scope": where, "test_set": test_set, "tolerance": tolerance,
                     "target": point[0], "at_full": point[-1], "share_to_match": at,
                     "low": low, "high": high})
    return pd.DataFrame(rows)


def share_text(share: float) -> str:
    """A share to match as a reader reads it: "40 %", or "not reached"."""
    return "not reached" if not np.isfinite(share) else f"{100 * share:.0f} %"


def match_said(row: Mapping[str, Any], verb: tuple[str, str] = ("reaches", "reach"),
               digits: int = 1) -> str:
    """What a sentence may say of one ``share_to_match_table`` row, with its numbers, after
    "SCPO (F+W)": "reaches it with 40 % of the training users (95 % interval 20 % to 70 %)",
    "reaches it only with every training user (...)", or "does not reach it even with every
    training user (... % against the baseline's ... %; ...)". ``verb``: its two forms."""
    s, low, high = row["share_to_match"], row["low"], row["high"]
    interval = f"95 % interval {share_text(low)} to {share_text(high)}"
    if not np.isfinite(s):
        return (f"does not {verb[1]} it even with every training user ({row['at_full']:.{digits}f}"
                f" % against the baseline's {row['target']:.{digits}f} %; {interval})")
    if s >= 1.0:
        return f"{verb[0]} it only with every training user ({interval})"
    return f"{verb[0]} it with {share_text(s)} of the training users ({interval})"


def paper_reading(row: Mapping[str, Any], efficiency: float = PAPER_EFFICIENCY[0]) -> str:
    """The paper's "170–280 % data efficiency" read as a share of users: SCPO (F+W) matching
    the baseline's full-data accuracy with at most 1 / 1.7 = 59 % of them (``efficiency``: the
    smaller end of the paper's range, the weaker statement). "supported" when the interval of
    the share to match lies at or below it, "not supported" when it lies above, else "not
    decided within the noise"."""
    bound = 1.0 / efficiency
    if row["high"] <= bound:
        return "supported"
    if row["low"] > bound:
        return "not supported"
    return "not decided within the noise"
