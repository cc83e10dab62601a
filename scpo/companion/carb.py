"""CARB, a cultural reward benchmark: best-of-N items, scored by any reward model of scpo.

An item is a prompt with its chosen completion(s) and rejected ones (CARB: 1 chosen, 3 rejected,
per culture/language and domain; RewardBench 2 has the same layout). A reward model gets an item
right when every chosen completion scores above every rejected one; a tie is wrong. By chance
(a random order of the completions) that happens with probability 1 / C(total, chosen).

    items = load_carb("/path/to/carb")          # one JSON list (or .jsonl) per language
    table = carb_accuracy(items, best_of_n(rm, items), by=("language", "domain"))
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scpo.evaluate import bootstrap_ci
from scpo.models.base import RewardModel
from scpo.scoring import score_texts

REQUIRED = ("id", "prompt", "chosen", "rejected")
SUFFIXES = (".json", ".jsonl")

# CARB's subsets -> the four domains of its paper
DOMAINS = {"cultural_commonsense": "commonsense", "cultural_value": "values",
           "cultural_toxicity": "safety", "cultural_linguistic": "linguistics"}

# The one table from CARB's labels to PRISM's countries. An item's own country label (a
# demonym or a country name) wins; otherwise its language stands for the countries below.
# English items without a country are the majority's (no minority country of the paper).
DEMONYMS = {"American": "United States", "British": "United Kingdom", "Australian": "Australia",
            "Canadian": "Canada", "Mexican": "Mexico", "Chilean": "Chile",
            "South African": "South Africa", "New Zealander": "New Zealand", "Kiwi": "New Zealand",
            "Israeli": "Israel"}
LANGUAGE_COUNTRIES = {"Spanish": ("Mexico", "Chile")}
PRISM_NAMES = set(DEMONYMS.values())
_LABELS = {k.lower(): v for k, v in [*DEMONYMS.items(), *((c, c) for c in PRISM_NAMES)]}


def prism_countries(country: str | None, language: str | None) -> tuple[str, ...]:
    """The PRISM countries an item speaks for (``DEMONYMS``, ``LANGUAGE_COUNTRIES``); () if none."""
    if country:
        label = _LABELS.get(str(country).strip().lower())
        return (label,) if label else ()
    return LANGUAGE_COUNTRIES.get(str(language or "").strip().title(), ())


def chance_level(n_chosen: int, n_total: int) -> float:
    """P(every chosen completion above every rejected one) under a random order."""
    return 1.0 / math.comb(int(n_total), int(n_chosen))


# ---- reading ----

def _texts(item: dict[str, Any], key: str, where: str) -> list[str]:
    value = item[key]
    if isinstance(value, str):  # a single completion written as a string
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise ValueError(f"{where}: field {key!r} must be a non-empty list of strings, got "
                         f"{str(value)[:80]!r}")
    return value


def check_item(item: Any, where: str) -> dict[str, Any]:
    """One item as a row of the item table; a malformed item raises naming file, id and field."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: an item must be a JSON object, got {type(item).__name__}")
    where = f"{where}, item id {item.get('id')!r}"
    missing = [k for k in REQUIRED if item.get(k) is None]
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}; a CARB / RewardBench 2 item has "
                         f"{list(REQUIRED)} (+ language, country, subset, ...)")
    if not isinstance(item["prompt"], str):
        raise ValueError(f"{where}: field 'prompt' must be a string, got {item['prompt']!r:.80}")
    chosen, rejected = _texts(item, "chosen", where), _texts(item, "rejected", where)
    total = item.get("total_completions")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool)):
        raise ValueError(f"{where}: field 'total_completions' must be an integer, got {total!r}")
    both = sorted(set(chosen) & set(rejected))
    if both:
        raise ValueError(f"{where}: fields 'chosen' and 'rejected' share the completion "
                         f"{both[0][:60]!r}; it would always tie, so the item could never be "
                         "right. Remove it from one of them")
    if total is not None and total != len(chosen) + len(rejected):
        raise ValueError(f"{where}: field 'total_completions' is {total} but the item has "
                         f"{len(chosen)} chosen + {len(rejected)} rejected completions")
    subset = item.get("subset")
    return {"id": str(item["id"]), "language": item.get("language"),
            "country": item.get("country"), "subset": subset,
            "domain": DOMAINS.get(subset, subset), "category": item.get("category"),
            "prompt": item["prompt"], "chosen": chosen, "rejected": rejected,
            "prism_countries": prism_countries(item.get("country"), item.get("language")),
            "chance": chance_level(len(chosen), len(chosen) + len(rejected))}


