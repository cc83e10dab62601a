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


def test_main_table_cells(results):
    t = report.main_table(results)
    assert t.loc["scpo_fw", "overall (%)"] == "66.00 ± 1.41"
    assert t.loc["baseline", "overall (%)"] == "58.00 ± 4.24"  # macro 55 and 61 over seeds
    # kept: pooled (50 + 30) / 400 = 0.2, macro (0.5 + 0.1) / 2 = 0.3
    assert t.loc["scpo_fw", ["kept (pooled)", "kept (macro)"]].tolist() == [0.2, 0.3]


def test_paper_numbers_stay_labelled_as_the_papers(results):
    t = report.paper_comparison(results)
    assert t.loc["scpo_fw", "overall, ours"] == 66.0
    assert t.loc["scpo_fw", "overall, reported in the paper"] == \
        report.PAPER_REPORTED.loc["scpo_fw", "overall"]
    assert [c for c in t.columns if "paper" in c] == ["overall, reported in the paper",
                                                     "pure minority, reported in the paper"]
