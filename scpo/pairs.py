"""The tidy preference-pair table that every data source produces, and what is done to it.

One row per pair (x, y+, y-). Required columns (``PAIR_COLUMNS``):

- ``country``      the annotators' country, in PRISM's spelling (e.g. "South Africa")
- ``split``        "train" or "test"; every variant trains on every "train" pair
- ``tune_val``     True for the training users (GOQA: questions) held out only while the tuned
                   variant chooses tau / beta / lr (``validation_mask``); False on test pairs
- ``user_id``      the unit of independence for bootstrap CIs: a PRISM user, a GOQA question
- ``group_id``     the comparison group the pair came from (PRISM interaction, GOQA question)
- ``prompt``       x
- ``chosen``       y+ (preferred)
- ``rejected``     y-
- ``chosen_id``    id of y+ (PRISM utterance id, GOQA "question:option")
- ``rejected_id``  id of y-

Sources add their own columns after these (scores, turn, truth margins, ...).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PAIR_COLUMNS = [
    "country", "split", "tune_val", "user_id", "group_id", "prompt", "chosen", "rejected",
    "chosen_id", "rejected_id",
]
SPLITS = ("train", "test")

# The 7 minority countries of the paper, in PRISM's spelling, and PRISM's large majority samples.
PAPER_COUNTRIES = [
    "Chile", "South Africa", "New Zealand", "Australia", "Mexico", "Israel", "Canada",
]
MAJORITY_COUNTRIES = ["United States", "United Kingdom"]


@dataclass
class PairData:
    """A pair table plus what building it counted, so nothing is dropped silently."""

    pairs: pd.DataFrame
    source: str  # "prism", "goqa" or "sim"
    report: dict[str, Any] = field(default_factory=dict)  # ties dropped, rows excluded, ...
    fingerprint: str = ""  # sha256 of the input files (or hub id + revision)
    # GOQA only: one row per (country, question) with columns
    # country, split, group_id, prompt, options (list[str]), shares (list[float])
    options: pd.DataFrame | None = None
    # Simulator only: the directory whose truth files explain every pair
    meta: dict[str, Any] = field(default_factory=dict)

    def countries(self) -> pd.DataFrame:
        """Pair counts per country and split (the table an unknown-country error shows)."""
        return country_counts(self.pairs)


def validate_pairs(pairs: pd.DataFrame, where: str = "pairs") -> pd.DataFrame:
    """Check the schema; the error names the missing columns and the source."""
    missing = [c for c in PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; a pair table needs {PAIR_COLUMNS}")
    bad = sorted(set(pairs["split"]) - set(SPLITS))
    if bad:
        raise ValueError(f"{where}: unknown split value(s) {bad}; expected one of {SPLITS}")
    return pairs


def country_counts(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs per country and split, largest country first; "tune_val" counts the training pairs
    the tuned variant holds out while it chooses its settings (they are in "train" too)."""
    t = pairs.groupby(["country", "split"]).size().unstack("split", fill_value=0)
    for s in SPLITS:
        if s not in t.columns:
            t[s] = 0
    t = t[list(SPLITS)]
    t["total"] = t.sum(axis=1)
    if "tune_val" in pairs.columns:
        train = pairs[pairs["split"] == "train"]
        t.insert(1, "tune_val", train.groupby("country")["tune_val"].sum()
                 .reindex(t.index, fill_value=0).astype(int))
    return t.sort_values("total", ascending=False)


def select_country(pairs: pd.DataFrame, country: str) -> pd.DataFrame:
    """Pairs of one country; an unknown country lists the available ones with their counts."""
    sub = pairs[pairs["country"] == country]
    if sub.empty:
        counts = country_counts(pairs)
        listing = ", ".join(f"{c} ({int(n)})" for c, n in counts["total"].items())
        raise KeyError(f"unknown country {country!r}: no pairs. Available (pairs): {listing}")
    return sub


def require_test_pairs(pairs: pd.DataFrame, country: str) -> pd.DataFrame:
    """The country's test pairs; a country with none is an error, not a division by zero."""
    test = pairs[(pairs["country"] == country) & (pairs["split"] == "test")]
    if test.empty:
        n = int((pairs["country"] == country).sum())
        raise ValueError(
            f"country {country!r} has no test pairs ({n} pairs in other splits); it cannot be "
            "evaluated. Use a larger test fraction or leave the country out."
        )
    return test


def split_units(units: pd.Series | np.ndarray, test_frac: float, seed: int) -> set:
    """A seeded random subset of distinct units (GOQA questions) of size round(frac * n).

    The units are sorted first, so the subset depends on the set of units and the seed only,
    not on their order. (PRISM users are split by ``paper_test_rows``, as the released code.)
    """
    if not 0.0 <= test_frac <= 1.0:
        # a negative fraction would otherwise slice [:-k] and silently return almost every unit
        raise ValueError(f"split fraction must be in [0, 1], got {test_frac!r}")
    uniq = np.array(sorted(pd.unique(pd.Series(units).astype(str))))
    rng = np.random.default_rng(seed)
    n_test = int(round(test_frac * len(uniq)))
    return set(rng.permutation(uniq)[:n_test].tolist())