def _bad_json(path: Path, line: int, e: json.JSONDecodeError) -> ValueError:
    return ValueError(f"{path}: not valid JSON (line {line}: {e.msg}); CARB files are one JSON "
                      "list of items per language, or one item per line (.jsonl)")


def read_file(path: Path, name: str) -> list[dict[str, Any]]:
    """The items of one file (``name``: its path under the data directory): a JSON list (CARB's
    files) or one JSON object per line (.jsonl)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".jsonl":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise _bad_json(path, e.lineno, e) from e
    else:
        raw = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    raw.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise _bad_json(path, n, e) from e
    if not isinstance(raw, list):
        raise ValueError(f"{path}: expected a JSON list of items, got {type(raw).__name__}")
    return [{**check_item(item, f"{path}, item {i}"), "file": name}
            for i, item in enumerate(raw)]


def load_carb(data_dir: str | Path | None = None, hub_id: str | None = None,
              revision: str | None = None, split: str = "train") -> pd.DataFrame:
    """Every item under ``data_dir`` (its .json/.jsonl files, subfolders too), or of the hub
    dataset ``hub_id``: one row per item (``check_item``'s columns + the file it came from)."""
    if data_dir is None and hub_id is None:
        raise ValueError("CARB needs data: pass a directory of CARB-format files (data_dir) or a "
                         "hub dataset id (hub_id)")
    if data_dir is not None:
        root = Path(data_dir)
        files = sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        if not files:
            raise FileNotFoundError(f"no .json or .jsonl files under {root}; point data_dir at "
                                    "the folder holding CARB's per-language files")
        rows = [r for f in files for r in read_file(f, str(f.relative_to(root)))]
    else:
        from datasets import load_dataset

        ds = load_dataset(hub_id, split=split, revision=revision)
        rows = [{**check_item(item, f"{hub_id}@{revision or 'main'}"), "file": hub_id}
                for item in ds]
    if not rows:
        raise ValueError(f"no items in {data_dir or hub_id}: its files hold empty lists")
    items = pd.DataFrame(rows)
    dup = items.duplicated(["file", "id"])
    if dup.any():
        first = items.loc[dup].iloc[0]
        raise ValueError(f"{first['file']}: item id {first['id']!r} appears more than once; ids "
                         "must be unique within a file")
    return items


# ---- scoring ----

def item_scores(rm: RewardModel, items: pd.DataFrame,
                root: Path | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each item's chosen and rejected rewards; every distinct (prompt, completion) is scored
    once, through the score cache."""
    texts = pd.DataFrame(
        [(p, t) for p, c, r in zip(items["prompt"], items["chosen"], items["rejected"])
         for t in [*c, *r]], columns=["prompt", "response"]).drop_duplicates(ignore_index=True)
    scores = dict(zip(zip(texts["prompt"], texts["response"]), score_texts(rm, texts, root)))
    chosen = [np.array([scores[p, t] for t in c]) for p, c in zip(items["prompt"], items["chosen"])]
    rejected = [np.array([scores[p, t] for t in r])
                for p, r in zip(items["prompt"], items["rejected"])]
    return chosen, rejected


def best_of_n_correct(chosen: Sequence[np.ndarray], rejected: Sequence[np.ndarray]) -> np.ndarray:
    """Per item: every chosen reward strictly above every rejected one (a tie is wrong)."""
    return np.array([float(np.min(c)) > float(np.max(r)) for c, r in zip(chosen, rejected)])


def best_of_n(rm: RewardModel, items: pd.DataFrame, root: Path | None = None) -> np.ndarray:
    """Which items ``rm`` gets right."""
    return best_of_n_correct(*item_scores(rm, items, root))


def length_correlation(items: pd.DataFrame, chosen: Sequence[np.ndarray],
                       rejected: Sequence[np.ndarray]) -> float:
    """Spearman's rho between reward and completion length (characters) over every completion
    of every item, pooled. Differences between items and languages (scripts differ hugely in
    characters per completion) can dominate it: ``length_cue`` measures within items."""
    from scipy.stats import spearmanr

    texts = [t for c, r in zip(items["chosen"], items["rejected"]) for t in [*c, *r]]
    rewards = [s for c, r in zip(chosen, rejected) for s in [*c, *r]]
    return float(spearmanr([len(t) for t in texts], rewards).statistic)


def _rank_rho(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of one item (average ranks for ties); NaN when x or y is constant."""
    from scipy.stats import rankdata

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return np.nan
    return float(np.corrcoef(rankdata(x), rankdata(y))[0, 1])


def length_cue(items: pd.DataFrame, chosen: Sequence[np.ndarray],
               rejected: Sequence[np.ndarray]) -> dict[str, float]:
    """Does the reward follow completion length (characters) within an item?

    ``longer_higher``: of the pairs of completions of one item that differ in length and in
    reward, the share in which the longer one gets the higher reward (no cue: 0.5), over
    ``pairs`` such pairs; ``length_ties`` (same length) and ``reward_ties`` (same reward) are
    counted apart. ``rho_within``: the mean of each item's Spearman rho over ``items_rho``
    items (``items_no_rho``: constant length or reward, no rho; no cue: 0). ``rho_pooled``:
    ``length_correlation``, which mixes items and languages.
    """
    higher = lower = length_ties = reward_ties = 0
    rhos = []
    for c, r, ct, rt in zip(chosen, rejected, items["chosen"], items["rejected"]):
        reward = np.concatenate([np.asarray(c, dtype=float), np.asarray(r, dtype=float)])
        length = np.array([len(t) for t in [*ct, *rt]], dtype=float)
        i, j = np.triu_indices(len(reward), k=1)
        dl, dr = length[i] - length[j], reward[i] - reward[j]
        length_ties += int((dl == 0).sum())
        reward_ties += int(((dl != 0) & (dr == 0)).sum())
        same = np.sign(dl) * np.sign(dr)
        higher, lower = higher + int((same > 0).sum()), lower + int((same < 0).sum())
        rhos.append(_rank_rho(length, reward))
    rho = np.array(rhos, dtype=float)
    defined = np.isfinite(rho)
    return {"longer_higher": higher / (higher + lower) if higher + lower else np.nan,
            "pairs": higher + lower, "length_ties": length_ties, "reward_ties": reward_ties,
            "rho_within": float(rho[defined].mean()) if defined.any() else np.nan,
            "items_rho": int(defined.sum()), "items_no_rho": int((~defined).sum()),
            "rho_pooled": length_correlation(items, chosen, rejected)}


def describe_cue(cue: dict[str, float]) -> str:
    """``length_cue`` in one sentence, as ``scpo carb`` prints it."""
    return (f"Length cue within items: the longer of two completions gets the higher reward in "
            f"{100 * cue['longer_higher']:.1f} % of {cue['pairs']} pairs (no cue: 50 %; "
            f"{cue['length_ties']} of equal length and {cue['reward_ties']} of equal reward "
            f"left out); mean within-item Spearman rho {cue['rho_within']:.3f} over "
            f"{cue['items_rho']} items (no cue: 0). Pooled over every item, rho = "
            f"{cue['rho_pooled']:.3f}: it mixes differences between items and languages.")


def carb_accuracy(items: pd.DataFrame, correct: np.ndarray, by: Sequence[str] = ("language",),
                  n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Best-of-N accuracy per group of ``by``, with a 95% bootstrap interval over items and the
    chance level beside it (the mean of the items' own)."""
    d = items.assign(correct=np.asarray(correct, dtype=bool), _all="all")
    keys = list(by) or ["_all"]
    rows = []
    for key, g in d.groupby(keys, sort=True, dropna=False):
        lo, hi = bootstrap_ci(g["correct"], g["file"] + "/" + g["id"], n_boot=n_boot, seed=seed)
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                     "n_items": len(g), "accuracy": float(g["correct"].mean()),
                     "ci_low": lo, "ci_high": hi, "chance": float(g["chance"].mean())})
    return pd.DataFrame(rows).drop(columns="_all", errors="ignore")


def carb_report(rm: RewardModel, items: pd.DataFrame, country: str | None = None,
                by: Sequence[str] = ("language", "domain"), n_boot: int = 1000, seed: int = 0,
                root: Path | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """(accuracy table, length cue: ``length_cue``) of one model. With ``country`` (PRISM's
    spelling) the table first splits the items into that culture's ("own",
    ``prism_countries``) and the rest."""
    chosen, rejected = item_scores(rm, items, root)
    correct = best_of_n_correct(chosen, rejected)
    if country is not None:
        if country not in PRISM_NAMES:
            raise ValueError(f"country {country!r} is not one CARB's labels map to; use PRISM's "
                             f"spelling, one of {sorted(PRISM_NAMES)}")
        own = items["prism_countries"].map(lambda cs: country in cs)
        items = items.assign(items_of=np.where(own, f"{country}'s", "the rest"))
        by = ["items_of", *by]
    return (carb_accuracy(items, correct, by=by, n_boot=n_boot, seed=seed),
            length_cue(items, chosen, rejected))


def in_percent(table: pd.DataFrame) -> pd.DataFrame:
    """``carb_accuracy``'s table with accuracy, interval and chance in percent, 1 decimal."""
    cols = ("accuracy", "ci_low", "ci_high", "chance")
    return table.assign(**{c: (100 * table[c]).round(1) for c in cols})
