"""GlobalOpinionQA (hub or local csv) -> the tidy pair table and the option distributions.

Each csv row is one survey question with its answer options and, per country, the share of
respondents choosing each option. For a country, option i is preferred to option j when its
share is larger by more than ``min_share_gap``; equal shares are ties (counted, no pair).
Questions, not rows or pairs, are split train/test (tuning holds out a hashed share of the
training questions), and a question is in the same split for
every country: the same question text must never be trained on for one country and tested on
for another. ``user_id`` (the unit of the bootstrap) is the question id.

Country labels (decided from the shared real copy, all counted in ``PairData.report``):

- ``COUNTRY_MAP`` renames upstream spellings to PRISM's ("S. Africa" -> "South Africa",
  "Britain"/"Great Britain" -> "United Kingdom") and merges the two spellings GAS and WVS use
  for one country. WVS's "Great Britain" leaves out Northern Ireland (reported apart); it is
  treated as the United Kingdom all the same.
- "X (Non-national sample)" is not a national sample: excluded
  (``excluded["non_national_sample"]``).
- "X (Current national sample)" and "X (Old national sample)" (India only in the shared copy)
  count as X. When one question has several samples of X, the plain label wins, then Current,
  then Old; the others are excluded (``excluded["superseded_national_sample"]``). Two labels of
  the same rank for one country and question (e.g. "Britain" and "Great Britain") are an error.
- Any other "(...)" qualifier is kept verbatim as its own country and listed in
  ``report["unrecognised_qualifiers"]``, rather than guessed.

Question ids are "q" + sha1(question text)[:10]. Two rows may share a question text with
different option lists (2 texts in the shared copy); they stay one question for the split but are
distinct comparison groups: their ``group_id`` is the question id + "-" + sha1(options)[:6].
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scpo.pairs import (
    PAIR_COLUMNS,
    PairData,
    file_fingerprint,
    split_report,
    split_units,
    validation_mask,
)

HUB_ID = "Anthropic/llm_global_opinions"
HUB_FILE = "data/global_opinions.csv"
LOCAL_NAME = "global_opinions.csv"
CSV_COLUMNS = ["question", "selections", "options", "source"]
EXTRA_COLUMNS = ["source", "chosen_share", "rejected_share"]
OPTIONS_COLUMNS = ["country", "split", "group_id", "user_id", "prompt", "options", "shares"]

COUNTRY_MAP = {
    "S. Africa": "South Africa",
    "Britain": "United Kingdom",  # Pew GAS
    "Great Britain": "United Kingdom",  # WVS
    # one country, two spellings (GAS, WVS): keep one
    "S. Korea": "South Korea",
    "Czech Rep.": "Czechia",
    "Taiwan ROC": "Taiwan",
}
NON_NATIONAL = "Non-national sample"
QUALIFIER_RANK = {"Current national sample": 1, "Old national sample": 2}  # plain label: 0
_QUALIFIED = re.compile(r"(?P<base>.+?) \((?P<qualifier>[^()]+)\)")
_SELECTIONS = re.compile(r"\s*defaultdict\(<class 'list'>, (\{.*\})\)\s*", re.S)


def _literal(text: str, row: Any, column: str) -> Any:
    """``ast.literal_eval``: literals only; a call or a name is refused, never run."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
        raise ValueError(f"row {row}, column {column!r}: not a Python literal "
                         f"({type(e).__name__}); nothing is evaluated: {text[:80]!r}") from None


