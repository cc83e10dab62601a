"""benchmarks/released_check.py: one defect of the released code at a time, run for real on the
tiny simulation with a tiny BERT built from a config, two steps per training, two seeds."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import load_script  # conftest sets HF_HUB_OFFLINE=1 and has tiny_bert

from scpo import evaluate

rc = load_script("benchmarks/released_check.py", "released_check")
SEEDS = (0, 1)
SMALL = ["--preset", "tiny", "--country", "Chile", "--n-train", "12", "--n-test", "10",
         "--n-global", "8", "--global-steps", "2", "--steps", "2", "--batch-size", "4",
         "--lr", "0.01", "--threads", "1"]  # lr: 2 steps move the models


@pytest.fixture(scope="module")
def captured(tiny_bert, tmp_path_factory):
    """The check, run once, with what it worked on captured: the loaded data, the pairs its
    global RM scored, each condition's test scores per seed (in seed order), and, for the rescored
    conditions, the second scoring dropout_flips compares (redone here from the same torch
    random state, so with the same dropout masks)."""
    import scpo.data
    import scpo.scoring

    out = tmp_path_factory.mktemp("released_check")
    got = {"data": [], "scored_pairs": [], "scores": {}, "second": {}, "same_stream": []}
    load_pairs, add_global_scores = scpo.data.load_pairs, scpo.scoring.add_global_scores
    scored, dropout_flips = rc.scored, rc.dropout_flips

    def capture_load(cfg):
        got["data"].append(load_pairs(cfg))
        return got["data"][-1]

    def capture_add(pairs, rm, *args, **kw):
        got["scored_pairs"].append(add_global_scores(pairs, rm, *args, **kw))
        return got["scored_pairs"][-1]

    def capture_scored(rm, test, seed):
        result = scored(rm, test, seed)
        got["scores"].setdefault(rm.mode.name, []).append((test, result[0], result[1]))
        return result

    def capture_flips(rm, test, first):
        before = torch.get_rng_state()
        result = dropout_flips(rm, test, first)
        after = torch.get_rng_state()
        torch.set_rng_state(before)
        second = rm.score_pairs(test)
        got["same_stream"].append(torch.equal(torch.get_rng_state(), after))
        torch.set_rng_state(after)
        got["second"].setdefault(rm.mode.name, []).append((first, second))
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scpo.data, "load_pairs", capture_load)
        mp.setattr(scpo.scoring, "add_global_scores", capture_add)
        mp.setattr(rc, "scored", capture_scored)
        mp.setattr(rc, "dropout_flips", capture_flips)
        rc.main([*SMALL, "--seeds", *map(str, SEEDS), "--backbone", str(tiny_bert),
                 "--out", str(out)])
    assert len(got["data"]) == 1 and len(got["scored_pairs"]) == 1
    return (pd.read_csv(out / "results.csv"), json.loads((out / "run.json").read_text()), got)


@pytest.fixture(scope="module")
def run(captured):
    """results.csv and run.json"""
    return captured[:2]


@pytest.fixture(scope="module")
def seen(captured):
    return captured[2]


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
    assert (overall["n_pairs"] == 10).all()
    # one global RM for all: the same kept pairs and the same pure-minority test set everywhere
    assert res["n_kept"].nunique() == 1 and res["n_kept"].iloc[0] == record["data"]["kept_train"]
    pure = res[res["test_set"] == "pure_minority"]
    assert (pure["n_pairs"] == record["data"]["pure_minority_test"]).all()
    assert record["modes"]["released"]["sep_text"] and not record["modes"]["fixed"]["sep_text"]
    assert record["timings_s"]["total_s"] > 0 and record["versions"]["scpo"]


def test_the_data_and_the_global_rms_numbers_by_recomputation(run, seen):
    """Sizes from the loaded data; kept pairs, weights and the pure-minority set by hand from
    the global RM's margins d = rg+ - rg- (keep sigma(d) < tau, W = exp(min(d / beta, 0)))."""
    res, record = run
    pairs = seen["data"][0].pairs
    chile = pairs[pairs["country"] == "Chile"]
    assert record["data"]["pairs"] == {
        "train": {"available": int((chile["split"] == "train").sum()), "used": 12},
        "test": {"available": int((chile["split"] == "test").sum()), "used": 10}}
    scored = seen["scored_pairs"][0]
    assert len(scored) == 22 and set(scored["country"]) == {"Chile"}
    train, test = scored[scored["split"] == "train"], scored[scored["split"] == "test"]
    d = (train["rg_chosen"] - train["rg_rejected"]).to_numpy()
    keep = 1 / (1 + np.exp(-d)) < record["tau"]
    assert record["data"]["kept_train"] == keep.sum() and (res["n_kept"] == keep.sum()).all()
    assert record["data"]["weight_sum"] == pytest.approx(
        np.exp(np.minimum(d / record["beta"], 0))[keep].sum(), rel=1e-12)
    assert (res["n_train"] == 12).all()
    pure = (test["rg_chosen"] < test["rg_rejected"]).to_numpy()
    assert record["data"]["pure_minority_test"] == pure.sum()
    # the global RM's own row: its test scores are the table's
    glo = {r["test_set"]: r for r in record["global_rm"]["test"]}
    right = (test["rg_chosen"] > test["rg_rejected"]).to_numpy()
    assert glo["overall"]["n_correct"] == right.sum()
    assert glo["overall"]["accuracy"] == pytest.approx(right.mean(), abs=1e-12)
    assert glo["pure_minority"]["n_pairs"] == pure.sum()
    assert glo["pure_minority"]["n_correct"] == 0


