"""PRISM (hub or local JSON lines) -> the tidy pair table (spec §1).

A pair is two rated responses of one user in one interaction (turn): every i < j inside a
(user_id, interaction_id) group, the higher ``score`` chosen. The country of a pair is the
user's ``location.reside_country`` in the survey. Users, not pairs, are split train/test,
because the pairs of one opening turn share responses and are not independent.

The split is the released code's: ``datasets``' ``train_test_split(test_size=0.15, seed=0)``
over the survey rows *in the order loaded* (``scpo.pairs.paper_test_rows``), every survey row
counted, with or without a country, so the paper's own users are the test users. The prompt of
a pair is that turn's ``user_prompt`` alone, as the released code scores it
(``prompt_context="turn"``); ``"history"`` prefixes the earlier turns of the conversation. The
``messages`` column holds the same conversation as a JSON chat list (the earlier turns, if any,
then this turn's prompt), which a chat-template model reads instead of the joined text.

Decisions, all counted in ``PairData.report``:

- equal scores: the pair is dropped (``ties_dropped``, also per country);
- utterances of a user absent from the survey, or whose country is missing: excluded
  (``excluded["user_not_in_survey"]``, ``excluded["country_missing"]``);
- a group with one response gives no pair (``single_response_groups``);
- two responses with the same text form no usable pair, whatever their scores (every model
  scores them as a tie, which counts as wrong): dropped, ``identical_texts_dropped``;
- a non-numeric or missing (NaN/null) score is an error, not a drop: a score of "?" is a data
  problem to fix upstream, and guessing it would change which response is preferred.
"""

from __future__ import annotations

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
    paper_test_rows,
    split_report,
    validation_mask,
)

HUB_ID = "HannahRoseKirk/prism-alignment"
UTTERANCE_FIELDS = [
    "utterance_id", "user_id", "interaction_id", "conversation_id", "turn",
    "user_prompt", "model_response", "model_name", "score",
]
SURVEY_FIELDS = ["user_id", "location"]
EXTRA_COLUMNS = [
    "interaction_id", "conversation_id", "turn", "chosen_score", "rejected_score",
    "chosen_model", "rejected_model", "messages",
]
PROMPT_CONTEXTS = ("turn", "history")
_ID_FIELDS = ["utterance_id", "user_id", "interaction_id", "conversation_id"]
_COMMIT = re.compile(r"[0-9a-f]{40}")


