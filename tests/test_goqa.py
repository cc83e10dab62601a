"""GlobalOpinionQA -> pairs on a hand-made csv in the upstream format, plus the shared real copy."""

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from scpo import goqa
from scpo.pairs import PAIR_COLUMNS, PAPER_COUNTRIES, split_units, unit_fraction

REAL_CSV = Path(__file__).resolve().parents[1].parent / "shared/data/globalopinionqa" / \
    "global_opinions.csv"
Q1 = 'Do you drink tea, "often" or not?\n(second line)'
Q2 = "Is the economy good?"


def cell(selections: dict) -> str:
    return f"defaultdict(<class 'list'>, {selections!r})"


def row(question, selections, options, source="GAS"):
    return {"question": question, "selections": cell(selections), "options": repr(options),
            "source": source}


ROWS = [
    row(Q1, {"Chile": [0.6, 0.3, 0.1], "S. Africa": [0.2, 0.5, 0.3],
             "S. Africa (Non-national sample)": [0.9, 0.05, 0.05], "Mexico": [0.4, 0.4, 0.2]},
        ["Yes", "No", "DK/Refused"]),
    row(Q2, {"Chile": [0.45, 0.55], "India (Current national sample)": [0.7, 0.3],
             "India (Old national sample)": [0.6, 0.4]}, ["Good", "Bad"], "WVS"),
]


def write_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def by_hand(p):
    return [(r.country, r.prompt, r.chosen, r.rejected, r.chosen_share, r.rejected_share)
            for r in p.itertuples()]


def test_pairs_and_shares_by_hand(tmp_path):
    data = goqa.load_goqa(write_csv(tmp_path / "global_opinions.csv", ROWS), val_frac=0.0)
    p = data.pairs
    assert list(p.columns) == PAIR_COLUMNS + goqa.EXTRA_COLUMNS
    # sorted by country, question, then (chosen option, rejected option) index
    assert by_hand(p) == [
        ("Chile", Q1, "Yes", "No", 0.6, 0.3),
        ("Chile", Q1, "Yes", "DK/Refused", 0.6, 0.1),
        ("Chile", Q1, "No", "DK/Refused", 0.3, 0.1),
        ("Chile", Q2, "Bad", "Good", 0.55, 0.45),
        ("India", Q2, "Good", "Bad", 0.7, 0.3),  # the current national sample, not the old one
        ("Mexico", Q1, "Yes", "DK/Refused", 0.4, 0.2),  # Yes = No (0.4) is a tie
        ("Mexico", Q1, "No", "DK/Refused", 0.4, 0.2),
        ("South Africa", Q1, "No", "Yes", 0.5, 0.2),
        ("South Africa", Q1, "No", "DK/Refused", 0.5, 0.3),
        ("South Africa", Q1, "DK/Refused", "Yes", 0.3, 0.2),
    ]
    q1 = goqa.question_id(Q1)
    assert q1 == "q" + hashlib.sha1(Q1.encode("utf-8")).hexdigest()[:10]
    sa = p[p.country == "South Africa"]
    assert sa.chosen_id.tolist() == [f"{q1}:1", f"{q1}:1", f"{q1}:2"]
    assert sa.rejected_id.tolist() == [f"{q1}:0", f"{q1}:2", f"{q1}:0"]
    assert (sa.user_id == q1).all() and (sa.group_id == q1).all() and (sa.source == "GAS").all()
    r = data.report
    assert r["excluded"] == {"non_national_sample": 1, "superseded_national_sample": 1}
    assert r["relabelled"] == {"India (Current national sample)": "India",
                               "India (Old national sample)": "India",
                               "S. Africa": "South Africa"}
    assert r["ties_dropped"] == 1 and r["ties_dropped_by_country"] == {"Mexico": 1}
    assert r["n_pairs"] == 10 and r["n_questions"] == 2 and r["n_distributions"] == 5
    # the option distributions, for 1 - Jensen-Shannon distance later
    o = data.options.set_index(["country", "group_id"])
    assert list(data.options.columns) == goqa.OPTIONS_COLUMNS
    assert o.loc[("South Africa", q1), "options"] == ["Yes", "No", "DK/Refused"]
    assert o.loc[("South Africa", q1), "shares"] == [0.2, 0.5, 0.3]
    assert o.loc[("India", goqa.question_id(Q2)), "shares"] == [0.7, 0.3]
    assert len(o) == 5


