"""scpo.companion.scorecard: each comparison once, judged on every source by one rule whose interval
carries test users and seeds (issue 36)."""

import itertools

import numpy as np
import pandas as pd
import pytest

from scpo.companion import report, scorecard
from scpo.companion.scorecard import CLAIMS, Evidence

USERS, PER_USER = 12, 5  # per country: 12 test users of 5 pairs each, pairs 0-1 pure minority


def outcomes(rates: dict[str, float], pure: dict[str, float] | None = None,
             countries=("Chile", "Mexico"), seeds=(0, 1, 2), seed_shift=None,
             same_seeds=False, rng_seed=0) -> pd.DataFrame:
    """Per-pair outcomes: variant v is right on a pair with probability rates[v] (pure[v] on
    the pure-minority pairs), + seed_shift[v][seed]; each seed its own draw, or the same
    draw for every seed (``same_seeds``: a model scored once)."""
    rng = np.random.default_rng(rng_seed)
    pure = pure or rates
    n = USERS * PER_USER
    is_pure = np.arange(n) % PER_USER < 2
    parts = []
    for c in countries:
        for v in rates:
            draw = None
            for s in seeds:
                if draw is None or not same_seeds:
                    draw = rng.random(n)
                p = np.where(is_pure, pure[v], rates[v]) + (seed_shift or {}).get(v, {}).get(s, 0)
                parts.append(pd.DataFrame({
                    "country": c, "variant": v, "seed": s, "pair": np.arange(n),
                    "user_id": [f"{c}-u{u}" for u in np.arange(n) // PER_USER],
                    "pure_minority": is_pure, "correct": draw < p,
                    "country_truth_correct": (draw < p).astype(float)}))
    out = pd.concat(parts, ignore_index=True)
    out.loc[out["variant"] == "global", "correct"] &= ~out["pure_minority"]  # by construction
    return out


def source(out: pd.DataFrame, kept=None, tier="test tier") -> Evidence:
    """Evidence with the result rows the outcomes imply."""
    kept = kept or {}
    rows = []
    for (c, v, s), g in out.groupby(["country", "variant", "seed"]):
        for ts, part in (("overall", g), ("pure_minority", g[g["pure_minority"]])):
            rows.append({"country": c, "variant": v, "seed": s, "test_set": ts,
                         "accuracy": part["correct"].mean(), "n_kept": kept.get(v, 300),
                         "n_train": 300})
    return Evidence(pd.DataFrame(rows), out, tier=tier)


RATES = {"global": 0.55, "baseline": 0.70, "filtered": 0.05, "inverse_weighted": 0.60,
         "scpo_w": 0.70, "scpo_fw": 0.70, "scpo_fw_tuned": 0.72, "baseline_tuned": 0.70,
         "random_subset": 0.65}
PURE = {"global": 0.0, "baseline": 0.25, "filtered": 0.85, "inverse_weighted": 0.50,
        "scpo_w": 0.10, "scpo_fw": 0.45, "scpo_fw_tuned": 0.45, "baseline_tuned": 0.25,
        "random_subset": 0.30}


def test_each_distinct_comparison_is_one_claim_and_one_table_holds_them_all():
    """Mirrored or identical comparisons of the old card (global vs baseline both ways;
    filtered:overall = filter_costs; gains = scpo_fw_tuned:overall; efficiency = fw_keeps =
    scpo_fw:overall; the ladder's filter_moves = filtered:pure_minority) are one row each."""
    keys = [c.key for c in CLAIMS]
    assert len(keys) == len(set(keys))
    comparisons = [(c.test_set, frozenset((c.a, c.b))) for c in CLAIMS]
    assert len(comparisons) == len(set(comparisons)) == 17
    for gone in ("global:overall", "filter_costs", "filter_oversteers", "gains", "efficiency",
                 "fw_keeps", "filter_moves"):
        assert gone not in keys
    assert not hasattr(report, "LADDER_CLAIMS")  # one claim table, not two
    assert [c.key for c in CLAIMS if c.definitional] == ["baseline:pure_minority"]
    assert sum(c.in_paper and not c.definitional for c in CLAIMS) == 14


def test_a_gap_of_the_paper_under_a_point_is_keeps_not_a_direction():
    assert scorecard.paper_direction(0.99) == scorecard.paper_direction(-0.99) == 0
    assert scorecard.paper_direction(1.30) == 1 and scorecard.paper_direction(-15.25) == -1
    by = {c.key: c for c in CLAIMS}
    assert by["scpo_w:overall"].paper == pytest.approx(-0.99)
    assert by["scpo_fw:overall"].paper == pytest.approx(0.60)
    assert by["tuned_best"].paper == pytest.approx(0.70)
    for key in ("scpo_w:overall", "scpo_fw:overall", "tuned_best"):
        assert by[key].sense == 0, key
    assert by["scpo_fw_tuned:overall"].sense == 1 and by["filtered:overall"].sense == -1
    # each statement says what it tests: "keeps" exactly where the threshold is -1 point
    for c in CLAIMS + scorecard.BEHAVIOUR:
        says_keeps = "keeps" in c.statement or "loses less than one point" in c.statement
        assert says_keeps == (c.sense == 0), c.key
    # the tuned row: the paper's number against its untuned baseline, ours like for like
    tuned = by["scpo_fw_tuned:overall"]
    assert (tuned.a, tuned.b, tuned.paper_b) == ("scpo_fw_tuned", "baseline_tuned", "baseline")
    assert tuned.paper == pytest.approx(1.30) and "~7 points" in tuned.tested


def test_verdicts_by_hand_with_one_interval_for_users_and_seeds():
    out = outcomes(RATES, PURE)
    long = scorecard.evidence({"simulator": source(out)}).set_index(["source", "key"])
    sim = long.loc["simulator"]
    # each value is the paired difference of the outcomes, its interval their bootstrap
    d = report.paired_difference(out[out["pure_minority"]], "filtered", "baseline")
    row = sim.loc["filtered:pure_minority"]
    assert (row["value"], row["low"], row["high"]) == pytest.approx((d.mean, d.low, d.high))
    acc = out[out["pure_minority"]].groupby("variant")["correct"].mean()
    assert row["value"] == pytest.approx(100 * (acc["filtered"] - acc["baseline"]))
    assert row["verdict"] == "holds" and row["low"] > 0
    assert sim.loc["filtered:overall", "verdict"] == "holds"  # well below: as the paper says
    assert sim.loc["scpo_w:pure_minority", "verdict"] == "holds"
    assert sim.loc["baseline:pure_minority", "definitional"]
    # equal rates: the difference is noise, and its interval covers 0 or -1
    assert sim.loc["scpo_fw_tuned:overall", "verdict"] == "within noise"
    assert sim.loc["truth", "verdict"] == "holds"  # SCPO (F+W) agrees with the truth more
    assert sim.loc["scpo_fw:overall", "kept_low"] == pytest.approx(1.0)


def test_the_interval_carries_the_seeds():
    """The same test users, a seed effect: per seed A - B = +6, -4, +8 points; the users
    alone would call it (every seed's pairs are its own draw), the seeds do not."""
    shift = {"scpo_fw": {0: 0.06, 1: -0.04, 2: 0.08}}
    out = outcomes({**RATES, "scpo_fw": 0.70}, seed_shift=shift, rng_seed=3, same_seeds=True)
    d = report.paired_difference(out, "scpo_fw", "baseline")
    one_seed = report.paired_difference(out[out["seed"] == 0], "scpo_fw", "baseline")
    assert d.high - d.low > one_seed.high - one_seed.low
    assert sorted(d.runs.index.get_level_values("seed").unique()) == [0, 1, 2]


def test_a_source_whose_seeds_repeat_one_scoring_is_judged_by_its_users():
    """The authors' models, scored once and reused for every seed: in 7 countries of 480 test
    pairs (40 users), the published RM and the global RM disagree on 39 pairs, 20 for the
    published one: a gap of one pair per country, +0.2 points. A seed-only interval has zero
    width there ("+0.2 [+0.2, +0.2]: holds"); resampling the users it is within noise. A large
    gap of a once-scored model still holds."""
    countries = ["Chile", "South Africa", "New Zealand", "Australia", "Mexico", "Israel",
                 "Canada"]
    rng = np.random.default_rng(4)
    parts = []
    for c in countries:
        pub = rng.random(480) < 0.6
        glob = pub.copy()
        right, wrong = np.flatnonzero(pub), np.flatnonzero(~pub)
        glob[rng.choice(right, 20, replace=False)] = False  # the published RM alone right
        glob[rng.choice(wrong, 19, replace=False)] = True  # the global RM alone right
        for seed in (0, 1, 2):  # one scoring, the same for every seed
            for v, correct in (("published", pub), ("global", glob)):
                parts.append(pd.DataFrame({
                    "country": c, "variant": v, "seed": seed, "pair": np.arange(480),
                    "user_id": [f"{c}-u{i // 12}" for i in range(480)],
                    "pure_minority": False, "correct": correct}))
    out = pd.concat(parts, ignore_index=True)
    beats = [c for c in CLAIMS if c.key == "beats_global"]
    row = scorecard.evidence({"published": source(out)}, beats).iloc[0]
    assert row["value"] == pytest.approx(100 / 480)  # +0.21 points
    assert row["low"] < 0 < row["high"] and row["verdict"] == "within noise"
    # the seeds add nothing (they repeat one scoring); the users give the width
    one = report.paired_difference(out[out["seed"] == 0], "published", "global")
    assert (row["low"], row["high"]) == pytest.approx((one.low, one.high), abs=0.15)
    big = out.assign(correct=np.where(out["variant"] == "published", True, out["correct"]))
    row = scorecard.evidence({"published": source(big)}, beats).iloc[0]
    assert row["verdict"] == "holds" and row["low"] > 30


def test_one_seed_judges_a_large_effect():
    """The tiny and CI books run one seed: the interval comes from the users alone, so a large
    effect is judged (it was "within noise" for want of a second seed)."""
    out = outcomes(RATES, PURE, seeds=(0,))
    sim = scorecard.evidence({"simulator": source(out)}).set_index("key")
    sim = sim[sim["source"] == "simulator"]
    assert sim.loc["filtered:pure_minority", "verdict"] == "holds"
    assert np.isfinite(sim.loc["filtered:pure_minority", ["low", "high"]].astype(float)).all()


def test_counts_are_of_distinct_comparisons_and_leave_the_definitional_row_out():
    long = scorecard.evidence({"simulator": source(outcomes(RATES, PURE))})
    paper = scorecard.verdict_counts(long)
    assert paper.loc["simulator"].sum() == 14
    book = scorecard.verdict_counts(long, counted=False)
    assert book.loc["simulator"].sum() == 2 + len(scorecard.BEHAVIOUR)  # picks: not measured
    assert list(paper.index) == ["simulator"]


def test_absent_sources_and_missing_variants_say_so_with_a_dash():
    out = outcomes({v: r for v, r in RATES.items() if v != "baseline_tuned"}, PURE)
    long = scorecard.evidence({"simulator": source(out)})
    prism = long[long["source"] == "prism"]
    assert set(prism["verdict"]) == {scorecard.ABSENT}
    sim = long[long["source"] == "simulator"].set_index("key")
    assert sim.loc["scpo_fw_tuned:overall", "verdict"] == "not measured"
    assert scorecard.cell(sim.loc["scpo_fw_tuned:overall"]) == \
        "— (not measured: no baseline_tuned run)"
    assert scorecard.cell(long[long["source"] == "goqa"].iloc[0]) == "— (not in this build)"
    no_outcomes = scorecard.evidence({"simulator": Evidence(source(out).results, None)})
    row = no_outcomes[no_outcomes["source"] == "simulator"].iloc[0]
    assert scorecard.cell(row) == "— (not measured: no per-pair outcomes)"
    table = scorecard.table(long, "simulator")
    assert list(table.columns) == ["reported in the paper (A − B)",
                                   "ours (A − B [95 % interval]): verdict"]
    assert table.loc["The filter's pairs beat as many random pairs on pure-minority pairs",
                     "reported in the paper (A − B)"] == "— (not in the paper)"
    eff = table.iloc[[c.key for c in CLAIMS].index("scpo_fw:overall")]
    assert eff.iloc[0] == "keeps 1 in 1.7–2.8; +0.60"
    assert eff.iloc[1].startswith("keeps 1 in 1.0–1.0; ")
    v = scorecard.verdicts(long)
    assert list(v.columns) == ["simulator"] and len(v) == len(CLAIMS) + 3
    assert v.index[6].startswith("(by construction)")
    assert v.iloc[6, 0] == "(holds)"  # shown, in brackets: it cannot fail
    by = {c.key: c for c in CLAIMS}
    assert by["scpo_fw:overall"].short == "SCPO (F+W) ≥ baseline − 1, overall"
    assert by["filtered:overall"].short == "filtered < baseline, overall"
    assert scorecard.BEHAVIOUR[0].short == "SCPO (F+W) > global RM, best-of-N: user's top"


def test_an_interval_ending_near_its_threshold_shows_two_decimals():
    row = pd.Series({"verdict": "reversed", "value": -0.7, "low": -1.43, "high": -0.004,
                     "sense": 1, "definitional": False})
    assert scorecard.cell(row) == "-0.7 [-1.43, -0.00]: reversed"
    far = row.copy()
    far["high"] = -0.3
    assert scorecard.cell(far) == "-0.7 [-1.4, -0.3]: reversed"
    keeps = row.copy()
    keeps["low"], keeps["sense"] = -0.98, 0  # threshold -1: -0.98 is near it
    assert scorecard.cell(keeps).startswith("-0.7 [-0.98, -0.00]")


def test_the_authors_models_stand_for_scpo_fw():
    out = outcomes({"global": 0.55, "published": 0.75, "published_dropout": 0.7},
                   {"global": 0.0, "published": 0.4, "published_dropout": 0.5})
    long = scorecard.evidence({"published": source(out)})
    rows = long[long["source"] == "published"].set_index("key")
    assert rows.loc["beats_global", "verdict"] == "holds"
    assert rows.loc["scpo_fw:overall", "verdict"] == "not measured"  # no baseline there
    assert rows.loc["scpo_fw:overall", "missing"] == "no baseline run"


def test_best_of_n_rows_draw_the_pools_shared_prompts_once():
    """The book's rows: per-item picks, users resampled per country for the turns, the pool's
    prompts (the same in every country) once for all countries."""
    rows = []
    for c, seed in itertools.product(("Chile", "Mexico"), (0, 1)):
        for model, top in (("global", [1, 0, 0, 1, 0, 1]), ("scpo_fw", [1, 1, 0, 1, 1, 1])):
            rows += [{"country": c, "seed": seed, "model": model, "items": "turns",
                      "item": f"{c}/t{i}", "user_id": f"{c}-u{i // 2}", "score_top": t}
                     for i, t in enumerate(top)]
            rows += [{"country": c, "seed": seed, "model": model, "items": "pool",
                      "item": f"{c}/p{i}", "user_id": f"p{i}", "country_truth_top": t,
                      "global_truth_top": 1 - t if model == "scpo_fw" else 0}
                     for i, t in enumerate(top)]
    picks = pd.DataFrame(rows)
    ev = Evidence(source(outcomes(RATES, PURE)).results, None, picks)
    long = scorecard.evidence({"simulator": ev}, scorecard.BEHAVIOUR)
    long = long[long["source"] == "simulator"].set_index("key")
    assert long.loc["bon_user_top", "value"] == pytest.approx(100 * 2 / 6)
    pool = picks[picks["items"] == "pool"]
    d = report.paired_difference(pool, "scpo_fw", "global", "country_truth_top", model="model",
                                 unit="item", shared_clusters=True)
    assert long.loc["bon_country_top", "low"] == pytest.approx(d.low)
    apart = report.paired_difference(pool, "scpo_fw", "global", "country_truth_top",
                                     model="model", unit="item")
    assert (d.low, d.high) != (apart.low, apart.high)


def test_each_source_is_read_as_its_pages_ran_for_the_builds_countries(tmp_path):
    """Issue 36, item 4: the scorecard read every page under the results directory, so a
    stale Canada page of an earlier plan was averaged in. Read through results.reopen with the
    build's countries, the stale page is left out, and each column says what it rests on:
    countries x seeds and the tier its runs' config names (a stale page run otherwise is
    refused when read with the others)."""
    from scpo.config import load_preset
    from scpo.experiment import run_country
    from scpo.results import run_record, save_country
    from scpo.scoring import prepare

    root = tmp_path / "results"
    for country, seeds in (("Chile", [0, 1]), ("Canada", [0])):  # Canada: an earlier plan's
        cfg = load_preset("tiny").update({
            "train": {"max_steps": 20},
            "run": {"countries": [country], "variants": ["global", "scpo_fw"], "seeds": seeds}})
        prep = prepare(cfg)
        save_country(root, run_country(prep, country, progress=False), run_record(prep))
    ev = scorecard.read_pages(root, "Chile")
    assert set(ev.results["country"]) == {"Chile"}
    assert set(ev.outcomes["country"]) == {"Chile"}
    assert ev.rests_on() == "1 country × 2 seeds; a head on frozen minilm"
    with pytest.raises(ValueError, match=r"did not run alike.*\(Canada\)"):
        scorecard.read_pages(root)  # every page there: the stale one too, refused
    # the column's difference is Chile's alone
    d = scorecard.difference(ev, next(c for c in CLAIMS if c.key == "beats_global"))
    chile = ev.outcomes
    want = 100 * (chile.loc[chile["variant"] == "scpo_fw", "correct"].mean()
                  - chile.loc[chile["variant"] == "global", "correct"].mean())
    assert d.mean == pytest.approx(want)


def test_tier_of_names_each_tier_and_its_backbone():
    assert scorecard.tier_of({"backend": "embedding", "encoder": "org/all-MiniLM-L6-v2"}) == (
        "a head on frozen all-MiniLM-L6-v2")
    assert scorecard.tier_of({"backend": "partial", "train_layers": 2,
                              "global_model": "OpenAssistant/reward-model-deberta-v3-base/"}) == (
        "the top 2 layers of reward-model-deberta-v3-base")
    assert scorecard.tier_of({"backend": "hf", "global_model": "a/b", "lora_r": 8}) == (
        "every weight of b, LoRA r = 8")


def test_the_rung_summary_counts_only_what_was_measured():
    """Issue 36: the ladder's runs predate the per-pair outcomes, so every rung's verdict is
    "not measured", and the main page said "0 hold on every rung" (a count that reads as a
    finding). With nothing measured it says so and why; otherwise it counts the measured."""
    out = outcomes(RATES, PURE)
    measured = scorecard.evidence({"ladder: head": source(out), "ladder: top": source(out)},
                                  CLAIMS)
    measured = measured[measured["source"].isin(["ladder: head", "ladder: top"])]
    holds = measured[measured["counted"]].pivot(index="key", columns="source", values="verdict")
    every = int((holds == "holds").all(axis=1).sum())
    assert 0 < every <= 14
    assert scorecard.rung_summary(measured) == (
        f"Of the paper's 14 distinct comparisons, {every} hold on every rung; 0 hold on the head "
        "rung but not on every deeper one.")
    bare = Evidence(source(out).results)  # result rows, no per-pair outcomes
    none = scorecard.evidence({"ladder: head": bare, "ladder: top": bare}, CLAIMS)
    none = none[none["source"].isin(["ladder: head", "ladder: top"])]
    assert (none.loc[none["counted"], "verdict"] == "not measured").all()
    assert scorecard.rung_summary(none).startswith(
        "None of the paper's 14 distinct comparisons is measured on the ladder: its runs kept "
        "no per-pair outcomes")


def test_the_efficiency_claim_read_as_users_by_hand():
    """Issue 40: the scorecard reads the learning curves' macro share at which SCPO (F+W) keeps
    the baseline within one point, and judges it against 1 / 1.7 = 59 % of the users: an
    interval at or below 0.59 supports it, one above it does not, one across it is undecided."""
    inf = float("inf")
    match = pd.DataFrame([
        # scope, test set, tolerance, share, low, high
        ("macro", "overall", 0.0, inf, 1.0, inf),  # reaches: not the row read
        ("macro", "overall", 1.0, 0.7, 0.4, inf),  # keeps: 40 % to n.r. covers 59 %
        ("macro", "pure_minority", 1.0, 0.1, 0.1, 0.4),  # at or below 59 %: supported
        ("Chile", "overall", 1.0, 0.1, 0.1, 0.1),  # a country, not the macro row
        ("macro", "country_truth", 1.0, 1.0, 0.7, 1.0),  # above 59 %: not supported
    ], columns=["scope", "test_set", "tolerance", "share_to_match", "low", "high"])
    both = scorecard.efficiency_by_users({"simulator": match, "goqa": match.iloc[[1, 3]]})
    assert list(both.index) == [("the simulator", "overall"), ("the simulator", "pure minority"),
                                ("the simulator", "country truth"), ("GlobalOpinionQA", "overall")]
    t = both.loc["the simulator"]
    assert t["share to keep"].tolist() == ["70 %", "10 %", "100 %"]
    assert t["95 % interval"].tolist() == ["40 % to not reached", "10 % to 40 %", "70 % to 100 %"]
    assert t.iloc[:, -1].tolist() == ["not decided within the noise", "supported", "not supported"]
    assert "59 %" in t.columns[-1]
    with pytest.raises(ValueError, match="of 'goqa': no macro row at tolerance 1"):
        scorecard.efficiency_by_users({"goqa": match[match["scope"] != "macro"]})


def test_the_curves_tables_are_read_per_dataset_and_a_missing_one_is_named(tmp_path):
    table = pd.DataFrame({"scope": ["macro"], "share_to_match": [0.4]})
    for name in ("sim", "goqa"):
        (tmp_path / name).mkdir()
        table.assign(share_to_match=0.4 if name == "sim" else 0.7).to_csv(
            tmp_path / name / "share_to_match.csv", index=False)
    read = scorecard.curves_sources(f"sim:{tmp_path / 'sim'};goqa:{tmp_path / 'goqa'}")
    assert list(read) == ["simulator", "goqa"]
    assert read["goqa"]["share_to_match"].tolist() == [0.7]
    assert scorecard.curves_sources("") == {}
    with pytest.raises(FileNotFoundError, match="curves on prism wrote no share_to_match.csv"):
        scorecard.curves_sources(f"prism:{tmp_path / 'none'}")
