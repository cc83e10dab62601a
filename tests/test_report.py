"""scpo.companion.report: the CLI's and the book's tables, against values worked out by hand."""

import itertools

import numpy as np
import pandas as pd
import pytest

from scpo.companion import report

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
    from scpo.companion.report import Difference, claim_verdict

    runs = pd.Series([3.0, 3.5, -0.5, 2.6, 2.0, 2.0])

    def v(low, high, direction, r=runs):
        out = claim_verdict(Difference(float(r.mean()), low, high, r), direction)
        return out.verdict, out.agreeing, out.runs

    # the interval above 0, 5 of 6 runs agree
    assert v(0.8, 3.4, 1) == ("holds", 5, 6)
    # the same runs, the statement "A is below B": the interval lies on the other side
    assert v(0.8, 3.4, -1) == ("reversed", 1, 6)
    # the interval covers 0, though 5 of 6 runs are positive
    assert v(-0.2, 3.4, 1) == ("within noise", 5, 6)
    # the interval above 0, but 2 of 6 runs agree
    assert v(0.6, 1.5, 1, pd.Series([5.0, -1.0, -1.0, 5.2, -1.0, -1.0])) == ("mixed", 2, 6)
    # "keeps" (direction 0): the threshold is -1 point
    keep = pd.Series([-0.2, -0.1, -0.3, -0.25, -0.25, -0.25])
    assert v(-0.54, 0.09, 0, keep) == ("holds", 6, 6)
    assert v(-1.09, 0.19, 0, keep) == ("within noise", 6, 6)
    assert v(-2.5, -1.5, 0, keep - 1.8) == ("reversed", 0, 6)
    out = claim_verdict(None, 1)
    assert (out.verdict, out.runs) == ("not measured", 0) and np.isnan(out.mean)


def test_paired_difference_by_hand():
    """A - B pair by pair, the same users for both: one country, one seed, users u1 (two
    pairs: A right on both, B on one) and u2 (one pair: both wrong). Per pair A - B = 100, 0,
    0 points: the mean 33.3; the bootstrap draws u1u1 -> 50, u1u2 / u2u1 -> 33.3, u2u2 -> 0."""
    from scpo.companion.report import paired_difference

    rows = []
    for variant, correct, truth in (("A", [1, 1, 0], [1.0, np.nan, 0.0]),
                                    ("B", [0, 1, 0], [0.0, np.nan, 0.0])):
        rows += [{"country": "Chile", "seed": 0, "variant": variant, "pair": i,
                  "user_id": u, "correct": bool(c), "truth": t}
                 for i, (u, c, t) in enumerate(zip(["u1", "u1", "u2"], correct, truth))]
    table = pd.DataFrame(rows)
    d = paired_difference(table, "A", "B", n_boot=20000)
    assert d.mean == pytest.approx(100 / 3)
    assert (d.low, d.high) == (0.0, 50.0)
    assert d.runs.to_dict() == {("Chile", 0): pytest.approx(100 / 3)}
    narrow = paired_difference(table, "A", "B", n_boot=20000, level=0.2)
    assert (narrow.low, narrow.high) == pytest.approx((100 / 3, 100 / 3))
    # a unit without a value (a truth tie, NaN) is left out: pairs 0 and 2 remain, 100 and 0
    assert paired_difference(table, "A", "B", "truth").mean == pytest.approx(50.0)
    assert paired_difference(table, "A", "C") is None  # C not run: not measured


def test_mean_ci_halfwidth_leaves_out_the_global_rms_pure_minority_rows():
    from scpo.companion.report import mean_ci_halfwidth

    rows = pd.DataFrame({
        "variant": ["global", "global", "scpo_fw", "scpo_fw", "baseline"],
        "test_set": ["overall", "pure_minority", "overall", "pure_minority", "pure_minority"],
        "ci_low": [0.60, 0.0, 0.62, 0.20, 0.10], "ci_high": [0.70, 0.0, 0.68, 0.36, 0.20]})
    h = mean_ci_halfwidth(rows)
    # overall: (5 + 3) / 2 = 4 points; pure minority: (8 + 5) / 2 = 6.5, not (0 + 8 + 5) / 3
    assert h["overall"] == pytest.approx(4.0)
    assert h["pure_minority"] == pytest.approx(6.5)


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


def test_the_papers_column_shows_a_dash_with_why_and_labels_the_definitional_zero():
    """Issue 36, items 6 and 8: the PRISM page's "reported in the paper" columns showed bare
    NaN, and the global RM's pure-minority 0.0 read as a result of the paper's. Each empty
    cell says why; the 0 says it is true by construction."""
    rows = []
    for v, overall, pure in (("global", 0.60, 0.0), ("baseline", 0.70, 0.30),
                             ("scpo_fw_tuned", 0.72, 0.35), ("random_subset", 0.65, np.nan)):
        for ts, acc in (("overall", overall), ("pure_minority", pure)):
            rows.append({"country": "Chile", "variant": v, "seed": 0, "test_set": ts,
                         "accuracy": acc})
    t = report.paper_cells(pd.DataFrame(rows))
    assert {"global", "baseline", "scpo_fw_tuned", "random_subset", "filtered"} <= set(t.index)
    assert t.loc["filtered", "overall, ours"] == "— (not run here)"  # the paper's, not ours
    paper_pure = t["pure minority, reported in the paper"]
    assert paper_pure["global"] == "0 (by construction, not a result)"
    assert paper_pure["scpo_fw_tuned"] == "— (not reported)"  # the paper's table has no number
    assert paper_pure["random_subset"] == "— (not in the paper)"
    assert t.loc["baseline", "overall, reported in the paper"] == "62.12"
    assert t.loc["baseline", "overall, ours"] == "70.0"
    assert t.loc["random_subset", "pure minority, ours"] == "— (no such pairs)"
    assert not t.isin(["nan", "NaN"]).any().any()