def test_min_share_gap_by_hand(tmp_path):
    data = goqa.build_goqa_pairs(pd.DataFrame(ROWS), min_share_gap=0.15)
    # kept: |share_i - share_j| > 0.15. Below the gap: South Africa DK/Yes (0.3 - 0.2 = 0.1)
    # and Chile Q2 (0.55 - 0.45 = 0.1); the tie stays a tie: Mexico Yes/No (0.4 = 0.4).
    assert data.report["below_share_gap"] == 2 and data.report["ties_dropped"] == 1
    assert ("South Africa", Q1, "DK/Refused", "Yes", 0.3, 0.2) not in by_hand(data.pairs)
    assert len(data.pairs) == 10 - 2
    with pytest.raises(ValueError, match="min_share_gap must be >= 0"):
        goqa.build_goqa_pairs(pd.DataFrame(ROWS), min_share_gap=-0.1)


def test_row_order_does_not_matter():
    df = pd.DataFrame(ROWS + [row(f"Q{k}", {"Chile": [0.1 * k, 1 - 0.1 * k]}, ["a", "b"])
                              for k in range(1, 9)])
    a = goqa.build_goqa_pairs(df, test_frac=0.3, val_frac=0.3)
    b = goqa.build_goqa_pairs(df.iloc[::-1], test_frac=0.3, val_frac=0.3)
    pd.testing.assert_frame_equal(a.pairs, b.pairs)
    pd.testing.assert_frame_equal(a.options, b.options)


def test_malicious_cells_are_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    attack = "__import__('os').system('touch PWNED')"
    for bad, column in [
        ({**ROWS[1], "selections": attack}, "selections"),
        ({**ROWS[1], "selections": f"defaultdict(<class 'list'>, {{'Chile': {attack}}})"},
         "selections"),
        ({**ROWS[1], "options": attack}, "options"),
    ]:
        with pytest.raises(ValueError, match=rf"row 1, column '{column}'"):
            goqa.build_goqa_pairs(pd.DataFrame([ROWS[0], bad]))
    assert not (tmp_path / "PWNED").exists()
    with pytest.raises(ValueError, match=r"row 7, column 'selections'.*finite shares"):
        goqa.parse_selections(cell({"Chile": [0.5, "x"]}), 7)
    assert goqa.parse_selections(cell({"Chile": [1, 0]}), 0) == {"Chile": [1.0, 0.0]}
    assert goqa.parse_options("['1', 2, 'No']", 0) == ["1", "2", "No"]


def test_length_mismatch_names_the_question():
    bad = row(Q2, {"Chile": [0.45, 0.55, 0.0]}, ["Good", "Bad"])
    with pytest.raises(ValueError, match=r"row 0: question 'Is the economy good\?'.*'Chile' has "
                                         r"3 shares for 2 options"):
        goqa.build_goqa_pairs(pd.DataFrame([bad]))


def test_labels_that_collide_or_are_unknown():
    both = row(Q2, {"Britain": [0.5, 0.5], "Great Britain": [0.4, 0.6]}, ["Good", "Bad"])
    with pytest.raises(ValueError, match="'Britain' and 'Great Britain' are both 'United Kingdom'"):
        goqa.build_goqa_pairs(pd.DataFrame([both]))
    odd = row(Q2, {"Peru (Urban sample)": [0.4, 0.6]}, ["Good", "Bad"])
    data = goqa.build_goqa_pairs(pd.DataFrame([odd]))
    assert data.pairs["country"].tolist() == ["Peru (Urban sample)"]
    assert data.report["unrecognised_qualifiers"] == ["Peru (Urban sample)"]
    assert goqa.country_of_label("S. Africa (Non-national sample)") == (None, 0)
    assert goqa.country_of_label("India (Old national sample)") == ("India", 2)


def test_same_text_other_options_is_one_question_two_groups():
    df = pd.DataFrame([row(Q2, {"Chile": [0.3, 0.7]}, ["Good", "Bad"]),
                       row(Q2, {"Mexico": [0.2, 0.5, 0.3]}, ["Good", "Bad", "DK"])])
    p = goqa.build_goqa_pairs(df).pairs
    assert p["user_id"].nunique() == 1 and p["split"].nunique() == 1
    assert p.groupby("country")["group_id"].first().nunique() == 2
    assert goqa.build_goqa_pairs(df).report["shared_question_texts"] == 1
    twice = pd.DataFrame([row(Q2, {"Chile": [0.3, 0.7]}, ["Good", "Bad"])] * 2)
    with pytest.raises(ValueError, match=r"rows \[0, 1\]: question 'Is the economy good\?' "
                                         r"appears twice for 'Chile'"):
        goqa.build_goqa_pairs(twice)


def test_question_id_is_stable():
    # pinned: a changed id would silently move questions between splits
    assert goqa.question_id(Q2) == "qf8ff4e2c8d"


