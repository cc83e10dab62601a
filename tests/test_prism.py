"""PRISM -> pairs on a tiny hand-made fixture whose pairs are worked out by hand."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scpo import prism
from scpo.pairs import PAIR_COLUMNS, paper_test_rows


def utt(uid, user, inter, conv, turn, score, model="m", prompt=None):
    """One utterance row with the fields PRISM has beyond the used ones (they must be ignored)."""
    return {
        "conversation_type": "unguided", "utterance_id": uid, "user_id": user,
        "interaction_id": inter, "conversation_id": conv, "turn": turn,
        "within_turn_id": 0, "user_prompt": prompt or f"prompt of {inter}",
        "model_response": f"response {uid}", "model_name": model, "model_provider": "p",
        "score": score, "if_chosen": False,
    }


# Rows deliberately unsorted. By hand:
# u1/i1 (opening turn, 4 responses): a=80 b=40 c=60 d=40 -> a>b a>c a>d c>b c>d, b=d tie
# u1/i2 (later turn, 2 responses):   e=30 f=70             -> f>e
# u2/i3: g=55 h=10 -> g>h;  u2/i4: k alone -> single-response group
# u3 has no country; u9 is not in the survey.
UTTERANCES = [
    utt("f", "u1", "i2", "c1", 1, 70, "m2"),
    utt("h", "u2", "i3", "c2", 0, 10, "m4"),
    utt("c", "u1", "i1", "c1", 0, 60, "m3"),
    utt("y1", "u3", "i7", "c7", 0, 20),
    utt("a", "u1", "i1", "c1", 0, 80, "m1"),
    utt("z1", "u9", "i9", "c9", 0, 20),
    utt("k", "u2", "i4", "c3", 0, 50),
    utt("d", "u1", "i1", "c1", 0, 40, "m4"),
    utt("b", "u1", "i1", "c1", 0, 40, "m2"),
    utt("e", "u1", "i2", "c1", 1, 30, "m1"),
    utt("z2", "u9", "i9", "c9", 0, 90),
    utt("g", "u2", "i3", "c2", 0, 55, "m1"),
    utt("y2", "u3", "i7", "c7", 0, 60),
]
SURVEY = [
    {"user_id": "u1", "age": "25-34", "location": {"birth_country": "Peru",
                                                   "reside_country": "Chile"}},
    # a JSON string instead of a struct is accepted too
    {"user_id": "u2", "age": "18-24", "location": json.dumps({"reside_country": "Mexico"})},
    {"user_id": "u3", "age": "18-24", "location": {"birth_country": "Chile"}},
]
EXPECTED = {  # (chosen_id, rejected_id) -> (country, chosen_score, rejected_score, models)
    ("a", "b"): ("Chile", 80, 40, "m1", "m2"),
    ("a", "c"): ("Chile", 80, 60, "m1", "m3"),
    ("a", "d"): ("Chile", 80, 40, "m1", "m4"),
    ("c", "b"): ("Chile", 60, 40, "m3", "m2"),
    ("c", "d"): ("Chile", 60, 40, "m3", "m4"),
    ("f", "e"): ("Chile", 70, 30, "m2", "m1"),
    ("g", "h"): ("Mexico", 55, 10, "m1", "m4"),
}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture
def prism_dir(tmp_path):
    write_jsonl(tmp_path / "utterances.jsonl", UTTERANCES)
    write_jsonl(tmp_path / "survey.jsonl", SURVEY)
    return tmp_path


def test_pairs_by_hand(prism_dir):
    data = prism.load_prism(prism_dir, val_frac=0.0)
    p = data.pairs
    assert list(p.columns) == PAIR_COLUMNS + prism.EXTRA_COLUMNS
    got = {(r.chosen_id, r.rejected_id): (r.country, r.chosen_score, r.rejected_score,
                                         r.chosen_model, r.rejected_model)
           for r in p.itertuples()}
    assert got == EXPECTED
    ae = p[(p.chosen_id == "a") & (p.rejected_id == "b")].iloc[0]
    assert (ae.prompt, ae.chosen, ae.rejected) == ("prompt of i1", "response a", "response b")
    assert (ae.user_id, ae.group_id, ae.interaction_id, ae.conversation_id, ae.turn) == (
        "u1", "i1", "i1", "c1", 0)
    assert p.loc[p.chosen_id == "f", "turn"].item() == 1
    r = data.report
    assert r["n_utterances"] == 13 and r["n_users"] == 3 and r["n_pairs"] == 7
    assert r["ties_dropped"] == 1 and r["ties_dropped_by_country"] == {"Chile": 1}
    assert r["excluded"] == {"user_not_in_survey": 2, "country_missing": 2}
    assert r["single_response_groups"] == 1
    assert r["n_comparisons"] == 8  # 6 + 1 + 1 comparisons, one of them a tie
    by_country = {c: sum(d.values()) for c, d in r["pairs_by_country_split"].items()}
    assert by_country == {"Chile": 6, "Mexico": 1}
    assert len(data.fingerprint) == 16 and data.source == "prism"
    json.dumps(r)  # the report is plain JSON


def test_utterance_row_order_does_not_matter(prism_dir):
    utterances, survey, _ = prism.load_prism_tables(prism_dir)
    a = prism.build_prism_pairs(utterances, survey, test_frac=0.5, val_frac=0.5)
    shuffled = utterances.sample(frac=1.0, random_state=3)
    b = prism.build_prism_pairs(shuffled, survey, test_frac=0.5, val_frac=0.5)
    pd.testing.assert_frame_equal(a.pairs, b.pairs)
    assert a.report == b.report


def many_users(n_users=60, seed=0):
    """n users over three countries, each with an opening turn of 4 responses and no ties."""
    rng = np.random.default_rng(seed)
    countries = ["Chile", "Israel", "Canada"]
    survey = pd.DataFrame({"user_id": [f"u{i}" for i in range(n_users)],
                           "location": [{"reside_country": countries[i % 3]}
                                        for i in range(n_users)]})
    rows = [utt(f"x{i}-{k}", f"u{i}", f"i{i}", f"c{i}", 0, int(s))
            for i in range(n_users) for k, s in enumerate(rng.permutation(100)[:4] + 1)]
    return pd.DataFrame(rows), survey


def test_test_users_are_datasets_train_test_split_of_the_survey_rows():
    """The released code's split: datasets' train_test_split(test_size=0.15, seed=0) over the
    survey rows in their loaded order, rows without a country included."""
    datasets = pytest.importorskip("datasets")
    utterances, survey = many_users(n_users=61)
    survey.at[5, "location"] = {"birth_country": "Chile"}  # no reside_country: still a row
    survey = survey.sample(frac=1.0, random_state=7).reset_index(drop=True)  # the hub's order
    got = prism.build_prism_pairs(utterances, survey)
    # the call itself, on the survey table as loaded
    ds = datasets.Dataset.from_pandas(survey.assign(location=survey["location"].map(json.dumps)))
    want = set(ds.train_test_split(test_size=0.15, seed=0)["test"]["user_id"])
    assert len(want) == 10  # ceil(0.15 * 61) = ceil(9.15), not round(9.15) = 9
    test_users = set(got.pairs.loc[got.pairs["split"] == "test", "user_id"])
    assert test_users == want - {"u5"}  # u5 has no country: in the split, not in the pairs
    assert got.report["test_users_in_survey"] == 10 and got.report["survey_rows"] == 61
    # another order of the survey rows is another split: the order is part of the split
    other = prism.build_prism_pairs(utterances, survey.iloc[::-1])
    assert set(other.pairs.loc[other.pairs["split"] == "test", "user_id"]) != test_users


def test_every_training_user_trains_and_val_users_are_a_hashed_subset():
    utterances, survey = many_users()
    no_val = prism.build_prism_pairs(utterances, survey, val_frac=0.0).pairs
    data = prism.build_prism_pairs(utterances, survey, val_frac=0.3)
    p = data.pairs
    assert set(p["split"]) == {"train", "test"} and not no_val["tune_val"].any()
    users = {s: set(p.loc[p.split == s, "user_id"]) for s in ("train", "test")}
    val = set(p.loc[p["tune_val"], "user_id"])
    assert not users["train"] & users["test"] and val <= users["train"]
    assert users["test"] == set(survey["user_id"].iloc[paper_test_rows(60, 0.15, 0)])
    pd.testing.assert_frame_equal(p.drop(columns="tune_val"), no_val.drop(columns="tune_val"))
    assert len(users["test"]) == 9 and 0 < len(val) < len(users["train"])
    assert data.report["tune_val_users"] == len(val)
    assert len(p) == 60 * 6  # 4 responses, no ties: 6 pairs per user
    # same seed, same table; another seed, another split
    pd.testing.assert_frame_equal(p, prism.build_prism_pairs(utterances, survey,
                                                             val_frac=0.3).pairs)
    other = prism.build_prism_pairs(utterances, survey, split_seed=1, val_frac=0.3).pairs
    assert set(other.loc[other.split == "test", "user_id"]) != users["test"]


def test_dropping_a_user_without_country_moves_no_one_between_train_and_val():
    utterances, survey = many_users()
    a = prism.build_prism_pairs(utterances, survey, test_frac=0.0, val_frac=0.3).pairs
    survey2 = survey.copy()
    survey2.at[17, "location"] = {}  # u17 loses its country
    b = prism.build_prism_pairs(utterances, survey2, test_frac=0.0, val_frac=0.3).pairs
    val_a = set(a.loc[a["tune_val"], "user_id"]) - {"u17"}
    assert set(b.loc[b["tune_val"], "user_id"]) == val_a and len(val_a) > 5


def test_identical_texts_are_dropped_and_counted():
    rows = [utt("p", "u1", "i1", "c1", 0, 80), utt("q", "u1", "i1", "c1", 0, 20),
            utt("r", "u1", "i1", "c1", 0, 50)]
    rows[1]["model_response"] = rows[0]["model_response"]  # p and q: same text, other scores
    survey = pd.DataFrame([{"user_id": "u1", "location": {"reside_country": "Chile"}}])
    data = prism.build_prism_pairs(pd.DataFrame(rows), survey, test_frac=0.0)
    assert sorted(zip(data.pairs.chosen_id, data.pairs.rejected_id)) == [("p", "r"), ("r", "q")]
    assert data.report["identical_texts_dropped"] == 1
    assert data.report["identical_texts_dropped_by_country"] == {"Chile": 1}


def test_prompt_history_option():
    """turn: the prompt alone (the released code); history: earlier turns and chosen replies."""
    rows = [utt("a", "u1", "i1", "c1", 0, 80, prompt="Hi"),
            utt("b", "u1", "i1", "c1", 0, 20, prompt="Hi"),
            utt("e", "u1", "i2", "c1", 1, 30, prompt="And then?"),
            utt("f", "u1", "i2", "c1", 1, 70, prompt="And then?")]
    rows[1]["if_chosen"] = True  # the user continued with b, though a scored higher
    survey = pd.DataFrame([{"user_id": "u1", "location": {"reside_country": "Chile"}}])
    turn = prism.build_prism_pairs(pd.DataFrame(rows), survey, test_frac=0.0).pairs
    assert turn.set_index("chosen_id")["prompt"].to_dict() == {"a": "Hi", "f": "And then?"}
    hist = prism.build_prism_pairs(pd.DataFrame(rows), survey, test_frac=0.0,
                                   prompt_context="history").pairs.set_index("chosen_id")
    assert hist.loc["a", "prompt"] == "Hi"
    assert json.loads(hist.loc["a", "messages"]) == [{"role": "user", "content": "Hi"}]
    assert hist.loc["f", "prompt"] == "User: Hi\n\nAssistant: response b\n\nUser: And then?"
    assert json.loads(hist.loc["f", "messages"]) == [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "response b"},
        {"role": "user", "content": "And then?"}]
    assert turn.set_index("chosen_id")["messages"].to_dict() == {
        "a": '[{"role": "user", "content": "Hi"}]',
        "f": '[{"role": "user", "content": "And then?"}]'}
    with pytest.raises(ValueError, match="prompt_context must be one of"):
        prism.build_prism_pairs(pd.DataFrame(rows), survey, prompt_context="all")
    no_flag = pd.DataFrame(rows).drop(columns="if_chosen")
    with pytest.raises(ValueError, match="needs the field 'if_chosen'"):
        prism.build_prism_pairs(no_flag, survey, test_frac=0.0, prompt_context="history")


def test_test_turns_keep_every_rated_response_of_the_test_users(prism_dir):
    """Best-of-N reads turns, not pairs: the tied b = d stay; the lone k is left out, counted."""
    utterances, survey, _ = prism.load_prism_tables(prism_dir)
    survey = survey.iloc[[1, 2, 0]]  # u2, u3, u1: rows 2 and 0 are the test rows of 0.6
    assert set(survey["user_id"].iloc[paper_test_rows(3, 0.6, 0)]) == {"u1", "u2"}
    turns, report = prism.test_turns(utterances, survey, test_frac=0.6)
    assert list(turns.columns) == prism.TURN_COLUMNS
    assert turns["utterance_id"].tolist() == list("abcdefgh")  # by user, turn, then id
    assert turns.set_index("utterance_id").loc[["b", "d"], "score"].tolist() == [40, 40]
    assert report["single_response_turns"] == 1 and report["n_turns"] == 3
    assert report["excluded"] == {"user_not_in_survey": 2, "country_missing": 2}
    assert report["turns_by_country"] == {"Chile": 2, "Mexico": 1}
    # the prompts are the pairs' own, with the history too
    for ctx in ("turn", "history"):
        pairs = prism.build_prism_pairs(utterances, survey, test_frac=0.6,
                                        prompt_context=ctx).pairs
        turns, _ = prism.test_turns(utterances, survey, test_frac=0.6, prompt_context=ctx)
        got = turns.set_index("utterance_id")
        for r in pairs[pairs["split"] == "test"].itertuples():
            assert got.loc[r.chosen_id, "prompt"] == r.prompt == got.loc[r.rejected_id, "prompt"]
            assert got.loc[r.chosen_id, "messages"] == r.messages


def test_malformed_line_names_file_and_line(prism_dir):
    path = prism_dir / "utterances.jsonl"
    lines = path.read_text().splitlines()
    lines[2] = lines[2][:-5]  # cut the closing of the third object
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"utterances\.jsonl, line 3: not valid JSON"):
        prism.load_prism(prism_dir)


def test_missing_file(tmp_path):
    write_jsonl(tmp_path / "utterances.jsonl", UTTERANCES)
    with pytest.raises(FileNotFoundError, match=r"survey\.jsonl: no such file.*JSON lines"):
        prism.load_prism_tables(tmp_path)


def test_missing_column_names_file_and_column(prism_dir):
    write_jsonl(prism_dir / "utterances.jsonl",
                [{k: v for k, v in r.items() if k != "interaction_id"} for r in UTTERANCES])
    with pytest.raises(ValueError, match=r"utterances\.jsonl: missing column\(s\) "
                                         r"\['interaction_id'\]"):
        prism.load_prism_tables(prism_dir)
    write_jsonl(prism_dir / "utterances.jsonl", UTTERANCES)
    write_jsonl(prism_dir / "survey.jsonl", [{"user_id": "u1"}])
    with pytest.raises(ValueError, match=r"survey\.jsonl: missing column\(s\) \['location'\]"):
        prism.load_prism_tables(prism_dir)


@pytest.mark.parametrize("bad, shown", [
    ("high", "'high'"), (None, r"missing \(null/NaN\)"), ("nan", "'nan'"), ("inf", "'inf'")])
def test_bad_score_names_utterance_and_value(bad, shown):
    rows = [dict(r) for r in UTTERANCES]
    rows[4]["score"] = bad  # utterance "a"
    with pytest.raises(ValueError, match=rf"utterance 'a' has score {shown}.*not a finite"):
        prism.build_prism_pairs(pd.DataFrame(rows), pd.DataFrame(SURVEY))


def test_nan_score_from_file_raises(prism_dir):
    text = (prism_dir / "utterances.jsonl").read_text().replace('"score": 80', '"score": NaN')
    (prism_dir / "utterances.jsonl").write_text(text)  # Python's json writes and reads NaN
    with pytest.raises(ValueError, match=r"utterance 'a' has score missing \(null/NaN\)"):
        prism.load_prism(prism_dir)


def test_numeric_text_score_is_a_number():
    rows = [dict(r) for r in UTTERANCES]
    rows[4]["score"] = "80"
    p = prism.build_prism_pairs(pd.DataFrame(rows), pd.DataFrame(SURVEY)).pairs
    assert p.loc[p.chosen_id == "a", "chosen_score"].tolist() == [80.0, 80.0, 80.0]


def test_users_missing_from_survey_are_counted_not_paired():
    survey = pd.DataFrame(SURVEY[1:])  # u1 (Chile) is gone
    data = prism.build_prism_pairs(pd.DataFrame(UTTERANCES), survey)
    assert set(data.pairs["country"]) == {"Mexico"}
    assert data.report["excluded"] == {"user_not_in_survey": 6 + 2, "country_missing": 2}
    assert data.report["excluded_users"] == {"user_not_in_survey": 2, "country_missing": 1}


def test_duplicate_survey_user_and_ambiguous_prompt_raise():
    survey = pd.DataFrame(SURVEY + [SURVEY[0]])
    with pytest.raises(ValueError, match="user_id 'u1' appears more than once"):
        prism.build_prism_pairs(pd.DataFrame(UTTERANCES), survey)
    rows = [dict(r) for r in UTTERANCES]
    rows[2]["user_prompt"] = "another prompt"  # utterance "c" of u1/i1
    with pytest.raises(ValueError, match="interaction 'i1' of user 'u1' has 2 different"):
        prism.build_prism_pairs(pd.DataFrame(rows), pd.DataFrame(SURVEY))


def hub_snapshot(root: Path, commit: str, survey: list[dict] = SURVEY[:1]):
    """``load_dataset`` as it reads a cached hub dataset: Arrow files under
    ``<config>/<version>/<commit>/`` (datasets' own cache layout), both configs one commit."""
    import datasets

    def load(hub_id, name, split, revision):
        d = root / commit / name / "0.0.0" / commit
        datasets.Dataset.from_list(UTTERANCES if name == "utterances" else survey).save_to_disk(d)
        return datasets.load_from_disk(str(d))

    return load


def test_hub_tables_via_datasets(monkeypatch, tmp_path):
    """The hub path: configs by name, Arrow structs back to dicts, the commit in the print."""
    import datasets

    calls = []
    commit = "a" * 40
    snapshot = hub_snapshot(tmp_path, commit)

    def fake_load_dataset(hub_id, name, split, revision):
        calls.append((hub_id, name, split, revision))
        return snapshot(hub_id, name, split, revision)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    utterances, survey, fingerprint = prism.load_prism_tables(None, revision="v1.0")
    assert calls == [(prism.HUB_ID, "utterances", "train", "v1.0"),
                     (prism.HUB_ID, "survey", "train", "v1.0")]
    assert fingerprint == f"{prism.HUB_ID}@{commit}"  # the commit "v1.0" resolved to
    assert survey["location"].iloc[0]["reside_country"] == "Chile"
    # one survey row: a 15% test split would leave no training row (datasets refuses it too)
    assert len(prism.build_prism_pairs(utterances, survey, test_frac=0.0).pairs) == 6

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConnectionError, match=r"could not load HannahRoseKirk.*\(no network\).*"
                                              r"pass their directory as --data-dir"):
        prism.load_prism(None)


