"""benchmarks/released_check.py: one defect of the released code at a time, run for real on the
tiny simulation with a tiny BERT built from a config, two steps per training, two seeds."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import load_script  # conftest sets HF_HUB_OFFLINE=1 and has tiny_bert

rc = load_script("benchmarks/released_check.py", "released_check")
SEEDS = (0, 1)
SMALL = ["--preset", "tiny", "--country", "Chile", "--n-train", "12", "--n-test", "10",
         "--n-global", "8", "--global-steps", "2", "--steps", "2", "--batch-size", "4",
         "--threads", "1"]


@pytest.fixture(scope="module")
def run(tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("released_check")
    rc.main([*SMALL, "--seeds", *map(str, SEEDS), "--backbone", str(tiny_bert),
             "--out", str(out)])
    return pd.read_csv(out / "results.csv"), json.loads((out / "run.json").read_text())


def by_seed(record, what, condition):
    return [record[what][f"{condition}/{s}"] for s in SEEDS]


def test_every_condition_and_seed_has_both_test_sets(run):
    res, record = run
    assert list(res.columns[:4]) == ["condition", "seed", "effective_seed", "test_set"]
    assert {"accuracy", "ci_low", "ci_high", "n_pairs", "country_truth_accuracy",
            "global_truth_accuracy", "train_s", "pairs_per_s", "train_cpu_s", "pairs_per_cpu_s",
            "score_s", "n_kept"} <= set(res)
    assert set(res["condition"]) == set(rc.CONDITIONS)
    assert res.groupby(["condition", "seed"]).size().eq(2).all()
    overall = res[res["test_set"] == "overall"]
    assert (overall["n_pairs"] == 10).all() and overall["accuracy"].between(0, 1).all()
    # one global RM for all: the same kept pairs and the same pure-minority test set everywhere
    assert res["n_kept"].nunique() == 1 and res["n_kept"].iloc[0] == record["data"]["kept_train"]
    pure = res[res["test_set"] == "pure_minority"]
    assert (pure["n_pairs"] == record["data"]["pure_minority_test"]).all()
    assert record["data"]["pairs"]["test"] == {"available": 122, "used": 10}
    assert record["modes"]["released"]["sep_text"] and not record["modes"]["fixed"]["sep_text"]
    assert record["timings_s"]["total_s"] > 0 and record["versions"]["scpo"]


def test_seed_42_gives_the_same_run_whatever_the_seed(run):
    res, record = run
    assert len(set(by_seed(record, "fingerprints", "seed_42"))) == 1
    first, second = by_seed(record, "histories", "seed_42")
    assert first == second and len(first) >= 1
    acc = res[res["condition"] == "seed_42"].pivot(index="test_set", columns="seed",
                                                   values="accuracy")
    assert (acc[0] == acc[1]).all()
    assert set(res.loc[res["condition"] == "seed_42", "effective_seed"]) == {42}


def test_fixed_runs_differ_across_seeds_and_use_their_seed(run):
    res, record = run
    assert len(set(by_seed(record, "fingerprints", "fixed"))) == len(SEEDS)
    fixed = res[res["condition"] == "fixed"]
    assert (fixed["effective_seed"] == fixed["seed"]).all()


def test_released_is_seed_42_with_every_defect(run):
    res, record = run
    released = res[res["condition"] == "released"]
    assert set(released["effective_seed"]) == {42}
    assert len(set(by_seed(record, "fingerprints", "released"))) == 1
    # its training inputs are padded to max_length; the real tokens are those of every mode
    inputs = record["inputs"]
    assert inputs["released"]["tokens_per_training_input"] == 128
    assert inputs["pad_and_two_forward"]["tokens_per_training_input"] == 128  # pad_to_max alone
    assert inputs["fixed"]["tokens_per_training_input"] < 128
    assert len({v["real_tokens_per_training_input"] for v in inputs.values()}) == 1


def test_sep_text_changes_segment_ids_not_token_ids(run):
    """BERT's tokenizer reads the literal " [SEP] " as its separator token, so the released
    training text has the ids of the text pair; only the response's segment ids differ."""
    inputs = run[1]["inputs"]
    assert inputs["fixed"]["same_ids_as_scoring"] == 1.0
    assert inputs["fixed"]["same_segment_ids_as_scoring"] == 1.0
    assert inputs["sep_text"]["same_ids_as_scoring"] == 1.0
    assert inputs["sep_text"]["same_segment_ids_as_scoring"] == 0.0


def test_dropout_at_scoring_moves_the_scores_of_the_same_model(run):
    res, record = run
    flips = record["dropout_flips"]
    for seed in SEEDS:
        control, dropout = flips[f"fixed/{seed}"], flips[f"dropout_at_scoring/{seed}"]
        assert control["flips"] == 0 and control["max_abs_delta_score"] == 0.0
        assert dropout["mean_abs_delta_score"] > 0 and dropout["mean_abs_margin"] > 0
        assert 0 <= dropout["flips"] <= dropout["n_pairs"] == 10
    d = res[res["condition"] == "dropout_at_scoring"]
    overall = d[d["test_set"] == "overall"].set_index("seed")["accuracy"]
    assert [overall[s] for s in SEEDS] == [flips[f"dropout_at_scoring/{s}"]["accuracy_first"]
                                           for s in SEEDS]
    assert not d["trained"].any() and d["train_s"].isna().all()
    assert "dropout_at_scoring/0" not in record["histories"]


def test_summary_table_by_hand():
    """fixed: 60 and 70 % -> 65.0 ± 7.1 (sd of (60, 70) = sqrt(50)); other: 50, 50 -> Δ -15.0."""
    rows = [{"condition": c, "seed": s, "test_set": t, "accuracy": a, "pairs_per_s": p,
             "pairs_per_cpu_s": p / 2}
            for c, accs, p in [("fixed", (0.6, 0.7), 2.0), ("other", (0.5, 0.5), np.nan)]
            for s, a in zip(SEEDS, accs) for t in ("overall", "pure_minority")]
    table = rc.summary_table(pd.DataFrame(rows))
    assert table.loc["fixed", "overall"] == " 65.0 ± 7.1"
    assert table.loc["other", "Δ overall"] == "-15.0"
    assert table.loc["fixed", "Δ pure_minority"] == " +0.0"
    assert table.loc["fixed", "pairs/s"] == "2.00" and table.loc["other", "pairs/s"] == "-"
    assert table.loc["fixed", "pairs/cpu-s"] == "1.00"


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "0", "0"], "distinct seeds"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--conditions", "fixed", "nope"], r"unknown \['nope'\]"),
    (["--conditions", "released"], "must include 'fixed'"),
    (["--n-test", "9999"], "asked for 9999 test pairs but the country has 122"),
])
def test_bad_settings_are_clear_errors(flags, message, tiny_bert, tmp_path):
    with pytest.raises(ValueError, match=message):
        rc.main([*SMALL, "--backbone", str(tiny_bert), "--out", str(tmp_path), *flags])