def test_split_by_question():
    countries = ["Chile", "S. Africa", "Mexico"]
    df = pd.DataFrame([row(f"Question {k}?", {c: [0.5 + 0.01 * (k + i), 0.5 - 0.01 * (k + i)]
                                              for i, c in enumerate(countries)}, ["A", "B"])
                       for k in range(40)])
    data = goqa.build_goqa_pairs(df, test_frac=0.2, val_frac=0.25)
    p, o = data.pairs, data.options
    assert (p.groupby("user_id")["split"].nunique() == 1).all()
    assert (o.groupby("user_id")["split"].nunique() == 1).all()
    qids = df["question"].map(goqa.question_id)
    test_q = split_units(qids, 0.2, 0)
    assert set(p.loc[p.split == "test", "user_id"]) == test_q and len(test_q) == 8
    assert set(p["split"]) == {"train", "test"}
    # tuning's questions: the training questions whose seeded hash falls below val_frac
    train_q = sorted(set(qids) - test_q)
    val_q = {q for q, f in zip(train_q, unit_fraction(train_q, 0)) if f < 0.25}
    assert set(p.loc[p["tune_val"], "user_id"]) == val_q and 0 < len(val_q) < 32
    assert not p.loc[p.split == "test", "tune_val"].any()
    assert data.report["questions_by_split"] == {"train": 32, "test": 8, "tune_val": len(val_q)}
    pd.testing.assert_frame_equal(p, goqa.build_goqa_pairs(df, test_frac=0.2,
                                                           val_frac=0.25).pairs)


def test_local_paths_and_errors(tmp_path):
    write_csv(tmp_path / "global_opinions.csv", ROWS)
    a, b = goqa.load_goqa(tmp_path), goqa.load_goqa(tmp_path / "global_opinions.csv")
    pd.testing.assert_frame_equal(a.pairs, b.pairs)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16 and a.source == "goqa"
    with pytest.raises(FileNotFoundError, match=r"nowhere/global_opinions\.csv: no such file"):
        goqa.load_goqa(tmp_path / "nowhere" / "global_opinions.csv")
    write_csv(tmp_path / "no_options.csv", [{k: v for k, v in r.items() if k != "options"}
                                            for r in ROWS])
    with pytest.raises(ValueError, match=r"no_options\.csv: missing column\(s\) \['options'\]"):
        goqa.load_goqa(tmp_path / "no_options.csv")


@pytest.mark.slow
def test_shared_real_copy():
    if not REAL_CSV.exists():
        pytest.skip(f"the shared partial real copy of GlobalOpinionQA is not at {REAL_CSV}")
    data = goqa.load_goqa(REAL_CSV)
    counts = data.countries()
    for country in PAPER_COUNTRIES + ["United States", "United Kingdom"]:
        assert counts.loc[country, "train"] > 0 and counts.loc[country, "test"] > 0, country
    assert (data.pairs.groupby("user_id")["split"].nunique() == 1).all()
    assert not data.pairs["country"].str.contains("Non-national|S. Africa|Britain").any()
    assert data.report["excluded"]["non_national_sample"] > 0


def test_hub_download(tmp_path, monkeypatch):
    import huggingface_hub

    csv = write_csv(tmp_path / "global_opinions.csv", ROWS)
    calls = []

    def fake_download(repo_id, filename, repo_type, revision):
        calls.append((repo_id, filename, repo_type, revision))
        return str(csv)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    data = goqa.load_goqa(None, revision="v1")
    assert calls == [(goqa.HUB_ID, "data/global_opinions.csv", "dataset", "v1")]
    assert data.report["data"] == f"{goqa.HUB_ID}@v1" and data.report["n_pairs"] == 10

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(RuntimeError, match="could not get data/global_opinions.csv.*data_dir"):
        goqa.load_goqa(None)


def test_a_hub_load_records_the_commit_it_read(tmp_path, monkeypatch):
    """Asked for no revision (or a branch), the record names the snapshot's commit, not None."""
    from hubcache import put_repo

    csv = write_csv(tmp_path / "global_opinions.csv", ROWS)
    commit = "c" * 40
    put_repo(tmp_path / "hub", goqa.HUB_ID, "dataset", commit,
             {"data/global_opinions.csv": csv}, refs=("main",))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for revision in (None, "main"):
        data = goqa.load_goqa(None, revision=revision)
        assert data.report["data"] == f"{goqa.HUB_ID}@{commit}", revision


def test_a_header_only_csv_is_refused_not_read_as_zero_pairs(tmp_path, capsys):
    """Issue 35: a GlobalOpinionQA csv with its header and no rows exited 0 with 0 pairs."""
    from scpo import cli

    path = tmp_path / "global_opinions.csv"
    path.write_text("question,selections,options,source\n")
    with pytest.raises(ValueError, match="a header and no data rows"):
        goqa.load_goqa(path)
    with pytest.raises(SystemExit) as e:
        cli.main(["pairs", "--dataset", "goqa", "--data-dir", str(tmp_path)])
    assert e.value.code == 2 and "no data rows" in capsys.readouterr().err