def test_an_unpinned_hub_load_is_keyed_on_the_commit_it_read(monkeypatch, tmp_path):
    """Without a revision the newest snapshot loads: another commit is another fingerprint (so
    no global RM trained on the old data is reused) and run.json says which one was read."""
    import datasets

    prints = []
    for commit in ("1" * 40, "2" * 40):
        monkeypatch.setattr(datasets, "load_dataset", hub_snapshot(tmp_path, commit))
        prints.append(prism.load_prism_tables(None)[2])
    assert prints == [f"{prism.HUB_ID}@{'1' * 40}", f"{prism.HUB_ID}@{'2' * 40}"]
    # no cached files and no hub (offline): the rows themselves decide the print
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    in_memory = []
    for survey in (SURVEY[:1], [SURVEY[0], SURVEY[2]]):
        monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, name, split, revision,
                            s=survey: datasets.Dataset.from_list(
                                UTTERANCES if name == "utterances" else s))
        in_memory.append(prism.load_prism_tables(None)[2])
    assert in_memory[0] != in_memory[1] and all("@content-" in f for f in in_memory)


# ---- issue 35: bad input that got through ----

@pytest.mark.parametrize("field, value, kind", [
    ("user_prompt", ["Hi", "there"], "list"), ("user_prompt", {"text": "Hi"}, "dict"),
    ("model_response", 42, "int")])
