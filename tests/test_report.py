"""scpo.report: the CLI's and the book's tables, against values worked out by hand."""

import itertools

import numpy as np
import pandas as pd
import pytest

from scpo import report

# accuracy by (variant, country, seed), overall; pure_minority is 0.1 lower everywhere
ACC = {("baseline", "Chile", 0): 0.60, ("baseline", "Chile", 1): 0.64,
       ("baseline", "Mexico", 0): 0.50, ("baseline", "Mexico", 1): 0.58,
       ("scpo_fw", "Chile", 0): 0.70, ("scpo_fw", "Chile", 1): 0.70,
       ("scpo_fw", "Mexico", 0): 0.60, ("scpo_fw", "Mexico", 1): 0.64}
KEPT = {("baseline", "Chile"): (100, 100), ("baseline", "Mexico"): (300, 300),
        ("scpo_fw", "Chile"): (50, 100), ("scpo_fw", "Mexico"): (30, 300)}


@pytest.fixture
def results() -> pd.DataFrame:
    rows = []
    for (v, c, s), ts in itertools.product(ACC, ("overall", "pure_minority")):
        a = ACC[v, c, s] - (0.1 if ts == "pure_minority" else 0.0)
        half = 0.04 if c == "Chile" else 0.03  # CI half-widths
        kept, total = KEPT[v, c]
        rows.append({"country": c, "variant": v, "seed": s, "test_set": ts, "accuracy": a,
                     "ci_low": a - half, "ci_high": a + half, "n_kept": kept, "n_train": total})
    return pd.DataFrame(rows)


def test_per_country_and_macro_by_hand(results):
    t = report.per_country(results)
    # baseline: Chile (60 + 64) / 2 = 62, Mexico (50 + 58) / 2 = 54, macro 58
    assert t.loc["baseline"].to_dict() == {"Chile": 62.0, "Mexico": 54.0, "macro avg": 58.0}
    assert t.loc["scpo_fw"].to_dict() == {"Chile": 70.0, "Mexico": 62.0, "macro avg": 66.0}
    assert list(t.index) == ["baseline", "scpo_fw"]  # the paper's order, not the data's


def test_macro_summary_mean_and_sd_over_seeds(results):
    s = report.macro_summary(results)
    # scpo_fw macro per seed: seed 0 (70 + 60) / 2 = 65, seed 1 (70 + 64) / 2 = 67
    assert s.loc["scpo_fw", "mean"] == pytest.approx(66.0)
    assert s.loc["scpo_fw", "sd"] == pytest.approx(np.sqrt(2.0))  # sd of {65, 67}, ddof 1
    assert report.macro_summary(results, "pure_minority").loc["baseline", "mean"] == \
        pytest.approx(48.0)


def test_ci_halfwidth_of_the_macro_average(results):
    # sqrt(4^2 + 3^2) / 2 countries = 2.5 points
    assert report.ci_halfwidth(results).to_dict() == pytest.approx(
        {"baseline": 2.5, "scpo_fw": 2.5})


def test_readable_tables_speak_in_words_in_the_variant_order(results):
    t = report.readable(report.main_table(results))
    assert list(t.index) == ["Baseline (full fine-tune)", "SCPO (F+W)"]
    assert t.index.name == "Variant"
    assert t.loc["SCPO (F+W)", ("Overall", "accuracy (%)")] == "66.0 ± 1.4"
    # fractions kept -> percent, one decimal
    assert t.loc["SCPO (F+W)", ("Training pairs kept (%)", "all countries")] == 20.0
    assert t.loc["SCPO (F+W)", ("Training pairs kept (%)", "mean of countries")] == 30.0
    assert not any("_" in str(c) for level in t.columns.levels for c in level)
    flat = report.readable(pd.DataFrame({"overall": [0.1234, 0.5]}, index=["scpo_fw", "global"]))
    assert list(flat.index) == ["Global RM", "SCPO (F+W)"] and list(flat.columns) == ["Overall"]
    assert flat["Overall"].tolist() == [0.5, 0.1]
    jsd = report.readable(pd.DataFrame({"1 - JSD": [0.81234]}, index=["global"]))
    assert jsd.iloc[0, 0] == 0.812