def parse_selections(cell: str, row: Any) -> dict[str, list[float]]:
    """``defaultdict(<class 'list'>, {'Chile': [0.4, 0.6], ...})`` -> {country label: shares}."""
    m = _SELECTIONS.fullmatch(cell) if isinstance(cell, str) else None
    if m is None:
        raise ValueError(f"row {row}, column 'selections': expected "
                         f"\"defaultdict(<class 'list'>, {{'Country': [shares], ...}})\", "
                         f"got {str(cell)[:80]!r}")
    value = _literal(m.group(1), row, "selections")
    if not isinstance(value, dict):
        raise ValueError(f"row {row}, column 'selections': expected a dict inside "
                         f"defaultdict(...), got {type(value).__name__}")
    out = {}
    for label, shares in value.items():
        ok = isinstance(label, str) and isinstance(shares, list | tuple) and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            and x >= 0 for x in shares)
        if not ok:
            raise ValueError(f"row {row}, column 'selections': country {label!r} must map to a "
                             f"list of finite shares >= 0, got {str(shares)[:80]!r}")
        out[label] = [float(x) for x in shares]
    return out


def parse_options(cell: str, row: Any) -> list[str]:
    """``['Yes', 'No']`` -> the option texts (numbers, as upstream has some, become strings)."""
    value = _literal(cell, row, "options") if isinstance(cell, str) else cell
    if not isinstance(value, list | tuple) or not value or not all(
            isinstance(x, str | int | float) and not isinstance(x, bool) for x in value):
        raise ValueError(f"row {row}, column 'options': expected a non-empty list of option "
                         f"texts, got {str(cell)[:80]!r}")
    return [str(x) for x in value]


def question_id(question: str) -> str:
    """Stable id of a question text (the split unit)."""
    return "q" + hashlib.sha1(question.encode("utf-8")).hexdigest()[:10]


def country_of_label(label: str) -> tuple[str | None, int]:
    """(PRISM-spelled country, rank) of an upstream label; country None = not a national sample.

    Rank orders several samples of one country on one question: lower wins.
    """
    m = _QUALIFIED.fullmatch(label)
    base, rank = label, 0
    if m and m["qualifier"] == NON_NATIONAL:
        return None, 0
    if m and m["qualifier"] in QUALIFIER_RANK:
        base, rank = m["base"], QUALIFIER_RANK[m["qualifier"]]
    return COUNTRY_MAP.get(base, base), rank


def read_goqa_csv(path: str | Path) -> pd.DataFrame:
    """The upstream csv as strings (no NA guessing); a missing column names file and column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. Expected GlobalOpinionQA's "
                                f"{LOCAL_NAME} (columns {CSV_COLUMNS}), as on the hub: "
                                f"{HUB_ID}/{HUB_FILE}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require(df, str(path))
    if df.empty:
        raise ValueError(f"{path}: a header and no data rows; GlobalOpinionQA's {LOCAL_NAME} has "
                         "one row per question (about 2,500). Put the whole file there.")
    return df


def _require(df: pd.DataFrame, where: str) -> None:
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; GlobalOpinionQA needs "
                         f"{CSV_COLUMNS}")


def _distributions(df: pd.DataFrame, report: dict[str, Any]) -> pd.DataFrame:
    """One row per kept (country, question): labels mapped, non-national and superseded out."""
    rows, excluded = [], {"non_national_sample": 0, "superseded_national_sample": 0}
    relabelled: dict[str, str] = {}
    unrecognised: set[str] = set()
    for i, r in zip(df.index, df.itertuples(index=False), strict=True):
        options = parse_options(r.options, i)
        best: dict[str, tuple[int, str, list[float]]] = {}
        for label, shares in parse_selections(r.selections, i).items():
            if len(shares) != len(options):
                raise ValueError(
                    f"row {i}: question {r.question[:100]!r}: {label!r} has {len(shares)} "
                    f"shares for {len(options)} options {options}; they must match one to one")
            country, rank = country_of_label(label)
            if country is None:
                excluded["non_national_sample"] += 1
                continue
            if country != label:
                relabelled[label] = country
            elif _QUALIFIED.fullmatch(label):
                unrecognised.add(label)
            if country in best:
                other_rank, other_label, _ = best[country]
                if other_rank == rank:
                    raise ValueError(
                        f"row {i}: question {r.question[:100]!r}: labels {other_label!r} and "
                        f"{label!r} are both {country!r}; keep one of them in the csv")
                excluded["superseded_national_sample"] += 1
                if other_rank < rank:
                    continue
            best[country] = (rank, label, shares)
        for country, (_, label, shares) in best.items():
            rows.append({"country": country, "user_id": question_id(r.question),
                         "prompt": r.question, "options": options, "shares": shares,
                         "source": r.source, "label": label, "row": i})
    report["excluded"] = excluded
    report["relabelled"] = dict(sorted(relabelled.items()))
    report["unrecognised_qualifiers"] = sorted(unrecognised)
    cols = ["country", "user_id", "prompt", "options", "shares", "source", "label", "row"]
    return pd.DataFrame(rows, columns=cols)


@functools.cache
def _upper(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) with i < j < n, in row-major order."""
    return np.triu_indices(n, k=1)


