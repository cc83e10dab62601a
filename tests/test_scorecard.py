"""scpo.scorecard: the paper's numbers and claims against each source, by one rule."""

import itertools

import numpy as np
import pandas as pd
import pytest

from scpo import report, scorecard

# accuracy (%) by (variant, seed) for both countries, overall; pure minority: PURE
OVERALL = {"global": [60, 60, 60], "baseline": [70, 71, 72], "filtered": [60, 61, 62],
           "scpo_fw": [70.5, 71.5, 72.5], "scpo_fw_tuned": [73, 74, 75]}
PURE = {"global": [0, 0, 0], "baseline": [20, 20, 20], "filtered": [50, 52, 54],
        "scpo_fw": [30, 30, 30], "scpo_fw_tuned": [25, 25, 25]}
KEPT = {"global": 0, "baseline": 300, "filtered": 120, "scpo_fw": 120, "scpo_fw_tuned": 110}


def results(overall=OVERALL, pure=PURE, countries=("Chile", "Mexico")) -> pd.DataFrame:
    rows = []
    for c, (v, accs) in itertools.product(countries, overall.items()):
        for seed, (a_ov, a_pm) in enumerate(zip(accs, pure[v])):
            for ts, a in (("overall", a_ov), ("pure_minority", a_pm)):
                rows.append({"country": c, "variant": v, "seed": seed, "test_set": ts,
                             "accuracy": a / 100, "ci_low": a / 100 - 0.05,
                             "ci_high": a / 100 + 0.05, "n_kept": KEPT.get(v, 0), "n_train": 300})
    return pd.DataFrame(rows)


def test_each_number_of_the_papers_tables_is_a_row_against_its_reference():
    rows = scorecard.variant_rows()
    assert len(rows) == 7 + 5  # overall: 7 variants; pure minority: 6 less the global's 0
    refs = {key: ref for key, _, _, _, ref in rows}
    assert refs["baseline:overall"] == "global" and refs["scpo_fw:pure_minority"] == "baseline"
    assert "global:pure_minority" not in refs
    assert scorecard.paper_difference("overall", "scpo_fw", "baseline") == pytest.approx(0.60)


def test_verdicts_and_numbers_by_hand():
    long = scorecard.evidence({"simulator": results()}).set_index(["source", "key"])
    sim = long.loc["simulator"]
    # SCPO (F+W) overall: mean over seeds of the macro average 71.5, CI half-width:
    # sqrt(5^2 + 5^2) / 2 = 3.54 (two independent countries)
    row = sim.loc["scpo_fw:overall"]
    assert row["value"] == pytest.approx(71.5)
    assert row["high"] - row["value"] == pytest.approx(np.sqrt(50) / 2)
    # vs the baseline, the paper's direction (+0.60): +0.5 in every run, seed interval width 0
    assert row["verdict"] == "holds"
    # filtered overall is 10 below the baseline in every run (paper: -15.25): holds
    assert sim.loc["filtered:overall", "verdict"] == "holds"
    # claims: filtering over-steers on pure minority (+30, +32, +34 per seed) -> holds, with the
    # seed-level t interval of the mean: 32 +- t(0.975, 2) * 2 / sqrt(3)
    over = sim.loc["filter_oversteers"]
    from scipy.stats import t

    half = t.ppf(0.975, 2) * 2 / np.sqrt(3)
    assert over["verdict"] == "holds" and over["value"] == pytest.approx(32)
    assert (over["low"], over["high"]) == pytest.approx((32 - half, 32 + half))
    # fw keeps the baseline's accuracy: +0.5, above -1 in every run
    assert sim.loc["fw_keeps", "verdict"] == "holds"
    # the tuned variant above SCPO (F+W) by 2.5 in every run
    assert sim.loc["tuned_best", "verdict"] == "holds"
    # efficiency: 300 / 120 = 2.5 in both countries, at the baseline's accuracy
    eff = sim.loc["efficiency"]
    assert (eff["kept_low"], eff["kept_high"]) == (2.5, 2.5) and eff["verdict"] == "holds"


def test_a_reversed_effect_and_one_within_the_seeds_noise():
    overall = {**OVERALL, "filtered": [75, 76, 77]}  # filtered above the baseline: reversed
    pure = {**PURE, "scpo_fw": [45, 60, 40]}  # filtered - fw: +5, -8, +14: within noise
    sim = scorecard.evidence({"simulator": results(overall, pure)}).set_index("key")
    sim = sim[sim["source"] == "simulator"]
    assert sim.loc["filter_costs", "verdict"] == "reversed"
    assert sim.loc["weights_pull_back", "verdict"] == "within noise"


