"""Learning curves (scpo.companion.curves), by hand: user-level, nested, seeded subsets; the
share to match as MATCH_RULE states it (not reached included); its interval; the per-point cache."""

import numpy as np
import pandas as pd
import pytest

from scpo.companion import curves
from scpo.config import load_preset
from scpo.scoring import prepare


def training_pairs(n_users=20, pairs_each=3):
    """u00..u19, each with ``pairs_each`` pairs, rows shuffled so no test relies on order."""
    rows = [{"user_id": f"u{u:02d}", "pair_no": k} for u in range(n_users)
            for k in range(pairs_each)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3).reset_index(drop=True)


def test_n_users_is_the_ceiling_of_the_share_and_at_least_one():
    assert curves.n_users(0.1, 20) == 2
    assert curves.n_users(0.7, 10) == 7  # 0.7 * 10 is 7.000000000000001 in floats
    assert curves.n_users(0.25, 10) == 3  # ceil(2.5)
    assert curves.n_users(0.01, 20) == 1
    assert curves.n_users(1.0, 17) == 17
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        curves.n_users(0.0, 10)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        curves.n_users(1.5, 10)


def test_subsets_are_whole_users_nested_and_seeded():
    train = training_pairs()
    per_user = train.groupby("user_id").size()
    prev: set[str] = set()
    for share in (0.1, 0.2, 0.4, 0.7, 1.0):
        sub = curves.user_subset(train, share, seed=0, country="Chile")
        users = set(sub["user_id"])
        assert len(users) == curves.n_users(share, 20)
        # user-level: every pair of a kept user, none of another
        assert len(sub) == per_user[list(users)].sum()
        assert prev <= users  # nested: a larger share keeps every user of a smaller one
        prev = users
    assert len(curves.user_subset(train, 1.0, 0, "Chile")) == len(train)
    # seeded: the same seed gives the same users; another seed (or country) other users
    a = set(curves.user_subset(train, 0.4, 0, "Chile")["user_id"])
    assert a == set(curves.user_subset(train, 0.4, 0, "Chile")["user_id"])
    assert a != set(curves.user_subset(train, 0.4, 1, "Chile")["user_id"])
    assert a != set(curves.user_subset(train, 0.4, 0, "Mexico")["user_id"])
    # the rows' order does not choose the users
    shuffled = train.sample(frac=1.0, random_state=11)
    assert a == set(curves.user_subset(shuffled, 0.4, 0, "Chile")["user_id"])


def test_share_to_match_by_hand():
    shares = [0.1, 0.2, 0.4, 0.7, 1.0]
    # reaches 61 at 0.2 but falls back at 0.4: the rule asks that it stays, so 0.7
    assert curves.share_to_match(shares, [50, 62, 58, 62, 63], 61) == 0.7
    assert curves.share_to_match(shares, [61, 62, 63, 64, 65], 61) == 0.1  # equal is reached
    assert curves.share_to_match(shares, [50, 55, 58, 59, 60], 61) == curves.NOT_REACHED
    assert curves.share_to_match(shares, [50, 55, 58, 59, 60.5], 61, tolerance=1.0) == 1.0
    # a point without a model (NaN: its filter kept nothing) does not match
    assert curves.share_to_match(shares, [np.nan, 62, 62, 62, 62], 61) == 0.2
    assert curves.share_to_match(shares, [62, 62, np.nan, 62, 62], 61) == 0.7
    # one per replicate: rows of accuracies, one target each
    reps = np.array([[50, 62, 58, 62, 63], [61, 62, 63, 64, 65], [50, 55, 58, 59, 60]])
    np.testing.assert_array_equal(curves.share_to_match(shares, reps, [61, 61, 61]),
                                  [0.7, 0.1, np.inf])
    with pytest.raises(ValueError, match="ascending"):
        curves.share_to_match([0.2, 0.1], [1, 2], 1)


def test_share_interval_ranks_not_reached_above_every_share():
    reps = [0.2] * 10 + [0.4] * 80 + [np.inf] * 10  # 100 replicates
    assert curves.share_interval(reps) == (0.2, np.inf)
    assert curves.share_interval([0.4] * 100) == (0.4, 0.4)
    assert curves.share_text(np.inf) == "not reached" and curves.share_text(0.4) == "40 %"


def outcomes_by_hand(acc):
    """Per-pair outcomes with the given accuracy (%) per (country, variant, share, seed): 10
    users of 100 test pairs each per country, every user right on the same share of pairs (so
    a bootstrap of the users gives the point itself), every 5th pair pure minority."""
    rows = []
    for (country, variant, share, seed), a in acc.items():
        for p in range(1000):
            rows.append({"country": country, "variant": variant, "share": share, "seed": seed,
                         "pair": p, "user_id": f"{country}-{p // 100}",
                         "pure_minority": p % 5 == 0, "correct": p % 100 < a})
    return pd.DataFrame(rows)