def read_jsonl(path: str | Path) -> pd.DataFrame:
    """One JSON object per line -> a DataFrame (nested objects stay dicts; blank lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file. Expected PRISM-format JSON lines here (one object per line; "
            f"utterances.jsonl with {UTTERANCE_FIELDS}, survey.jsonl with {SURVEY_FIELDS}).")
    rows = []
    with open(path, "rb") as f:  # decoded line by line: a bad byte is named with its line
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}, line {lineno}: not valid UTF-8 (byte "
                                 f"{raw[e.start]:#04x} at column {e.start + 1}); save the file "
                                 "as UTF-8") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {lineno}: not valid JSON ({e.msg} at column "
                                 f"{e.colno}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}, line {lineno}: expected a JSON object, got "
                                 f"{type(row).__name__}")
            rows.append(row)
    return pd.DataFrame.from_records(rows)


def _require(df: pd.DataFrame, fields: list[str], where: str) -> None:
    missing = [c for c in fields if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; PRISM-format data needs "
                         f"{fields} (extra columns are ignored)")


def load_prism_tables(
    data_dir: str | Path | None = None, revision: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """(utterances, survey, fingerprint) from ``data_dir`` or, when None, the Hugging Face hub.

    A local directory holds ``utterances.jsonl`` and ``survey.jsonl``; its fingerprint is the
    sha256 of the two files. From the hub it is the hub id and the commit the load actually
    used (``hub_commit``), whatever ``revision`` said (None: the newest); pass a commit as
    ``revision`` to make a run repeatable.
    """
    if data_dir is None:
        from datasets import load_dataset

        try:
            loaded = [load_dataset(HUB_ID, name, split="train", revision=revision)
                      for name in ("utterances", "survey")]
            tables = [ds.to_pandas() for ds in loaded]
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConnectionError(
                f"could not load {HUB_ID} (revision {revision}) from the Hugging Face hub "
                f"({first[:200]}); offline, export its 'utterances' and 'survey' configs once "
                "elsewhere as utterances.jsonl and survey.jsonl and pass their directory as "
                "--data-dir (data.data_dir)") from e
        where = [f"{HUB_ID} ({name})" for name in ("utterances", "survey")]
        commits = sorted({hub_commit(ds, revision) for ds in loaded})
        fingerprint = f"{HUB_ID}@{'+'.join(commits)}"
    else:
        paths = [Path(data_dir) / "utterances.jsonl", Path(data_dir) / "survey.jsonl"]
        tables = [read_jsonl(p) for p in paths]
        where = [str(p) for p in paths]
        fingerprint = file_fingerprint(*paths)
    utterances, survey = tables
    _require(utterances, UTTERANCE_FIELDS, where[0])
    _require(survey, SURVEY_FIELDS, where[1])
    return utterances, survey, fingerprint


def hub_commit(ds: Any, revision: str | None) -> str:
    """The commit of ``HUB_ID`` that a ``datasets`` load read: its Arrow files lie under
    ``.../<config>/<version>/<commit>/`` (online, the commit ``revision`` resolved to; offline,
    the cached one it used), else the hub is asked; failing both, the rows' own hash, so that a
    fingerprint never stays the same while the data changes."""
    for f in getattr(ds, "cache_files", None) or []:
        name = Path(f.get("filename", "")).parent.name
        if _COMMIT.fullmatch(name):
            return name
    if revision and _COMMIT.fullmatch(revision):
        return revision
    try:
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(HUB_ID, revision=revision).sha
        if sha and _COMMIT.fullmatch(sha):
            return sha
    except Exception:  # offline or unreachable: fall back to the content
        pass
    rows = json.dumps(ds.to_pandas().to_dict("records"), sort_keys=True, default=str)
    return "content-" + hashlib.sha256(rows.encode()).hexdigest()[:16]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def _reside_country(location: Any, user_id: str) -> str | None:
    """``location.reside_country``: a dict (hub, simulator) or a JSON string; None if absent."""
    if isinstance(location, str):
        try:
            location = json.loads(location)
        except json.JSONDecodeError:
            raise ValueError(f"survey: user {user_id!r} has a location that is neither a dict "
                             f"nor a JSON object: {location[:80]!r}") from None
    if _is_missing(location):
        return None
    if not isinstance(location, dict):
        raise ValueError(f"survey: user {user_id!r}: location must be a dict with "
                         f"'reside_country', got {type(location).__name__}")
    country = location.get("reside_country")
    if _is_missing(country) or not str(country).strip():
        return None
    return str(country)


def _survey_countries(survey: pd.DataFrame) -> pd.Series:
    """user_id (str) -> country (str or None); one survey row per user."""
    _require(survey, SURVEY_FIELDS, "survey")
    users = survey["user_id"].astype(str)
    dup = users[users.duplicated()]
    if len(dup):
        raise ValueError(f"survey: user_id {dup.iloc[0]!r} appears more than once "
                         f"({dup.nunique()} duplicated ids); the survey has one row per user")
    countries = [_reside_country(loc, u) for loc, u in zip(survey["location"], users, strict=True)]
    return pd.Series(countries, index=users, dtype=object)


def _clean_utterances(utterances: pd.DataFrame) -> pd.DataFrame:
    """The used fields, ids as strings, numeric scores; bad values raise naming the utterance."""
    _require(utterances, UTTERANCE_FIELDS, "utterances")
    u = utterances[UTTERANCE_FIELDS].copy()
    for col in _ID_FIELDS:
        u[col] = u[col].astype(str)
    dup = u["utterance_id"][u["utterance_id"].duplicated()]
    if len(dup):
        raise ValueError(f"utterances: utterance_id {dup.iloc[0]!r} appears more than once; "
                         "ids must be unique")
    scores = pd.to_numeric(u["score"], errors="coerce")
    bad = scores.isna() | ~np.isfinite(scores.astype(float))
    bad |= u["score"].map(lambda v: isinstance(v, bool | np.bool_))  # JSON true is not 1
    if bad.any():
        i = bad.to_numpy().nonzero()[0][0]
        uid, value = u["utterance_id"].iloc[i], u["score"].iloc[i]
        shown = "missing (null/NaN)" if _is_missing(value) else repr(value)
        raise ValueError(
            f"utterances: utterance {uid!r} has score {shown}, which is not a finite number "
            f"({int(bad.sum())} such rows). Scores are PRISM's 1-100 ratings; fix or drop these "
            "rows before building pairs (a guessed score would decide which response wins).")
    u["score"] = scores.astype(float)
    for col in ("user_prompt", "model_response"):
        null = u[col].isna()
        if null.any():
            uid = u.loc[null, "utterance_id"].iloc[0]
            raise ValueError(f"utterances: utterance {uid!r} has no {col} (null); "
                             f"{int(null.sum())} rows lack it")
        text = u[col].map(lambda v: isinstance(v, str))
        if not text.all():  # a list, an object, a number: not a text to score
            i = (~text).to_numpy().nonzero()[0][0]
            value = u[col].iloc[i]
            raise ValueError(f"utterances: utterance {u['utterance_id'].iloc[i]!r} has a "
                             f"{col} that is a {type(value).__name__}, not a string: "
                             f"{json.dumps(value, default=str)[:80]} ({int((~text).sum())} "
                             f"such rows); {col} must be the text itself")
    return u


def _histories(u: pd.DataFrame, report: dict[str, Any]) -> pd.Series:
    """(user_id, interaction_id) -> JSON chat list of the conversation's earlier turns.

    Each earlier turn gives its ``user_prompt`` and the response the user continued with
    (``if_chosen``), in turn order; an opening turn has "[]". A turn with no response flagged
    falls back to its highest-scored one (PRISM flags that one), counted in
    ``report["history_unflagged_turns"]``.
    """
    if "if_chosen" not in u.columns:
        raise ValueError("utterances: prompt_context='history' needs the field 'if_chosen' (which "
                         "response each turn continued with); it is missing. Use "
                         "prompt_context='turn' or add the field.")
    flagged = u["if_chosen"].fillna(False).astype(bool).to_numpy()
    ranked = u.assign(_flag=flagged).sort_values(["_flag", "score"], ascending=False,
                                                 kind="stable")
    chosen = ranked.drop_duplicates(["user_id", "interaction_id"])
    report["history_unflagged_turns"] = int((~chosen["_flag"]).sum())
    turns = chosen[["user_id", "conversation_id", "interaction_id", "turn", "user_prompt",
                    "model_response"]].copy()
    turns["turn"] = pd.to_numeric(turns["turn"], errors="raise")
    out: dict[tuple[str, str], str] = {}
    for _, conv in turns.sort_values("turn").groupby(["user_id", "conversation_id"], sort=False):
        messages: list[dict[str, str]] = []
        for row in conv.itertuples(index=False):
            out[(row.user_id, row.interaction_id)] = json.dumps(messages, ensure_ascii=False)
            messages = messages + [{"role": "user", "content": row.user_prompt},
                                   {"role": "assistant", "content": row.model_response}]
    return pd.Series(out)


def joined_prompt(history: str, prompt: str) -> str:
    """The earlier turns and this turn's prompt as one text, for models without a chat template."""
    turns = [f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}"
             for m in json.loads(history)]
    return "\n\n".join([*turns, f"User: {prompt}"]) if turns else prompt