def test_absent_sources_and_missing_variants_say_so():
    no_tuned = results().query("variant != 'scpo_fw_tuned'")
    long = scorecard.evidence({"simulator": no_tuned})
    prism = long[long["source"] == "prism"]
    assert set(prism["verdict"]) == {scorecard.ABSENT}
    sim = long[long["source"] == "simulator"].set_index("key")
    assert sim.loc["tuned_best", "verdict"] == "not measured"
    assert scorecard.cell(sim.loc["tuned_best"].rename(None).to_dict() | {"key": "tuned_best"}) \
        == "not measured"
    card = scorecard.table(long)
    assert (card["PRISM on a laptop"] == scorecard.ABSENT).all()
    assert card.loc["SCPO (F+W), overall", "reported in the paper"] == "62.72"
    assert card.loc["SCPO (F+W), overall", "the simulator"] == "71.5 ± 3.5: holds"


def test_the_authors_models_stand_for_scpo_fw_and_are_compared_with_the_global_rm():
    pub = results({"global": [60] * 3, "published": [64, 64, 64]},
                  {"global": [0] * 3, "published": [30, 30, 30]})
    long = scorecard.evidence({"published": pub})
    rows = long[long["source"] == "published"].set_index("key")
    assert rows.loc["beats_global", "verdict"] == "holds"
    assert rows.loc["beats_global", "value"] == pytest.approx(4.0)
    assert rows.loc["scpo_fw:overall", "value"] == pytest.approx(64.0)
    assert rows.loc["scpo_fw:overall", "verdict"] == "not measured"  # no baseline there
    assert scorecard.cell(rows.loc["scpo_fw:overall"].to_dict() | {"key": "scpo_fw:overall"}) \
        == "64.0 ± 3.5 (no baseline to compare with)"
    counts = scorecard.verdict_counts(long)
    assert counts.loc["published", "holds"] == 1


def test_one_seed_has_no_seed_interval():
    one = results().query("seed == 0")
    sim = scorecard.evidence({"simulator": one}).set_index(["source", "key"]).loc["simulator"]
    assert sim.loc["filter_oversteers", "verdict"] == "within noise"
    assert scorecard.cell(sim.loc["filter_oversteers"].to_dict() | {"key": "x"}) == \
        "+30.0 (one seed): within noise"
    assert report.LEVEL == 0.95


def test_best_of_n_rows_by_hand():
    """The rows the book adds: per country x seed means of a pick metric, in points."""
    rows = []
    for c, seed in itertools.product(("Chile", "Mexico"), (0, 1, 2)):
        for model, top, ctop, gtop in (("global", [1, 0, 0, 1], [1, 0], [1, 1]),
                                       ("scpo_fw", [1, 1, 0, 1], [1, 1], [1, 1])):
            rows += [{"country": c, "seed": seed, "model": model, "items": "turns",
                      "score_top": t} for t in top]
            rows += [{"country": c, "seed": seed, "model": model, "items": "pool",
                      "country_truth_top": ct, "global_truth_top": gt}
                     for ct, gt in zip(ctop, gtop)]
    turns_only = pd.DataFrame([r for r in rows if r["items"] == "turns"]).drop(columns="items")
    long = scorecard.behaviour_evidence({"simulator": pd.DataFrame(rows), "prism": turns_only},
                                        {"simulator", "goqa", "prism"}
                                        ).set_index(["source", "key"])
    sim = long.loc["simulator"]
    assert sim.loc["bon_user_top", "value"] == pytest.approx(25.0)  # 75 % - 50 %
    assert sim.loc["bon_user_top", "verdict"] == "holds"
    assert sim.loc["bon_country_top", "value"] == pytest.approx(50.0)
    assert sim.loc["bon_consensus_top", "verdict"] == "holds"  # 0 > -1 point
    assert long.loc[("goqa", "bon_user_top"), "verdict"] == "not measured"  # no picks there
    # PRISM's picks are its test turns (no pool, no truth): measured, and not measured
    assert long.loc[("prism", "bon_user_top"), "value"] == pytest.approx(25.0)
    assert long.loc[("prism", "bon_country_top"), "verdict"] == "not measured"
    assert long.loc[("published", "bon_user_top"), "verdict"] == scorecard.ABSENT
    card = scorecard.table(long.reset_index())
    assert (card["reported in the paper"] == scorecard.NOT_IN_PAPER).all()