def _group_ids(dists: pd.DataFrame, report: dict[str, Any]) -> pd.Series:
    """The question id, suffixed by an options hash where one text has several option lists."""
    opts = dists["options"].map(json.dumps)
    n_lists = opts.groupby(dists["user_id"]).transform("nunique")
    suffix = opts.map(lambda s: "-" + hashlib.sha1(s.encode("utf-8")).hexdigest()[:6])
    report["shared_question_texts"] = int(dists.loc[n_lists > 1, "user_id"].nunique())
    return dists["user_id"].where(n_lists == 1, dists["user_id"] + suffix)


def _option_pairs(
    shares: pd.Series, min_share_gap: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(distribution, chosen option, rejected option) of every pair, and ties / below-gap counts.

    Inside a distribution every i < j is compared; pairs are ordered by (chosen, rejected).
    """
    which, wins, loses, n_ties, n_below = [], [], [], [], []
    for k, dist in enumerate(shares):
        s = np.asarray(dist)
        i, j = _upper(len(s))
        gap = s[i] - s[j]
        a_wins, b_wins = gap > min_share_gap, -gap > min_share_gap
        win = np.concatenate([i[a_wins], j[b_wins]])
        lose = np.concatenate([j[a_wins], i[b_wins]])
        order = np.lexsort((lose, win))
        which.append(np.full(len(win), k))
        wins.append(win[order])
        loses.append(lose[order])
        n_ties.append(int((gap == 0).sum()))
        n_below.append(int((~a_wins & ~b_wins).sum()) - n_ties[-1])
    which, win, lose = (np.concatenate(x).astype(int) if x else np.zeros(0, int)
                        for x in (which, wins, loses))
    return which, win, lose, np.array(n_ties, dtype=int), np.array(n_below, dtype=int)


def build_goqa_pairs(
    df: pd.DataFrame, test_frac: float = 0.15, split_seed: int = 0, val_frac: float = 0.15,
    min_share_gap: float = 0.0,
) -> PairData:
    """Option pairs per country, ordered by share; questions split train/test.

    Errors name a row by the table's index: for a csv read by ``read_goqa_csv``, its data rows
    counted from 0. Output order does not depend on the row order of ``df``.
    """
    _require(df, "GlobalOpinionQA table")
    if df.empty:
        raise ValueError("GlobalOpinionQA table: no rows; it needs one row per question")
    if not min_share_gap >= 0:
        raise ValueError(f"min_share_gap must be >= 0, got {min_share_gap!r}")
    report: dict[str, Any] = {"n_rows": len(df), "test_frac": test_frac,
                              "split_seed": split_seed, "val_frac": val_frac,
                              "min_share_gap": min_share_gap}
    dists = _distributions(df, report)
    dists["group_id"] = _group_ids(dists, report)
    dup = dists[dists.duplicated(["country", "group_id"], keep=False)]
    if len(dup):
        raise ValueError(f"rows {sorted(dup['row'].tolist())}: question "
                         f"{dup['prompt'].iloc[0][:100]!r} appears twice for "
                         f"{dup['country'].iloc[0]!r} with the same options; remove one row")
    dists = dists.sort_values(["country", "group_id"], ignore_index=True)

    # the split, by question, the same for every country
    qids = pd.Series(sorted({question_id(q) for q in df["question"]}))
    test_q = split_units(qids, test_frac, split_seed)
    dists["split"] = np.where(dists["user_id"].isin(test_q), "test", "train")
    # tuning's held-out questions: a seeded hash of each question alone (scpo.pairs)
    dists["tune_val"] = validation_mask(dists, val_frac, split_seed)
    val_q = set(dists.loc[dists["tune_val"], "user_id"])

    which, win, lose, n_ties, n_below = _option_pairs(dists["shares"], min_share_gap)
    base = dists.iloc[which].reset_index(drop=True)
    share = base["shares"].map(np.asarray)
    pairs = pd.DataFrame({
        "country": base["country"], "split": base["split"], "tune_val": base["tune_val"],
        "user_id": base["user_id"],
        "group_id": base["group_id"], "prompt": base["prompt"],
        "chosen": [o[w] for o, w in zip(base["options"], win, strict=True)],
        "rejected": [o[w] for o, w in zip(base["options"], lose, strict=True)],
        "chosen_id": base["group_id"] + ":" + win.astype(str),
        "rejected_id": base["group_id"] + ":" + lose.astype(str),
        "source": base["source"],
        "chosen_share": [s[w] for s, w in zip(share, win, strict=True)],
        "rejected_share": [s[w] for s, w in zip(share, lose, strict=True)],
    }, columns=PAIR_COLUMNS + EXTRA_COLUMNS)
    ties = pd.Series(n_ties).groupby(dists["country"]).sum()

    report["n_questions"] = len(qids)
    report["questions_by_split"] = {"train": len(qids) - len(test_q), "test": len(test_q),
                                    "tune_val": len(val_q)}
    report["n_distributions"] = len(dists)
    report["ties_dropped"] = int(ties.sum())
    report["ties_dropped_by_country"] = {str(c): int(n) for c, n in ties.items() if n}
    report["below_share_gap"] = int(n_below.sum())
    report.update(split_report(pairs))
    return PairData(pairs=pairs, source="goqa", report=report,
                    options=dists[OPTIONS_COLUMNS].copy())


def goqa_path(data_dir: str | Path | None = None, revision: str | None = None) -> Path:
    """The csv: ``data_dir`` itself, ``data_dir/global_opinions.csv``, or the hub's file."""
    if data_dir is None:
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(HUB_ID, HUB_FILE, repo_type="dataset",
                                        revision=revision))
        except Exception as e:
            raise RuntimeError(
                f"could not get {HUB_FILE} of the dataset {HUB_ID} (revision {revision}) from "
                f"the Hugging Face hub: {e}. Offline, download it once elsewhere and pass its "
                "path (or its directory) as data_dir.") from e
    path = Path(data_dir)
    return path / LOCAL_NAME if path.is_dir() else path


def load_goqa(
    data_dir: str | Path | None = None, revision: str | None = None, test_frac: float = 0.15,
    split_seed: int = 0, val_frac: float = 0.15, min_share_gap: float = 0.0,
) -> PairData:
    """GlobalOpinionQA pairs from a local csv (or a directory holding it) or the hub."""
    path = goqa_path(data_dir, revision)
    data = build_goqa_pairs(read_goqa_csv(path), test_frac, split_seed, val_frac, min_share_gap)
    data.fingerprint = file_fingerprint(path)
    data.report["data"] = (str(path) if data_dir is not None
                           else f"{HUB_ID}@{snapshot_commit(path, HUB_FILE) or revision}")
    return data


def snapshot_commit(path: Path, filename: str) -> str | None:
    """The commit a hub download came from: ``huggingface_hub`` puts ``filename`` under
    ``.../snapshots/<commit>/``, so the record names what was read even when the revision asked
    for was ``None`` or a branch; ``None`` for a file laid out otherwise."""
    snapshot = Path(path)
    for _ in Path(filename).parts:
        snapshot = snapshot.parent
    if snapshot.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", snapshot.name):
        return snapshot.name
    return None
