"""benchmarks/tier_check.py: the hf tier against the embedding tier on the same pairs, run for
real on the tiny simulation with a tiny BERT built from a config and two steps per training."""

import json

import pandas as pd
import pytest
from conftest import load_script  # conftest sets HF_HUB_OFFLINE=1 and has tiny_bert

from scpo.variants import VARIANTS

tc = load_script("benchmarks/tier_check.py", "tier_check")


def pairs_table() -> pd.DataFrame:
    rows = [{"country": c, "split": s, "prompt": f"{c} {s} {i}", "chosen": "a",
             "rejected": "b"} for c in ("Chile", "Mexico") for s, n in
            [("train", 10), ("val", 4), ("test", 6)] for i in range(n)]
    return pd.DataFrame(rows)


def test_subsample_is_seeded_per_split_and_refuses_too_many():
    pairs = pairs_table()
    a, report = tc.subsample(pairs, "Chile", {"train": 5, "val": 0, "test": 3}, seed=0)
    assert a.groupby("split").size().to_dict() == {"test": 3, "train": 5, "val": 4}
    assert set(a["country"]) == {"Chile"}
    assert report == {"train": {"available": 10, "used": 5}, "val": {"available": 4, "used": 4},
                      "test": {"available": 6, "used": 3}}
    b, _ = tc.subsample(pairs, "Chile", {"train": 5, "val": 0, "test": 3}, seed=0)
    pd.testing.assert_frame_equal(a, b)
    # a larger training draw leaves the test draw alone (one random stream per split)
    c, _ = tc.subsample(pairs, "Chile", {"train": 8, "val": 0, "test": 3}, seed=0)
    assert c[c["split"] == "test"]["prompt"].tolist() == a[a["split"] == "test"]["prompt"].tolist()
    with pytest.raises(ValueError, match="asked for 7 test pairs but the country has 6"):
        tc.subsample(pairs, "Chile", {"train": 5, "val": 0, "test": 7}, seed=0)


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


# a 2-step tiny BERT can give every variant the same accuracy: rho is then undefined (NaN)
@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_both_tiers_every_variant_on_tiny(tiny_bert, tmp_path):
    out = tmp_path / "tier_check"
    tc.main(["--preset", "tiny", "--country", "Chile", "--n-train", "12", "--n-val", "6",
             "--n-test", "10", "--n-global", "8", "--global-steps", "2", "--steps", "2",
             "--batch-size", "4", "--tau-grid", "0.6", "0.9", "--threads", "1",
             "--backbone", str(tiny_bert), "--out", str(out)])
    res = pd.read_csv(out / "results.csv")
    record = json.loads((out / "run.json").read_text())
    assert list(res.columns[:4]) == ["tier", "country", "variant", "seed"]
    assert {"test_set", "accuracy", "ci_low", "ci_high", "n_pairs", "n_kept", "n_train",
            "kept_ratio", "tau", "lr"} <= set(res.columns)
    for tier in ("embedding", "hf"):
        d = res[res["tier"] == tier]
        assert set(d["variant"]) == set(VARIANTS)
        assert d.groupby("variant").size().eq(2).all()  # overall + pure minority
        assert set(d["test_set"]) == {"overall", "pure_minority"}
    overall = res[res["test_set"] == "overall"]
    assert (overall["n_pairs"] == 10).all() and (res["n_train"] == 12).all()
    assert overall["accuracy"].between(0, 1).all()
    # each tier's own global RM: its own margins, so (in general) its own filter and pure set
    assert record["data"]["pairs"]["train"] == {"available": 572, "used": 12}
    assert record["settings"]["steps"] == 2 and record["backbone"] == str(tiny_bert)
    assert record["config"]["hf"]["train"]["max_steps"] == 2
    assert record["config"]["hf"]["run"]["tune_grid"]["tau"] == [0.6, 0.9]
    assert record["global_rm"]["embedding"] != record["global_rm"]["hf"]
    assert len(record["global_rm"]["hf_history"]) >= 1
    assert set(record["histories"]) == {"embedding", "hf"}
    assert {r["test_set"] for r in record["rank_agreement"]} == {"overall", "pure_minority"}
    assert record["timings_s"]["total_s"] > 0 and record["versions"]["scpo"]