def test_share_to_match_table_by_hand():
    # the baseline on every user: A 60 %, B 70 % (macro 65); SCPO (F+W) at each share
    acc = {("A", "baseline", 1.0, 0): 60, ("B", "baseline", 1.0, 0): 70,
           ("A", "baseline", 0.1, 0): 99, ("B", "baseline", 0.1, 0): 99}  # not the target
    for share, a, b in ((0.1, 40, 50), (0.5, 62, 69), (1.0, 61, 72)):
        acc[("A", "scpo_fw", share, 0)], acc[("B", "scpo_fw", share, 0)] = a, b
    t = curves.share_to_match_table(outcomes_by_hand(acc), n_boot=200).set_index(
        ["scope", "test_set"])
    macro = t.loc[("macro", "overall")]
    assert macro["target"] == pytest.approx(65.0) and macro["at_full"] == pytest.approx(66.5)
    assert macro["share_to_match"] == 0.5  # (62 + 69) / 2 = 65.5 >= 65, and 66.5 at 1.0
    assert t.loc[("A", "overall"), "share_to_match"] == 0.5  # 62, then 61 >= 60
    assert t.loc[("B", "overall"), "share_to_match"] == 1.0  # 69 < 70, then 72
    # within one point: B's 69 at 0.5 keeps its baseline's 70
    kept = curves.share_to_match_table(outcomes_by_hand(acc), tolerance=1.0, n_boot=50)
    assert kept.set_index(["scope", "test_set"]).loc[("B", "overall"), "share_to_match"] == 0.5
    # every user alike: each replicate is the point, so is the interval
    assert (macro["low"], macro["high"]) == (0.5, 0.5)
    # pure minority: pairs 0, 5, ..., 95 of each user; A's baseline right on 12 of 20 (60 %),
    # SCPO (F+W) on 8, 13, 13 (40, 65, 65 %)
    pure = t.loc[("A", "pure_minority")]
    assert pure["target"] == pytest.approx(60.0) and pure["share_to_match"] == 0.5
    # not reached: C's SCPO (F+W) stays below its baseline's 80 %
    c = {("C", "baseline", 1.0, 0): 80, ("C", "scpo_fw", 0.5, 0): 70,
         ("C", "scpo_fw", 1.0, 0): 75}
    tc = curves.share_to_match_table(outcomes_by_hand(c), n_boot=50).set_index(
        ["scope", "test_set"])
    assert tc.loc[("C", "overall"), "share_to_match"] == curves.NOT_REACHED
    assert tc.loc[("C", "overall"), "high"] == curves.NOT_REACHED


def test_share_to_match_interval_carries_the_seeds():
    # seed 0 reaches the baseline's 60 % at 0.5 (70 %), seed 1 only at 1.0 (52 % at 0.5): the
    # mean over seeds, 61 %, reaches it at 0.5; a replicate that draws seed 1 twice (1 in 4)
    # does not, so the interval runs from 0.5 to 1.0
    acc = {("A", "baseline", 1.0, 0): 60, ("A", "baseline", 1.0, 1): 60,
           ("A", "scpo_fw", 0.5, 0): 70, ("A", "scpo_fw", 0.5, 1): 52,
           ("A", "scpo_fw", 1.0, 0): 62, ("A", "scpo_fw", 1.0, 1): 62}
    t = curves.share_to_match_table(outcomes_by_hand(acc), n_boot=400).set_index(
        ["scope", "test_set"])
    row = t.loc[("macro", "overall")]
    assert row["share_to_match"] == 0.5
    assert (row["low"], row["high"]) == (0.5, 1.0)


def test_curve_table_by_hand():
    acc = {("A", "scpo_fw", 0.5, 0): 60, ("A", "scpo_fw", 0.5, 1): 70,
           ("B", "scpo_fw", 0.5, 0): 80, ("B", "scpo_fw", 0.5, 1): 80}
    t = curves.curve_table(outcomes_by_hand(acc), n_boot=100).set_index(
        ["scope", "test_set", "variant", "share"])
    assert t.loc[("A", "overall", "scpo_fw", 0.5), "accuracy"] == pytest.approx(65.0)
    assert t.loc[("macro", "overall", "scpo_fw", 0.5), "accuracy"] == pytest.approx(72.5)
    assert t.loc[("B", "overall", "scpo_fw", 0.5), ["low", "high"]].tolist() == [80.0, 80.0]