def paper_test_rows(n_rows: int, test_frac: float, seed: int) -> np.ndarray:
    """Row positions of the test part of ``Dataset.train_test_split(test_size=test_frac,
    seed=seed)`` (Hugging Face ``datasets``, shuffle on) over a table of ``n_rows`` rows.

    The released code splits PRISM's survey rows, in the hub's row order, with exactly that
    call; this is the same arithmetic (n_test = ceil(test_frac * n_rows) in floating point, then
    the first n_test entries of ``default_rng(seed).permutation(n_rows)``), so the paper's own
    users land in the test set. ``tests/test_pairs.py`` checks it against ``datasets`` itself.
    ``test_frac = 0`` (no test set) is allowed here; ``datasets`` refuses it.
    """
    if not 0.0 <= test_frac < 1.0:
        raise ValueError(f"data.test_frac must be in [0, 1), got {test_frac!r}")
    if test_frac == 0.0 or n_rows == 0:
        return np.zeros(0, dtype=int)
    n_test = math.ceil(test_frac * n_rows)
    if n_test >= n_rows:
        raise ValueError(f"data.test_frac={test_frac} of {n_rows} rows leaves no training row; "
                         "use a smaller test fraction or more data")
    return np.random.default_rng(seed).permutation(n_rows)[:n_test]


def unit_fraction(units: pd.Series | np.ndarray, seed: int) -> np.ndarray:
    """A number in [0, 1) per unit from a seeded hash of its id alone.

    A unit's value does not depend on which other units exist, so dropping one user (say, one
    whose survey row lacks a country) moves no other user between training and validation.
    """
    out = np.empty(len(units), dtype=np.float64)
    for i, u in enumerate(pd.Series(units).astype(str)):
        digest = hashlib.sha256(f"scpo-val:{int(seed)}:{u}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2.0**64
    return out


def validation_mask(pairs: pd.DataFrame, frac: float = 0.15, seed: int = 0) -> np.ndarray:
    """True for training pairs whose unit (``user_id``) is held out for tuning.

    About ``frac`` of each country's training users (a Bernoulli draw per user from
    ``unit_fraction``, not an exact count); test pairs are never marked. Whole users go
    together, since the pairs of one user are not independent.
    """
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"data.val_frac must be in [0, 1), got {frac!r}")
    users = pairs["user_id"].astype(str)
    uniq = pd.unique(users)
    held = pd.Series(unit_fraction(uniq, seed) < frac, index=uniq)
    return (pairs["split"] == "train").to_numpy() & held.loc[users].to_numpy()


def split_report(pairs: pd.DataFrame) -> dict[str, Any]:
    """What a data source reports of its split: units (users / questions) and pairs per split
    and country, and how many test pairs reuse a training text."""
    out: dict[str, Any] = {"n_pairs": len(pairs),
                           "n_users_with_pairs": int(pairs["user_id"].nunique())}
    out["users_by_split"] = {
        s: int(n) for s, n in pairs.groupby("split")["user_id"].nunique().items()}
    out["tune_val_users"] = int(pairs.loc[pairs["tune_val"], "user_id"].nunique())
    counts = pairs.groupby(["country", "split"]).size()
    out["pairs_by_country_split"] = {
        str(c): {str(s): int(n) for s, n in counts[c].items()}
        for c in counts.index.get_level_values(0).unique()}
    out["test_texts_seen_in_train"] = test_texts_seen_in_train(pairs)
    return out


def test_texts_seen_in_train(pairs: pd.DataFrame) -> int:
    """Test pairs whose chosen or rejected (prompt, response) text is also in a training pair:
    0 means the test measures new texts, not only new raters of texts seen in training."""
    train = pairs[pairs["split"] == "train"]
    seen = set(zip(train["prompt"], train["chosen"])) | set(zip(train["prompt"], train["rejected"]))
    test = pairs[pairs["split"] == "test"]
    hit = [(p, c) in seen or (p, r) in seen
           for p, c, r in zip(test["prompt"], test["chosen"], test["rejected"])]
    return int(sum(hit))


def text_key(prompt: str, response: str) -> str:
    """Stable id of one (prompt, response) text: the cache key of its score and embedding."""
    h = hashlib.sha256()
    h.update(prompt.encode("utf-8"))
    h.update(b"\x1f")
    h.update(response.encode("utf-8"))
    return h.hexdigest()


def file_fingerprint(*paths: str | Path) -> str:
    """sha256 over the bytes of the given files: the data fingerprint recorded with results."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def distinct_texts(pairs: pd.DataFrame) -> pd.DataFrame:
    """Distinct (prompt, response) texts in the pair table: each is scored / embedded once."""
    both = pd.concat([
        pairs[["prompt", "chosen"]].rename(columns={"chosen": "response"}),
        pairs[["prompt", "rejected"]].rename(columns={"rejected": "response"}),
    ])
    return both.drop_duplicates(ignore_index=True)
