"""The tidy preference-pair table that every data source produces, and what is done to it.

One row per pair (x, y+, y-). Required columns (``PAIR_COLUMNS``):

- ``country``      the annotators' country, in PRISM's spelling (e.g. "South Africa")
- ``split``        "train", "val" (carved from train users/questions) or "test"
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PAIR_COLUMNS = [
    "country", "split", "user_id", "group_id", "prompt", "chosen", "rejected",
    "chosen_id", "rejected_id",
]
SPLITS = ("train", "val", "test")

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
    """Pairs per country and split, largest country first."""
    t = pairs.groupby(["country", "split"]).size().unstack("split", fill_value=0)
    for s in SPLITS:
        if s not in t.columns:
            t[s] = 0
    t = t[list(SPLITS)]
    t["total"] = t.sum(axis=1)
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
    """A seeded random subset of distinct units (users or questions) of size round(frac * n).

    The units are sorted first, so the subset depends on the set of units and the seed only,
    not on their order.
    """
    if not 0.0 <= test_frac <= 1.0:
        # a negative fraction would otherwise slice [:-k] and silently return almost every unit
        raise ValueError(f"split fraction must be in [0, 1], got {test_frac!r}")
    uniq = np.array(sorted(pd.unique(pd.Series(units).astype(str))))
    rng = np.random.default_rng(seed)
    n_test = int(round(test_frac * len(uniq)))
    return set(rng.permutation(uniq)[:n_test].tolist())


def carve_validation(pairs: pd.DataFrame, frac: float = 0.15, seed: int = 0) -> pd.DataFrame:
    """Move a seeded fraction of each country's *training* users to split "val".

    Whole users move (their pairs are not independent); test pairs are never touched.
    """
    out = pairs.copy()
    train = (out["split"] == "train").to_numpy()
    users = out["user_id"].astype(str)
    to_val = np.zeros(len(out), dtype=bool)
    # boolean masks, not index labels: with a repeated index, labels would also hit test rows
    for country in pd.unique(out.loc[train, "country"]):
        mine = train & (out["country"] == country).to_numpy()
        val_users = split_units(users[mine], frac, seed)
        to_val |= mine & users.isin(val_users).to_numpy()
    out.loc[to_val, "split"] = "val"
    return out


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