def _rated_utterances(
    utterances: pd.DataFrame, survey: pd.DataFrame, test_frac: float, split_seed: int,
    prompt_context: str, report: dict[str, Any],
) -> tuple[pd.DataFrame, set[str], pd.Series | None]:
    """(utterances kept, test users, histories): the cleaning every PRISM table shares.

    The used fields, cleaned (``_clean_utterances``), with each user's ``country``; the
    utterances of users absent from the survey or without a country are excluded and counted in
    ``report``, as are the survey rows and test users of the split. ``histories`` is the
    conversations' earlier turns with ``prompt_context="history"``, else None.
    """
    if prompt_context not in PROMPT_CONTEXTS:
        raise ValueError(f"data.prompt_context must be one of {PROMPT_CONTEXTS}, got "
                         f"{prompt_context!r}")
    country_of = _survey_countries(survey)
    u = _clean_utterances(utterances)
    report.update({
        "n_utterances": len(u), "n_users": len(country_of),
        "test_frac": test_frac, "split_seed": split_seed,
        "split_method": "datasets train_test_split over the survey rows in loaded order",
        "prompt_context": prompt_context,
    })
    test_users = set(country_of.index[paper_test_rows(len(country_of), test_frac, split_seed)])
    report["survey_rows"] = len(country_of)
    report["test_users_in_survey"] = len(test_users)

    # exclusions, counted per reason (utterances and users)
    in_survey = u["user_id"].isin(country_of.index)
    u["country"] = u["user_id"].map(country_of)
    no_country = in_survey & u["country"].isna()
    report["excluded"] = {"user_not_in_survey": int((~in_survey).sum()),
                          "country_missing": int(no_country.sum())}
    report["excluded_users"] = {"user_not_in_survey": int(u.loc[~in_survey, "user_id"].nunique()),
                                "country_missing": int(u.loc[no_country, "user_id"].nunique())}
    history = None
    if prompt_context == "history":
        if "if_chosen" in utterances.columns:
            u["if_chosen"] = utterances["if_chosen"]
        history = _histories(u, report)  # from every turn of the conversation, before exclusions
    u = u[in_survey & ~no_country]

    # one prompt per interaction, else the pair's x is ambiguous
    n_prompts = u.groupby(["user_id", "interaction_id"])["user_prompt"].nunique()
    if (n_prompts > 1).any():
        user, inter = n_prompts[n_prompts > 1].index[0]
        raise ValueError(f"utterances: interaction {inter!r} of user {user!r} has "
                         f"{int(n_prompts.max())} different user_prompt values; one is expected")
    return u, test_users, history