def test_a_text_that_is_not_a_string_names_the_utterance(prism_dir, field, value, kind):
    """Issue 35: a user_prompt that is a list or a dict gave a 33-line traceback; a
    model_response of 42 was accepted as a response."""
    rows = [dict(r) for r in UTTERANCES]
    rows[4][field] = value  # utterance "a"
    write_jsonl(prism_dir / "utterances.jsonl", rows)
    with pytest.raises(ValueError, match=rf"utterance 'a' has a {field} that is a {kind}, not "
                       rf"a string: .* {field} must be the text itself"):
        prism.load_prism(prism_dir)


def test_a_score_of_true_is_not_a_number(prism_dir):
    """Issue 35: a score of `true` was read as 1."""
    text = (prism_dir / "utterances.jsonl").read_text().replace('"score": 80', '"score": true')
    (prism_dir / "utterances.jsonl").write_text(text)
    with pytest.raises(ValueError, match=r"utterance 'a' has score True, which is not a finite"):
        prism.load_prism(prism_dir)


def test_invalid_utf8_names_the_file_and_line(prism_dir):
    """Issue 35: invalid UTF-8 gave a line without the file's name."""
    path = prism_dir / "utterances.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b"Hi", b"H\xe9", 1) if b"Hi" in lines[3] else b'{"x": "\xe9"}\n'
    path.write_bytes(b"".join(lines))
    with pytest.raises(ValueError, match=r"utterances\.jsonl, line 4: not valid UTF-8 \(byte "
                       r"0xe9 at column \d+\); save the file as UTF-8"):
        prism.load_prism(prism_dir)
