"""The two data-efficiency measures, by hand: the paper's (inverse kept fraction) and ours."""

import pandas as pd
import pytest

from scpo import evaluate as ev
from scpo.companion import report


def test_inverse_kept_fraction_by_hand():
    assert ev.inverse_kept_fraction(50, 100) == 2.0  # keep half: the paper's "200 %"
    assert ev.inverse_kept_fraction(36, 100) == pytest.approx(2.7777777777777777)
    with pytest.raises(ValueError, match="needs training pairs"):
        ev.inverse_kept_fraction(0, 100)


def test_efficiency_table_by_hand():
    # one country; accuracies averaged over two seeds; n_kept per variant
    rows = [("global", 0, 0.50, 0), ("global", 1, 0.50, 0),
            ("baseline", 0, 0.60, 200), ("baseline", 1, 0.62, 200),
            ("scpo_fw", 0, 0.60, 80), ("scpo_fw", 1, 0.60, 80)]
    res = pd.DataFrame(rows, columns=["variant", "seed", "accuracy", "n_kept"]).assign(
        country="Chile", test_set="overall")
    t = report.efficiency_table(res).set_index("variant")
    fw = t.loc["scpo_fw"]
    assert fw["n_pairs"] == 80
    assert fw["gain"] == pytest.approx(10.0)  # 60 % - 50 %
    assert fw["vs_baseline"] == pytest.approx(-1.0)  # 60 % - mean(60, 62) %
    assert fw["inverse_kept"] == pytest.approx(2.5)  # 200 / 80
    # ours: (0.10 / 80) / (0.11 / 200) = 2.2727...
    assert fw["efficiency"] == pytest.approx((0.10 / 80) / (0.11 / 200))
    assert t.loc["baseline", "inverse_kept"] == 1.0 and t.loc["baseline", "vs_baseline"] == 0


def test_controls_pair_each_variant_with_its_random_control_by_hand():
    # two countries, two seeds; filtered vs random_subset only (no SCPO (F+W) rows)
    acc = {("filtered", "A", 0): 0.60, ("filtered", "A", 1): 0.62,
           ("filtered", "B", 0): 0.50, ("filtered", "B", 1): 0.54,
           ("random_subset", "A", 0): 0.58, ("random_subset", "A", 1): 0.58,
           ("random_subset", "B", 0): 0.52, ("random_subset", "B", 1): 0.56}
    res = pd.DataFrame([{"variant": v, "country": c, "seed": s, "accuracy": a,
                         "test_set": ts} for (v, c, s), a in acc.items()
                        for ts in ("overall", "pure_minority")])
    t = report.controls(res)
    assert list(t["control"]) == ["random_subset", "random_subset"]
    row = t[t["test_set"] == "overall"].iloc[0]
    # seed 0: macro 55.0 vs 55.0 -> 0; seed 1: 58.0 vs 57.0 -> +1
    assert row["variant (%)"] == pytest.approx(56.5) and row["control (%)"] == pytest.approx(56.0)
    assert row["difference"] == pytest.approx(0.5)
    assert row["sd over seeds"] == pytest.approx(0.7071067811865476)
    # country means: A 61 vs 58 (variant), B 52 vs 54 (control)
    assert row["countries favouring variant"] == 1 and row["countries"] == 2


def test_scpo_fw_is_set_against_both_weighted_controls_with_their_weight_by_hand():
    # one seed, two countries: (accuracy, weight sum) per variant and country
    runs = {("scpo_fw", "A"): (0.60, 10.0), ("scpo_fw", "B"): (0.50, 20.0),
            ("random_fw_weights", "A"): (0.55, 10.0), ("random_fw_weights", "B"): (0.52, 20.0),
            ("random_own_weights", "A"): (0.57, 14.0), ("random_own_weights", "B"): (0.53, 25.0)}
    res = pd.DataFrame([{"variant": v, "country": c, "seed": 0, "accuracy": a,
                         "weight_sum": wsum, "test_set": ts} for (v, c), (a, wsum) in runs.items()
                        for ts in ("overall", "pure_minority")])
    t = report.controls(res)
    t = t[t["test_set"] == "overall"].set_index("control")
    assert list(t.index) == ["random_fw_weights", "random_own_weights"]
    assert (t["variant"] == "scpo_fw").all()
    # matched in weight: (10 + 20) / (10 + 20); its own weights: (14 + 25) / 30 = 1.3
    assert t.loc["random_fw_weights", "weight, control / variant"] == 1.0
    assert t.loc["random_own_weights", "weight, control / variant"] == pytest.approx(1.3)
    # macro: scpo_fw 55.0, random_fw_weights 53.5, random_own_weights 55.0
    assert t.loc["random_fw_weights", "difference"] == pytest.approx(1.5)
    assert t.loc["random_own_weights", "difference"] == pytest.approx(0.0)
    assert t.loc["random_fw_weights", "countries favouring variant"] == 1


def test_the_controls_as_a_page_shows_them_one_row_per_comparison_in_short_columns():
    """Issue 36, item 8: the controls table (variant, control, test set, eight long column
    names) ran past the text column at 1280 px. Each row is now "A − B" and a test set, with
    short column names; "sd" is left out where one seed gives none."""
    runs = {("scpo_fw", "A"): (0.60, 10.0), ("scpo_fw", "B"): (0.50, 20.0),
            ("random_fw_weights", "A"): (0.55, 10.0), ("random_fw_weights", "B"): (0.52, 20.0)}
    res = pd.DataFrame([{"variant": v, "country": c, "seed": 0, "accuracy": a,
                         "weight_sum": wsum, "test_set": ts} for (v, c), (a, wsum) in runs.items()
                        for ts in ("overall", "pure_minority")])
    t = report.readable_controls(report.controls(res))
    assert t.index.names == ["A − B", "test set"]
    pair = "SCPO (F+W) − Random subset, SCPO (F+W)'s weights (control)"
    assert list(t.index) == [(pair, "overall"), (pair, "pure minority")]
    assert list(t.columns) == ["A (%)", "B (%)", "A − B", "countries A > B", "weight B / A"]
    row = t.iloc[0]
    assert (row["A (%)"], row["B (%)"], row["A − B"]) == pytest.approx((55.0, 53.5, 1.5))
    assert row["countries A > B"] == 1 and row["weight B / A"] == 1.0
    assert report.readable_controls(report.controls(res.iloc[:0])).empty