def test_main_table_cells(results):
    t = report.main_table(results)
    assert t.loc["scpo_fw", "overall (%)"] == "66.0 ± 1.4"
    assert t.loc["baseline", "overall (%)"] == "58.0 ± 4.2"  # macro 55 and 61 over seeds
    # kept: pooled (50 + 30) / 400 = 0.2, macro (0.5 + 0.1) / 2 = 0.3
    assert t.loc["scpo_fw", ["kept (pooled)", "kept (macro)"]].tolist() == [0.2, 0.3]


def test_paper_numbers_stay_labelled_as_the_papers(results):
    t = report.paper_comparison(results)
    assert t.loc["scpo_fw", "overall, ours"] == 66.0
    assert t.loc["scpo_fw", "overall, reported in the paper"] == \
        report.PAPER_REPORTED.loc["scpo_fw", "overall"]
    assert [c for c in t.columns if "paper" in c] == ["overall, reported in the paper",
                                                     "pure minority, reported in the paper"]


def test_claim_verdicts_by_hand():
    from scpo.report import claim_verdict

    assert claim_verdict([2.0, 1.0, -0.5], 1) == ("holds", 2)  # mean +0.83, 2 of 3 agree
    assert claim_verdict([2.0, -1.0, -0.5, -0.1], 1) == ("mixed", 1)  # mean +0.1, 1 of 4
    assert claim_verdict([-2.0, -1.0, 0.5], 1) == ("reversed", 1)  # mean -0.83, 2 of 3 against
    assert claim_verdict([-2.0, -1.0, 0.5], -1) == ("holds", 2)
    # "keeps": loses less than one point
    assert claim_verdict([-0.5, 0.3, -1.5], 0) == ("holds", 2)  # mean -0.57
    assert claim_verdict([-2.0, -1.5, 0.2], 0) == ("reversed", 1)  # mean -1.1, 2 of 3 lose >= 1
    assert claim_verdict([-2.0, 0.0, 0.0, -3.0], 0) == ("mixed", 2)  # mean -1.25, 2 of 4 lose


def test_ladder_claims_by_hand():
    from scpo.report import ladder_claims

    rows = []
    # one rung, 2 countries x 2 seeds; filtered - baseline on pure-minority pairs, in points:
    # (A, 0) +10, (A, 1) +20, (B, 0) -10, (B, 1) +40 -> mean +15; seed means 0, +30 -> sd 21.2
    diff = {("A", 0): 0.1, ("A", 1): 0.2, ("B", 0): -0.1, ("B", 1): 0.4}
    for (country, seed), d in diff.items():
        for variant, acc in (("baseline", 0.3), ("filtered", 0.3 + d), ("scpo_fw", 0.3),
                             ("scpo_w", 0.2), ("random_subset", 0.3)):
            for test_set in ("overall", "pure_minority"):
                rows.append({"rung": "top", "country": country, "seed": seed,
                             "variant": variant, "test_set": test_set, "accuracy": acc,
                             "country_truth_accuracy": acc})
    out = ladder_claims(pd.DataFrame(rows)).set_index("claim")
    r = out.loc["filter_moves"]
    assert r["difference"] == pytest.approx(15.0)
    assert r["seed_sd"] == pytest.approx(np.std([0.0, 30.0], ddof=1))
    assert (r["runs_agreeing"], r["runs"], r["verdict"]) == (3, 4, "holds")
    assert out.loc["w_least", "verdict"] == "holds"  # 20 % < 30 % in every run
    assert out.loc["w_least", "difference"] == pytest.approx(-10.0)
    # SCPO (F+W) = baseline everywhere: loses nothing
    assert out.loc["fw_keeps", "difference"] == 0 and out.loc["fw_keeps", "verdict"] == "holds"


def test_country_sizes_from_the_result_rows():
    rows = [{"country": c, "variant": v, "seed": s, "test_set": ts, "n_train_users": tu,
             "n_train": tp, "n_users": u, "n_pairs": n}
            for c, tu, tp, u, n_all, n_pm in [("Chile", 40, 400, 7, 70, 12),
                                              ("Mexico", 30, 250, 5, 50, 9)]
            for v in ("global", "scpo_fw") for s in (0, 1)
            for ts, n in (("overall", n_all), ("pure_minority", n_pm))
            for u in [u if ts == "overall" else u - 1]]
    sizes = report.country_sizes(pd.DataFrame(rows))
    assert sizes.loc["Chile"].tolist() == [40, 400, 7, 70, 12]
    assert sizes.loc["Mexico"].tolist() == [30, 250, 5, 50, 9]