def tiny():
    cfg = load_preset("tiny")
    cfg.update({"train": {"max_steps": 60}})
    return cfg


def test_points_are_cached_and_share_one_is_the_experiment_loops_model(tmp_path, monkeypatch):
    from scpo.experiment import run_country

    prep = prepare(tiny())
    args = dict(countries=["Chile"], shares=(0.5, 1.0), seeds=[0],
                variants=("global", "baseline", "scpo_fw"), progress=False, root=tmp_path)
    out, counts = curves.curve_outcomes(prep, **args)
    assert len(counts) == 2 * 3 and not counts["empty_filter"].any()
    half = counts[(counts["share"] == 0.5) & (counts["variant"] == "baseline")].iloc[0]
    assert half["n_train_users"] == curves.n_users(0.5, prep.pairs.loc[
        (prep.pairs["country"] == "Chile") & (prep.pairs["split"] == "train"),
        "user_id"].nunique())
    # share 1.0 trains what the experiment loop trains: the same outcome on every test pair
    import dataclasses
    at = dataclasses.replace(prep, cfg=dataclasses.replace(prep.cfg, run=dataclasses.replace(
        prep.cfg.run, seeds=[0], variants=["baseline", "scpo_fw"])))
    loop = run_country(at, "Chile", progress=False).predictions
    for v in ("baseline", "scpo_fw"):
        mine = out[(out["variant"] == v) & (out["share"] == 1.0)]
        theirs = loop[loop["variant"] == v]
        assert mine["correct"].tolist() == theirs["correct"].tolist()

    # a warm call trains nothing: every point is read back from the cache
    def no_training(*a, **k):
        raise AssertionError("a cached point was computed again")

    monkeypatch.setattr(curves, "compute_point", no_training)
    again, counts_again = curves.curve_outcomes(prep, **args)
    pd.testing.assert_frame_equal(again, out)
    pd.testing.assert_frame_equal(counts_again, counts)


def test_the_book_plans_the_chapter_without_waiting_for_the_country_pages(tmp_path):
    from conftest import book_build

    build = book_build()
    for preset, seeds in (("tiny", None), ("default", "0")):
        jobs = {j.page: j for j in build.plan(preset, None, "", None, tmp_path)}
        job = jobs["results/curves"]
        assert job.inputs == []  # trains its own points: starts with the first notebooks
        assert job.params.get("seeds") == seeds  # the default book: one seed (cost)
        assert job.params["countries"] == jobs["results/main"].params["countries"]
        assert job.warm is not None  # the embeddings and global RM are ready before it runs


def test_sentences_follow_the_share_to_match():
    row = {"share_to_match": 0.4, "low": 0.2, "high": 0.7, "target": 70.0, "at_full": 72.0}
    assert curves.match_said(row) == ("reaches it with 40 % of the training users (95 % "
                                      "interval 20 % to 70 %)")
    assert curves.paper_reading(row) == "not decided within the noise"  # 20 % < 59 % < 70 %
    assert curves.paper_reading({**row, "high": 0.4}) == "supported"
    assert curves.paper_reading({**row, "low": 0.7, "high": 1.0}) == "not supported"
    assert curves.paper_reading({**row, "low": 1.0, "high": np.inf}) == "not supported"
    full = {**row, "share_to_match": 1.0, "low": 0.7, "high": np.inf}
    assert curves.match_said(full, ("keeps", "keep")) == (
        "keeps it only with every training user (95 % interval 70 % to not reached)")
    never = {**row, "share_to_match": np.inf, "low": 1.0, "high": np.inf, "at_full": 68.04}
    assert curves.match_said(never) == (
        "does not reach it even with every training user (68.0 % against the baseline's 70.0 %; "
        "95 % interval 100 % to not reached)")


def test_learning_curves_figure_has_a_line_and_a_band_per_variant():
    from scpo.companion import plots

    rows = [{"variant": v, "share": s, "accuracy": a + 10 * s, "low": a - 5, "high": a + 15}
            for v, a in (("global", 60), ("baseline", 62), ("scpo_fw", 63)) for s in (0.5, 1.0)]
    ax = plots.learning_curves(pd.DataFrame(rows), "t").axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {plots.label(v) for v in ("global", "baseline", "scpo_fw")}
    assert lines[plots.label("global")].get_linestyle() == "--"
    np.testing.assert_allclose(lines[plots.label("scpo_fw")].get_xydata(),
                               [[50, 68], [100, 73]])  # x in percent of users
    assert len(ax.collections) == 3  # one band each