def _prompts(hist: np.ndarray, turn_prompts: np.ndarray, prompt_context: str
             ) -> tuple[np.ndarray, np.ndarray]:
    """(prompt, messages) of each row: the turn's prompt (with ``"history"``, the earlier turns
    joined before it) and the same conversation as a JSON chat list."""
    prompts = (np.array([joined_prompt(h, p) for h, p in zip(hist, turn_prompts)], dtype=object)
               if prompt_context == "history" else turn_prompts)
    messages = np.array([json.dumps([*json.loads(h), {"role": "user", "content": p}],
                                    ensure_ascii=False) for h, p in zip(hist, turn_prompts)],
                        dtype=object)
    return prompts, messages


def build_prism_pairs(
    utterances: pd.DataFrame, survey: pd.DataFrame, test_frac: float = 0.15,
    split_seed: int = 0, val_frac: float = 0.15, prompt_context: str = "turn",
) -> PairData:
    """Every within-interaction pair of differently scored responses, users split train/test.

    The test users are those of ``train_test_split`` over the survey rows in their given order
    (the hub's order, or the file's); the pairs themselves do not depend on the order of the
    utterance rows.
    """
    report: dict[str, Any] = {"val_frac": val_frac}
    u, test_users, history = _rated_utterances(utterances, survey, test_frac, split_seed,
                                               prompt_context, report)

    # every i < j inside a (user_id, interaction_id) group, in a fixed order; integer row
    # numbers are merged (not the text columns), which keeps this fast on the full data
    u = u.sort_values(["user_id", "interaction_id", "utterance_id"], ignore_index=True)
    by_group = u.groupby(["user_id", "interaction_id"], sort=False)
    sizes = by_group.size()
    report["n_interactions"] = len(sizes)
    report["single_response_groups"] = int((sizes == 1).sum())
    rows = pd.DataFrame({"g": by_group.ngroup().to_numpy(), "pos": by_group.cumcount().to_numpy(),
                         "row": np.arange(len(u))})
    both = rows.merge(rows, on="g", suffixes=("_a", "_b"))
    both = both[both["pos_a"] < both["pos_b"]]
    order = np.lexsort((both["row_b"].to_numpy(), both["row_a"].to_numpy()))
    ia, ib = both["row_a"].to_numpy()[order], both["row_b"].to_numpy()[order]

    score = u["score"].to_numpy()
    tie = score[ia] == score[ib]
    report["n_comparisons"] = len(ia)
    report["ties_dropped"] = int(tie.sum())
    report["ties_dropped_by_country"] = {
        str(c): int(n) for c, n in u["country"].iloc[ia[tie]].value_counts().sort_index().items()}
    ia, ib = ia[~tie], ib[~tie]
    text = u["model_response"].to_numpy()
    same = text[ia] == text[ib]
    report["identical_texts_dropped"] = int(same.sum())
    report["identical_texts_dropped_by_country"] = {
        str(c): int(n) for c, n in u["country"].iloc[ia[same]].value_counts().sort_index().items()}
    ia, ib = ia[~same], ib[~same]
    win = np.where(score[ia] > score[ib], ia, ib)
    lose = np.where(score[ia] > score[ib], ib, ia)

    def col(field: str, at: np.ndarray) -> np.ndarray:
        return u[field].to_numpy()[at]

    keys = list(zip(col("user_id", ia), col("interaction_id", ia)))
    hist = (history.loc[keys].to_numpy() if history is not None and len(keys)
            else np.full(len(ia), "[]", dtype=object))
    prompts, messages = _prompts(hist, col("user_prompt", ia), prompt_context)
    pairs = pd.DataFrame({
        "country": col("country", ia),
        "split": np.where(u["user_id"].isin(test_users).to_numpy()[ia], "test", "train"),
        "tune_val": False,
        "user_id": col("user_id", ia),
        "group_id": col("interaction_id", ia),
        "prompt": prompts,
        "chosen": col("model_response", win),
        "rejected": col("model_response", lose),
        "chosen_id": col("utterance_id", win),
        "rejected_id": col("utterance_id", lose),
        "interaction_id": col("interaction_id", ia),
        "conversation_id": col("conversation_id", ia),
        "turn": col("turn", ia),
        "chosen_score": score[win],
        "rejected_score": score[lose],
        "chosen_model": col("model_name", win),
        "rejected_model": col("model_name", lose),
        "messages": messages,
    }, columns=PAIR_COLUMNS + EXTRA_COLUMNS)
    pairs["tune_val"] = validation_mask(pairs, val_frac, split_seed)
    report.update(split_report(pairs))
    return PairData(pairs=pairs, source="prism", report=report)


