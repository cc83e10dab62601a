"""Each figure is built from tiny inputs and checked for what it should show."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from scpo.companion import plots  # noqa: E402


def test_p_glo_hist_draws_the_tau_line_and_the_kept_fraction():
    fig = plots.p_glo_hist([0.1, 0.4, 0.6, 0.9], tau=0.5, bins=10)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.patches) == 10
    assert list(ax.lines[0].get_xdata()) == [0.5, 0.5]
    assert "kept 50.0% (2 of 4)" in ax.get_title()


def test_kept_vs_tau_by_hand():
    fig = plots.kept_vs_tau([0.1, 0.4, 0.6, 0.9], taus=[1.0, 0.5, 0.7])
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(line.get_xdata(), [0.5, 0.7, 1.0])
    np.testing.assert_allclose(line.get_ydata(), [0.5, 0.75, 1.0])


def test_weight_hist_title_by_hand():
    fig = plots.weight_hist([1.0, 1.0, 0.5, 0.25], beta=1.1, bins=8)
    ax = fig.axes[0]
    assert len(ax.patches) == 8
    # 2 of 4 at W = 1; mean (1 + 1 + 0.5 + 0.25) / 4 = 0.6875
    assert ax.get_title() == "beta = 1.1: 50.0% at W = 1, mean W = 0.688"


def test_training_curves_one_line_per_variant_and_a_val_panel_when_logged():
    hist = {
        "baseline": [{"step": s, "loss": 1 / s, "lr": 1e-3} for s in (1, 2, 3)],
        "scpo_fw": [{"step": 1, "loss": 0.9, "lr": 1e-3},
                    {"step": 2, "loss": 0.5, "lr": 1e-3, "val_accuracy": 0.6}],
    }
    fig = plots.training_curves(hist)
    assert len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 1
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), [0.6])
    assert len(plots.training_curves({"baseline": hist["baseline"]}).axes) == 1
    with pytest.raises(KeyError, match="'x'.*'loss'"):
        plots.training_curves({"x": [{"step": 1}]})


def _results() -> pd.DataFrame:
    rows = []
    for v, acc in [("global", 0.58), ("baseline", 0.62), ("scpo_fw", 0.63)]:
        for s, shift in [("overall", 0.0), ("pure_minority", -0.3)]:
            a = acc + shift
            rows.append(dict(variant=v, test_set=s, accuracy=a, ci_low=a - 0.05, ci_high=a + 0.02))
    return pd.DataFrame(rows)


def test_variant_bars_one_bar_per_variant_per_test_set():
    fig = plots.variant_bars(_results())
    assert len(fig.axes) == 2
    for ax, title in zip(fig.axes, ["overall", "pure minority"], strict=True):
        assert ax.get_title() == title
        assert len(ax.patches) == 3
        assert [t.get_text() for t in ax.get_xticklabels()] == [
            "Global RM", "Baseline (full fine-tune)", "SCPO (F+W)"]  # labels in words
        # each variant in its colour, the one scpo.variants gives it
        assert [to_hex(b.get_facecolor()) for b in ax.patches] == ["#7f7f7f", "#0072b2",
                                                                   "#d55e00"]
    np.testing.assert_allclose([b.get_height() for b in fig.axes[0].patches], [58, 62, 63])
    # asymmetric CI error bars, in percent: the first bar spans [53, 60]
    bars = next(c for c in fig.axes[0].containers if isinstance(c, BarContainer))
    seg = bars.errorbar.lines[2][0].get_segments()[0]
    np.testing.assert_allclose(seg[:, 1], [53, 60])
    with pytest.raises(ValueError, match="aggregate"):
        plots.variant_bars(pd.concat([_results(), _results()]))


def test_tradeoff_points_follow_the_sweep_order():
    df = pd.DataFrame({"tau": [0.9, 0.9, 0.5, 0.5, 0.7, 0.7],
                       "test_set": ["overall", "pure_minority"] * 3,
                       "accuracy": [0.62, 0.30, 0.50, 0.60, 0.58, 0.45]})
    ax = plots.tradeoff(df).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0.60, 0.45, 0.30])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [0.50, 0.58, 0.62])
    assert [t.get_text() for t in ax.texts] == ["tau=0.5", "tau=0.7", "tau=0.9"]


def test_cross_country_heatmap_annotates_every_cell():
    m = pd.DataFrame([[0.61, 0.55, 0.50], [0.52, 0.64, 0.49]], index=["Chile", "Canada"],
                     columns=["Chile", "Canada", "Israel"])
    fig = plots.cross_country_heatmap(m)
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # the heatmap and its colorbar
    assert [t.get_text() for t in ax.texts] == ["0.61", "0.55", "0.50", "0.52", "0.64", "0.49"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Chile", "Canada", "Israel"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Chile", "Canada"]


def test_fronts_one_line_per_knob_in_percent_with_reference_points():
    tau = pd.DataFrame({"value": [0.9, 0.5], "pure_minority": [0.1, 0.3], "overall": [0.7, 0.6]})
    alpha = pd.DataFrame({"value": [0.0, 1.0], "pure_minority": [0.0, 0.2],
                          "overall": [0.7, 0.69]})
    fig = plots.fronts({"tau": tau, "alpha": alpha}, points={"global": (0.0, 0.7)})
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["tau", "alpha"]
    np.testing.assert_allclose(lines[0].get_xdata(), [30, 10])  # sorted by value, in percent
    np.testing.assert_allclose(lines[0].get_ydata(), [60, 70])
    assert "Global RM" in [t.get_text() for t in ax.texts]
    with pytest.raises(KeyError, match="lacks column 'overall'"):
        plots.fronts({"x": tau.drop(columns="overall")})


def test_pick_fronts_one_line_per_country_the_mean_and_the_knobs():
    dial = pd.DataFrame({"country": ["Chile", "Chile", "Mexico", "Mexico"],
                         "alpha": [1.0, 0.0, 0.0, 1.0], "x": [2.0, 1.0, 0.5, 0.7],
                         "y": [0.5, 1.0, 0.9, 0.2]})
    macro = pd.DataFrame({"alpha": [1.0, 0.0], "x": [1.35, 0.75], "y": [0.35, 0.95]})
    tau = pd.DataFrame({"value": [0.9, 0.5], "x": [0.8, 0.6], "y": [0.9, 0.4]})
    fig = plots.pick_fronts(dial, macro, {"τ (retrained)": tau}, {"global": (0.75, 0.95)})
    ax = fig.axes[0]
    lines = ax.get_lines()
    labels = [ln.get_label() for ln in lines]
    assert (labels[0], labels[2], labels[3]) == ("each country (α)", "α, mean of countries",
                                                 "τ (retrained)")
    assert len(lines) == 4 and labels[1].startswith("_")  # one legend entry for the countries
    np.testing.assert_allclose(lines[0].get_xdata(), [1.0, 2.0])  # Chile, by alpha
    np.testing.assert_allclose(lines[1].get_ydata(), [0.9, 0.2])  # Mexico
    np.testing.assert_allclose(lines[2].get_xdata(), [0.75, 1.35])  # the mean, by alpha
    np.testing.assert_allclose(lines[3].get_ydata(), [0.4, 0.9])  # tau, by value
    texts = [t.get_text() for t in ax.texts]
    assert {"Chile", "Mexico", "Global RM", "0.5", "0.9", "1"} <= set(texts)


def test_scorecard_one_row_per_claim_each_source_a_point_and_bar_in_its_verdicts_colour():
    long = pd.DataFrame([
        {"key": "k1", "short": "A > B, overall", "definitional": False, "sense": 1,
         "paper": 3.0, "source": "simulator", "value": 2.0, "low": 1.0, "high": 3.0,
         "verdict": "holds"},
        {"key": "k1", "short": "A > B, overall", "definitional": False, "sense": 1,
         "paper": 3.0, "source": "goqa", "value": -1.0, "low": -2.0, "high": 0.5,
         "verdict": "within noise"},
        {"key": "k2", "short": "A ≥ C − 1, overall", "definitional": False, "sense": 0,
         "paper": np.nan, "source": "simulator", "value": np.nan, "low": np.nan,
         "high": np.nan, "verdict": "not measured"},
        {"key": "k2", "short": "A ≥ C − 1, overall", "definitional": False, "sense": 0,
         "paper": np.nan, "source": "goqa", "value": np.nan, "low": np.nan, "high": np.nan,
         "verdict": "not in this build"}])
    fig = plots.scorecard(long, {"goqa": "GlobalOpinionQA", "simulator": "the simulator"})
    ax = fig.axes[0]
    ticks = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks())}
    assert ticks == {"A > B, overall": 1, "A ≥ C − 1, overall": 0}  # the first claim on top
    lines = {(tuple(line.get_xdata()), line.get_color()) for line in ax.get_lines()}
    assert ((1.0, 3.0), plots.VERDICT_COLOURS["holds"]) in lines  # the interval, its colour
    assert ((-2.0, 0.5), plots.VERDICT_COLOURS["within noise"]) in lines
    assert ((3.0, 3.0), "black") in lines  # the paper's difference
    assert ((-1.0, -1.0), "0.3") in lines  # the "keeps" row's threshold
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"reported in the paper", "GlobalOpinionQA", "the simulator", "holds"} <= set(labels)


def test_seed_dots_a_dot_per_seed_the_mean_and_the_reference_band():
    acc = pd.DataFrame({"condition": ["fixed", "fixed", "seed_42", "seed_42"],
                        "seed": [0, 1, 0, 1], "overall": [60.0, 64.0, 61.0, 61.0],
                        "pure_minority": [30.0, 36.0, 40.0, 40.0]}).set_index(
        ["condition", "seed"])
    fig = plots.seed_dots(acc, ["seed_42", "fixed"])  # the run's order, top to bottom
    overall, pure = fig.axes
    assert [overall.get_title(), pure.get_title()] == ["overall", "pure minority"]
    assert [t.get_text() for t in overall.get_yticklabels()] == ["seed_42", "fixed"]
    seed0, seed1, mean = overall.collections[:3]
    np.testing.assert_allclose(seed0.get_offsets(), [[60, 0.94], [61, -0.06]])  # drawn apart
    np.testing.assert_allclose(seed1.get_offsets(), [[64, 1.06], [61, 0.06]])
    np.testing.assert_allclose(mean.get_offsets(), [[61, 0], [62, 1]])
    band = pure.patches[0]  # fixed's range over the seeds, on the pure-minority pairs
    assert (band.get_x(), band.get_x() + band.get_width()) == (30, 36)
    assert {"seed 0", "seed 1", "mean", "fixed, range over seeds"} <= {
        t.get_text() for t in fig.legends[0].get_texts()}


def test_rung_bars_one_bar_per_variant_and_rung_in_its_order():
    stats = pd.DataFrame([
        {"rung": r, "test_set": s, "variant": v, "mean": m + (5 if s == "overall" else 0),
         "std": 1.0}
        for r, base in (("head", 50.0), ("full", 60.0)) for s in ("overall", "pure_minority")
        for v, m in (("global", base), ("scpo_fw", base + 2))]).set_index(
        ["rung", "test_set", "variant"]).sort_index()
    fig = plots.rung_bars(stats, {"head": "head only", "full": "every weight"},
                          ["global", "scpo_fw"])
    overall, pure = fig.axes
    heights = [b.get_height() for b in pure.patches]
    assert heights == [50, 52, 60, 62]  # head's bars, then full's
    assert [t.get_text() for t in pure.get_xticklabels()] == ["Global RM", "SCPO (F+W)"]
    assert [t.get_text() for t in overall.get_legend().get_texts()] == ["head only",
                                                                          "every weight"]
    assert overall.get_ylim()[0] == 45  # 10 below the lowest overall mean