def test_accuracies_are_each_runs_own_test_scores(run, seen):
    """Every condition x seed row recomputed from the scores that condition's model gave:
    accuracy = share of r+ > r- (ties wrong), on all test pairs and on the pure-minority ones,
    and the user-bootstrap interval with the run's n_boot and seed."""
    res, record = run
    n_boot, seed = record["n_boot"], record["settings"]["seed"]
    rows = res.set_index(["condition", "seed", "test_set"])
    for cond in rc.CONDITIONS:
        calls = seen["scores"][cond]
        assert len(calls) == len(SEEDS), cond
        for s, (test, r_plus, r_minus) in zip(SEEDS, calls):
            correct = r_plus > r_minus
            pure = (test["rg_chosen"] < test["rg_rejected"]).to_numpy()
            users = test["user_id"].astype(str).to_numpy()
            for test_set, mask in [("overall", np.ones(len(test), bool)),
                                   ("pure_minority", pure)]:
                row = rows.loc[(cond, s, test_set)]
                assert row["n_pairs"] == mask.sum()
                if not mask.any():
                    assert np.isnan(row["accuracy"])
                    continue
                assert row["accuracy"] == pytest.approx(correct[mask].mean(), abs=1e-9), \
                    (cond, s, test_set)
                ci = evaluate.bootstrap_ci(correct[mask], users[mask], n_boot=n_boot, seed=seed)
                assert (row["ci_low"], row["ci_high"]) == pytest.approx(ci, abs=1e-9)
    # the trainings moved the models: the check can tell a condition from the global RM
    test = seen["scores"]["fixed"][0][0]
    glo = (test["rg_chosen"] > test["rg_rejected"]).to_numpy()
    assert any(((r_plus > r_minus) != glo).any() for _, r_plus, r_minus in seen["scores"]["fixed"])


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


def test_dropout_at_scoring_moves_the_scores_of_the_same_model(run, seen):
    res, record = run
    flips = record["dropout_flips"]
    assert seen["same_stream"] and all(seen["same_stream"])  # the redone scoring: same masks
    for cond in ("fixed", "dropout_at_scoring"):
        for seed, (first, second) in zip(SEEDS, seen["second"][cond], strict=True):
            (rc1, rr1), (rc2, rr2) = first, second
            delta = np.abs(np.concatenate([rc1 - rc2, rr1 - rr2]))
            got = flips[f"{cond}/{seed}"]
            assert got["flips"] == ((rc1 > rr1) != (rc2 > rr2)).sum(), (cond, seed)
            assert got["mean_abs_delta_score"] == pytest.approx(delta.mean(), rel=1e-9)
            assert got["max_abs_delta_score"] == pytest.approx(delta.max(), rel=1e-9)
            assert got["mean_abs_margin"] == pytest.approx(np.abs(rc1 - rr1).mean(), rel=1e-9)
            assert got["accuracy_second"] == pytest.approx((rc2 > rr2).mean(), abs=1e-12)
            assert got["n_pairs"] == len(rc1) == 10
    for seed in SEEDS:
        control, dropout = flips[f"fixed/{seed}"], flips[f"dropout_at_scoring/{seed}"]
        assert control["flips"] == 0 and control["max_abs_delta_score"] == 0.0
        assert dropout["mean_abs_delta_score"] > 0 and dropout["mean_abs_margin"] > 0
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
    (["--n-test", "9999"], "asked for 9999 test pairs but the country has {n_test}; use "
                           "--n-test between 1 and {n_test}"),
])
def test_bad_settings_are_clear_errors(flags, message, tiny_bert, tmp_path, run):
    n_test = run[1]["data"]["pairs"]["test"]["available"]  # checked against the data above
    with pytest.raises(ValueError, match=message.format(n_test=n_test)):
        rc.main([*SMALL, "--backbone", str(tiny_bert), "--out", str(tmp_path), *flags])