TURN_COLUMNS = ["country", "user_id", "interaction_id", "conversation_id", "turn",
                "utterance_id", "prompt", "response", "score", "model_name", "messages"]


def test_turns(
    utterances: pd.DataFrame, survey: pd.DataFrame, test_frac: float = 0.15,
    split_seed: int = 0, prompt_context: str = "turn",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every rated response of the test users' turns, for best-of-N (``scpo.companion.bon``):
    one row per utterance (``TURN_COLUMNS``), the turns with one response left out.

    The same users, cleaning, exclusions and prompts as ``build_prism_pairs``, but nothing is
    paired, so the responses of tied scores stay. The report counts the test turns kept
    (``n_turns``, ``n_responses``) and left out (``single_response_turns``), with the
    exclusions of the shared cleaning.
    """
    report: dict[str, Any] = {}
    u, test_users, history = _rated_utterances(utterances, survey, test_frac, split_seed,
                                               prompt_context, report)
    u = u[u["user_id"].isin(test_users)]
    size = u.groupby(["user_id", "interaction_id"])["utterance_id"].transform("size")
    report["single_response_turns"] = int((size == 1).sum())
    report["single_response_turns_by_country"] = {
        str(c): int(n) for c, n in u.loc[size == 1, "country"].value_counts().sort_index().items()}
    u = u[size > 1].sort_values(["user_id", "interaction_id", "utterance_id"], ignore_index=True)
    keys = list(zip(u["user_id"], u["interaction_id"]))
    hist = (history.loc[keys].to_numpy() if history is not None and len(keys)
            else np.full(len(u), "[]", dtype=object))
    prompts, messages = _prompts(hist, u["user_prompt"].to_numpy(), prompt_context)
    turns = u.assign(prompt=prompts, messages=messages).rename(
        columns={"model_response": "response"})[TURN_COLUMNS]
    report["n_turns"] = int(turns["interaction_id"].nunique())
    report["n_responses"] = len(turns)
    report["turns_by_country"] = {str(c): int(n) for c, n in turns.groupby("country")
                                  ["interaction_id"].nunique().items()}
    return turns, report


def load_test_turns(
    data_dir: str | Path | None = None, revision: str | None = None, test_frac: float = 0.15,
    split_seed: int = 0, prompt_context: str = "turn",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``test_turns`` of a local directory (utterances.jsonl, survey.jsonl) or the hub."""
    utterances, survey, fingerprint = load_prism_tables(data_dir, revision)
    turns, report = test_turns(utterances, survey, test_frac, split_seed, prompt_context)
    report["fingerprint"] = fingerprint
    return turns, report


def load_prism(
    data_dir: str | Path | None = None, revision: str | None = None, test_frac: float = 0.15,
    split_seed: int = 0, val_frac: float = 0.15, prompt_context: str = "turn",
) -> PairData:
    """PRISM pairs from a local directory (utterances.jsonl, survey.jsonl) or the hub."""
    utterances, survey, fingerprint = load_prism_tables(data_dir, revision)
    data = build_prism_pairs(utterances, survey, test_frac, split_seed, val_frac, prompt_context)
    data.fingerprint = fingerprint
    data.report["data"] = str(data_dir) if data_dir is not None else f"{HUB_ID}@{revision}"
    return data
