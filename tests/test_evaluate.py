"""Evaluation functions against values computed by hand."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from scpo import evaluate as ev


def test_pairwise_correct_counts_ties_wrong():
    correct, tie = ev.pairwise_correct([2.0, 1.0, 3.0], [1.0, 1.0, 4.0])
    assert correct.tolist() == [True, False, False]
    assert tie.tolist() == [False, True, False]
    assert ev.accuracy(correct) == pytest.approx(1 / 3)
    # a model scoring everything equally gets 0, not 0.5
    correct, tie = ev.pairwise_correct([0.0, 0.0], [0.0, 0.0])
    assert ev.accuracy(correct) == 0.0 and tie.all()


def test_pairwise_correct_rejects_nan_and_mismatched_lengths():
    with pytest.raises(ValueError, match="r_rejected.*row 1"):
        ev.pairwise_correct([1.0, 2.0], [0.0, np.nan])
    with pytest.raises(ValueError, match="differ in length"):
        ev.pairwise_correct([1.0, 2.0], [0.0])


def test_accuracy_of_no_pairs_names_set_and_country():
    with pytest.raises(ValueError, match="test_set='pure_minority' country='Chile'"):
        ev.accuracy(np.array([], dtype=bool), test_set="pure_minority", country="Chile")


def test_pure_minority_excludes_equal_global_scores():
    mask = ev.pure_minority_mask([0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    assert mask.tolist() == [True, False, False]


def test_bootstrap_all_correct_and_all_wrong_are_degenerate():
    users = ["a", "a", "b", "c"]
    assert ev.bootstrap_ci(np.ones(4, bool), users, n_boot=200) == (1.0, 1.0)
    assert ev.bootstrap_ci(np.zeros(4, bool), users, n_boot=200) == (0.0, 0.0)


def test_bootstrap_two_users_matches_the_enumerated_distribution():
    # User A: 2 pairs, both correct; user B: 1 pair, wrong. Drawing 2 users with replacement:
    # AA (p 1/4) -> 2/2 = 1; AB or BA (p 1/2) -> 2/3 (pairs pooled, not 1/2 = mean of users);
    # BB (p 1/4) -> 0/2 = 0.
    correct, users = [True, True, False], ["A", "A", "B"]
    acc = ev.bootstrap_accuracies(correct, users, n_boot=20000, seed=0)
    assert set(np.round(acc, 12)) == {0.0, round(2 / 3, 12), 1.0}
    assert np.mean(acc == 1.0) == pytest.approx(0.25, abs=0.015)
    assert np.mean(np.isclose(acc, 2 / 3)) == pytest.approx(0.5, abs=0.015)
    assert np.mean(acc == 0.0) == pytest.approx(0.25, abs=0.015)
    # The 40% and 60% quantiles both fall in the AB mass (cumulative 0.25 .. 0.75).
    assert ev.bootstrap_ci(correct, users, n_boot=20000, seed=0, level=0.2) == pytest.approx(
        (2 / 3, 2 / 3))
    assert ev.bootstrap_ci(correct, users, n_boot=20000, seed=0) == (0.0, 1.0)


def test_bootstrap_is_seeded_and_ignores_row_order():
    rng = np.random.default_rng(1)
    correct = rng.random(300) < 0.6
    users = rng.integers(0, 40, 300)
    a = ev.bootstrap_ci(correct, users, n_boot=500, seed=3)
    assert ev.bootstrap_ci(correct, users, n_boot=500, seed=3) == a
    assert ev.bootstrap_ci(correct, users, n_boot=500, seed=4) != a
    perm = rng.permutation(300)
    assert ev.bootstrap_ci(correct[perm], users[perm], n_boot=500, seed=3) == a
    low, high = a
    assert low < correct.mean() < high


def test_bootstrap_means_resamples_clusters_of_any_values():
    # u1 has two values 1, u2 one 0: a resample (u1, u2) has mean 2/3 (3 values), not 1/2;
    # (u1, u1) -> 1 and (u2, u2) -> 0, each with probability 1/4
    boots = ev.bootstrap_means([1.0, 1.0, 0.0], ["u1", "u1", "u2"], n_boot=4000, seed=0)
    assert set(np.round(boots, 12)) == {0.0, round(2 / 3, 12), 1.0}
    assert abs(np.mean(boots == 1.0) - 0.25) < 0.03 and abs(np.mean(boots == 0.0) - 0.25) < 0.03
    # several statistics at once: each column from the same draws
    both = ev.bootstrap_means(np.c_[[1.0, 1.0, 0.0], [2.0, 4.0, 6.0]], ["u1", "u1", "u2"],
                              n_boot=4000, seed=0)
    np.testing.assert_array_equal(both[:, 0], boots)
    # (u1, u1) -> 3, (u2, u2) -> 6, (u1, u2) -> 12 / 3 = 4
    np.testing.assert_allclose(both[:, 1], np.select([boots == 1, boots == 0], [3.0, 6.0], 4.0))
    # 0/1 values: the accuracies' bootstrap is the same draws
    correct = np.array([True, True, False])
    np.testing.assert_array_equal(ev.bootstrap_accuracies(correct, ["u1", "u1", "u2"],
                                                          n_boot=4000, seed=0), boots)
    with pytest.raises(ValueError, match="row 1"):
        ev.bootstrap_means([1.0, np.nan], ["a", "b"])


def test_bootstrap_bad_arguments():
    with pytest.raises(ValueError, match="0 pairs"):
        ev.bootstrap_ci([], [])
    with pytest.raises(ValueError, match="level"):
        ev.bootstrap_ci([True], ["a"], level=95)
    with pytest.raises(ValueError, match="n_boot"):
        ev.bootstrap_ci([True], ["a"], n_boot=0)


def test_truth_accuracy_excludes_truth_ties_and_counts_model_ties_wrong():
    # pair 0: model +, truth + (agree); pair 1: model -, truth - (agree);
    # pair 2: model tie, truth + (wrong); pair 3: truth 0 (left out).
    rc, rr, m = [1.0, 0.0, 2.0, 5.0], [0.0, 1.0, 2.0, 3.0], [0.5, -1.0, 1.0, 0.0]
    assert ev.truth_counts(rc, rr, m) == (2, 3, 1)
    assert ev.truth_accuracy(rc, rr, m) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 truth ties"):
        ev.truth_accuracy([1.0, 2.0], [0.0, 0.0], [0.0, 0.0])


def test_softmax_over_options_by_hand():
    # e^{log 3} / (e^{log 3} + e^0) = 3 / 4
    np.testing.assert_allclose(ev.softmax_over_options([math.log(3.0), 0.0]), [0.75, 0.25])


def test_jsd_alignment_identical_distributions_is_one():
    # softmax([log 3, 0]) = [3/4, 1/4] = shares [3, 1] renormalised
    out = ev.jsd_alignment([[math.log(3.0), 0.0]], [[3.0, 1.0]])
    assert out[0] == pytest.approx(1.0, abs=1e-7)


def test_jsd_alignment_by_hand():
    # p = softmax([0, 0]) = [1/2, 1/2]; s = [2, 0] / 2 = [1, 0]; m = [3/4, 1/4].
    # KL(p||m) = 1/2 log2(2/3) + 1/2 log2(2) = 0.2075187496...
    # KL(s||m) = log2(4/3)                    = 0.4150374992...
    # JS distance = sqrt((0.2075187496 + 0.4150374992) / 2) = 0.5579230427...
    out = ev.jsd_alignment([[0.0, 0.0], [math.log(3.0), 0.0]], [[2.0, 0.0], [0.75, 0.25]])
    np.testing.assert_allclose(out, [1 - 0.5579230427, 1.0], atol=1e-7)


def test_jsd_alignment_errors_name_the_question():
    with pytest.raises(ValueError, match="question q2.*not all zero"):
        ev.jsd_alignment([[0.0, 1.0], [0.0, 1.0]], [[1, 1], [0, 0]], questions=["q1", "q2"])
    with pytest.raises(ValueError, match="question #0: 2 option scores but 3 shares"):
        ev.jsd_alignment([[0.0, 1.0]], [[1, 1, 1]])
    with pytest.raises(ValueError, match="1 score arrays but 2 share arrays"):
        ev.jsd_alignment([[0.0, 1.0]], [[1, 1], [1, 1]])


def _per_country() -> pd.DataFrame:
    return pd.DataFrame({
        "variant": ["scpo_fw"] * 4, "seed": [0] * 4,
        "test_set": ["overall", "overall", "pure_minority", "pure_minority"],
        "country": ["Chile", "Canada", "Chile", "Canada"],
        "n_pairs": [100, 10, 0, 4], "accuracy": [0.6, 0.8, np.nan, 0.5],
    })


def test_macro_average_weights_countries_equally_and_counts_missing():
    with pytest.warns(UserWarning, match="1 NaN 'accuracy'"):
        out = ev.macro_average(_per_country())
    overall = out[out["test_set"] == "overall"].iloc[0]
    # (0.6 + 0.8) / 2 = 0.7, not the pooled (60 + 8) / 110 = 0.618
    assert overall["accuracy"] == pytest.approx(0.7)
    assert overall["n_countries"] == 2 and overall["n_missing"] == 0
    pure = out[out["test_set"] == "pure_minority"].iloc[0]
    assert pure["accuracy"] == pytest.approx(0.5)
    assert pure["n_countries"] == 1 and pure["n_missing"] == 1


def test_macro_average_rejects_duplicates_and_missing_columns():
    df = pd.concat([_per_country(), _per_country()])
    with pytest.raises(ValueError, match="duplicate"):
        ev.macro_average(df.dropna())
    with pytest.raises(KeyError, match="country"):
        ev.macro_average(_per_country().drop(columns="country"))


def test_kept_ratio_pooled_and_macro_by_hand():
    df = pd.DataFrame({"country": ["Chile", "Canada"], "n_kept": [50, 9], "n_train": [100, 10]})
    out = ev.kept_ratio(df).iloc[0]
    assert out["pooled"] == pytest.approx(59 / 110)  # 0.536
    assert out["macro"] == pytest.approx((0.5 + 0.9) / 2)  # 0.7
    assert out["n_countries"] == 2
    with pytest.raises(ValueError, match="Canada"):
        ev.kept_ratio(df.assign(n_train=[100, 0]))


def test_seed_summary_by_hand():
    df = pd.DataFrame({"variant": ["a", "a", "a", "b"], "test_set": ["overall"] * 4,
                       "seed": [0, 1, 2, 0], "accuracy": [0.6, 0.7, 0.8, 0.5]})
    out = ev.seed_summary(df, "accuracy").set_index("variant")
    # mean 0.7; sd = sqrt((0.1^2 + 0 + 0.1^2) / (3 - 1)) = 0.1
    assert out.loc["a", "mean"] == pytest.approx(0.7)
    assert out.loc["a", "sd"] == pytest.approx(0.1)
    assert out.loc["a", "n_seeds"] == 3
    assert math.isnan(out.loc["b", "sd"]) and out.loc["b", "n_seeds"] == 1
    with pytest.raises(ValueError, match="macro_average"):
        ev.seed_summary(pd.concat([df, df]), "accuracy")


def test_data_efficiency_by_hand():
    # same gain (0.04) from half the pairs: (0.04 / 100) / (0.04 / 200) = 2.0
    assert ev.data_efficiency(0.62, 100, 0.62, 200, 0.58) == pytest.approx(2.0)
    # (0.03 / 40) / (0.04 / 120) = 0.00075 / 0.000333... = 2.25
    assert ev.data_efficiency(0.61, 40, 0.62, 120, 0.58) == pytest.approx(2.25)
    with pytest.raises(ValueError, match="n_variant=0"):
        ev.data_efficiency(0.6, 0, 0.62, 120, 0.58)
    with pytest.warns(UserWarning, match="does not improve"):
        assert math.isnan(ev.data_efficiency(0.61, 40, 0.58, 120, 0.58))


def test_evaluate_model_rows_by_hand():
    # pair:      0      1      2 (tie) 3
    rc = [1.0, 0.0, 2.0, 1.0]
    rr = [0.0, 1.0, 2.0, 0.0]
    rg_c = [0.0, 2.0, 1.0, 0.0]  # global RM wrong on pairs 0 and 3 -> pure minority
    rg_r = [1.0, 1.0, 1.0, 1.0]
    users = ["u1", "u1", "u2", "u3"]
    truth = {"country_truth": [1.0, 1.0, 1.0, 1.0], "global_truth": [-1.0, 1.0, 0.0, 1.0]}
    rows = {r["test_set"]: r for r in ev.evaluate_model(
        rc, rr, rg_c, rg_r, users, truth=truth, n_boot=300, seed=0)}
    o, p = rows["overall"], rows["pure_minority"]
    assert (o["n_pairs"], o["n_correct"], o["n_ties"], o["n_users"]) == (4, 2, 1, 3)
    assert o["accuracy"] == 0.5
    assert (o["ci_low"], o["ci_high"]) == ev.bootstrap_ci(
        [True, False, False, True], users, n_boot=300, seed=0)
    assert (p["n_pairs"], p["n_correct"], p["n_ties"], p["n_users"]) == (2, 2, 0, 2)
    assert (p["accuracy"], p["ci_low"], p["ci_high"]) == (1.0, 1.0, 1.0)
    # country truth all +: pairs 0 and 3 agree, 1 disagrees, 2 is a model tie -> 2/4
    assert o["country_truth_accuracy"] == 0.5 and o["country_truth_n_ties"] == 0
    # global truth: pair 0 disagrees, 1 disagrees, 2 left out (truth 0), 3 agrees -> 1/3
    assert o["global_truth_accuracy"] == pytest.approx(1 / 3) and o["global_truth_n_ties"] == 1
    assert p["global_truth_accuracy"] == 0.5


def test_evaluate_model_empty_pure_minority_is_nan_not_a_crash():
    with pytest.warns(UserWarning, match="'pure_minority' is empty"):
        rows = ev.evaluate_model([1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [1.0, 1.0], ["a", "b"],
                                 truth={"t": [1.0, 1.0]}, n_boot=50)
    pure = rows[1]
    assert pure["test_set"] == "pure_minority" and pure["n_pairs"] == 0
    assert math.isnan(pure["accuracy"]) and math.isnan(pure["ci_low"])
    assert math.isnan(pure["t_accuracy"])


def test_evaluate_model_checks_lengths():
    with pytest.raises(ValueError, match="users"):
        ev.evaluate_model([1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [1.0, 1.0], ["a"], n_boot=10)


def test_pair_outcomes_by_hand():
    # the pairs of test_evaluate_model_rows_by_hand, one row each
    out = ev.pair_outcomes([1.0, 0.0, 2.0, 1.0], [0.0, 1.0, 2.0, 0.0], [0.0, 2.0, 1.0, 0.0],
                           [1.0, 1.0, 1.0, 1.0], ["u1", "u1", "u2", "u3"],
                           truth={"global_truth": [-1.0, 1.0, 0.0, 1.0]})
    assert out["pair"].tolist() == [0, 1, 2, 3]
    assert out["correct"].tolist() == [True, False, False, True]  # pair 2 is a tie: wrong
    assert out["pure_minority"].tolist() == [True, False, False, True]
    # truth: pair 0 disagrees, 1 disagrees, 2 has no right answer (margin 0), 3 agrees
    np.testing.assert_array_equal(out["global_truth_correct"], [0.0, 0.0, np.nan, 1.0])
    assert out["global_truth_correct"].mean() == pytest.approx(1 / 3)  # evaluate_model's
    with pytest.raises(ValueError, match="differ in length"):
        ev.pair_outcomes([1.0], [0.0], [0.0], [1.0], ["a", "b"])


def _replicate_by_hand(t, n, users, seeds):
    """A replicate of macro_bootstrap for one country from explicit draws (lists of indices):
    m*_s = sum over drawn users of t[g, s] / sum of n[g, s]; the mean of the drawn seeds'."""
    per_seed = [sum(t[g][s] for g in users) / sum(n[g][s] for g in users)
                for s in range(len(t[0]))]
    return float(np.mean([per_seed[s] for s in seeds]))


def test_macro_bootstrap_matches_the_enumerated_resamples():
    """One country, 2 users x 2 seeds: every resample is one of the 4 ordered draws of users
    times the 4 ordered draws of seeds, each with probability 1/16. The bootstrap's replicates
    take exactly those values, with those frequencies."""
    # per pair: (user, seed, A - B); u1 has 2 pairs, u2 one
    rows = [("u1", 0, 1.0), ("u1", 0, 1.0), ("u2", 0, -1.0),
            ("u1", 1, 1.0), ("u1", 1, 0.0), ("u2", 1, 0.0)]
    users, seeds, values = zip(*rows)
    t = [[2.0, 1.0], [-1.0, 0.0]]  # t[g][s]: the sum of g's values at seed s
    n = [[2, 2], [1, 1]]
    exact = {}
    for ug in itertools.product([0, 1], repeat=2):
        for sg in itertools.product([0, 1], repeat=2):
            v = round(_replicate_by_hand(t, n, ug, sg), 12)
            exact[v] = exact.get(v, 0) + 1 / 16
    point, boots = ev.macro_bootstrap(values, ["Chile"] * 6, users, seeds, n_boot=40000, seed=0)
    # the point: seed 0's mean (2 - 1) / 3, seed 1's 1 / 3, their mean
    assert point == pytest.approx(1 / 3)
    got = pd.Series(np.round(boots, 12)).value_counts(normalize=True)
    assert set(got.index) == set(exact)
    for v, p in exact.items():
        assert got[v] == pytest.approx(p, abs=0.01), v
    mean = sum(v * p for v, p in exact.items())
    var = sum((v - mean) ** 2 * p for v, p in exact.items())
    assert boots.var() == pytest.approx(var, rel=0.03)


def test_macro_bootstrap_averages_countries_and_one_seed_is_kept():
    """Country X: every pair +1 (every replicate 1); country Y: u1 (two pairs, +1) and u2 (one,
    -1), one seed: 1, 1/3, -1 with probability 1/4, 1/2, 1/4; the macro mean is their mean."""
    values = [1.0, 1.0, 1.0, 1.0, -1.0]
    countries = ["X", "X", "Y", "Y", "Y"]
    users = ["a", "b", "u1", "u1", "u2"]
    point, boots = ev.macro_bootstrap(values, countries, users, [0] * 5, n_boot=20000, seed=1)
    assert point == pytest.approx((1 + 1 / 3) / 2)
    got = pd.Series(np.round(boots, 12)).value_counts(normalize=True)
    want = {round((1 + y) / 2, 12): p for y, p in ((1, 0.25), (1 / 3, 0.5), (-1, 0.25))}
    assert set(got.index) == set(want)
    for v, p in want.items():
        assert got[v] == pytest.approx(p, abs=0.015)
    # the 95 % percentile interval spans both ends; a 20 % one sits in the middle mass
    assert ev.percentile_interval(boots) == (0.0, 1.0)
    assert ev.percentile_interval(boots, 0.2) == pytest.approx((2 / 3, 2 / 3))


def test_macro_bootstrap_identical_seeds_add_no_width_but_users_do():
    """A source whose seeds repeat one scoring (the authors' models, scored once): the seeds
    give no spread, the test users still do; the interval is the users' alone."""
    rng = np.random.default_rng(0)
    d = (rng.random(60) < 0.55).astype(float) - (rng.random(60) < 0.5)
    users = np.repeat(np.arange(12), 5)
    one = ev.macro_bootstrap(d, ["C"] * 60, users, [0] * 60, n_boot=3000, seed=0)
    three = ev.macro_bootstrap(np.tile(d, 3), ["C"] * 180, np.tile(users, 3),
                               np.repeat([0, 1, 2], 60), n_boot=3000, seed=0)
    assert three[0] == pytest.approx(one[0])
    low, high = ev.percentile_interval(three[1])
    assert high - low > 0.1  # not the zero width of a seed-only interval
    # the same users' draws, the seeds' draws change nothing: the same interval
    assert (low, high) == pytest.approx(ev.percentile_interval(one[1]), abs=0.03)


def test_macro_bootstrap_shared_clusters_are_drawn_once_for_every_country():
    """Two countries' pools hold the same prompts; X's values are +v_g, Y's -v_g. Drawn once
    for both, every replicate's macro mean is 0; drawn apart, it is not."""
    v = np.array([3.0, -1.0, 0.5, 2.0])
    values = np.r_[v, -v]
    countries = ["X"] * 4 + ["Y"] * 4
    prompts = ["p1", "p2", "p3", "p4"] * 2
    _, shared = ev.macro_bootstrap(values, countries, prompts, [0] * 8, n_boot=500, seed=0,
                                   shared_clusters=True)
    np.testing.assert_allclose(shared, 0.0, atol=1e-12)
    _, apart = ev.macro_bootstrap(values, countries, prompts, [0] * 8, n_boot=500, seed=0)
    assert apart.std() > 0.3


def test_macro_bootstrap_is_seeded_vectorised_and_ignores_row_order():
    rng = np.random.default_rng(2)
    n = 600
    x = np.c_[rng.random(n) < 0.6, rng.random(n)]
    countries = rng.choice(["Chile", "Mexico", "Israel"], n)
    users = rng.integers(0, 25, n)
    seeds = rng.integers(0, 3, n)
    point, boots = ev.macro_bootstrap(x, countries, users, seeds, n_boot=400, seed=5)
    assert boots.shape == (400, 2) and point.shape == (2,)
    again = ev.macro_bootstrap(x, countries, users, seeds, n_boot=400, seed=5)
    np.testing.assert_array_equal(again[1], boots)
    perm = rng.permutation(n)
    shuffled = ev.macro_bootstrap(x[perm], countries[perm], users[perm], seeds[perm],
                                  n_boot=400, seed=5)
    np.testing.assert_allclose(shuffled[1], boots)
    # each column alone: the same draws
    np.testing.assert_allclose(ev.macro_bootstrap(x[:, 1], countries, users, seeds, n_boot=400,
                                                  seed=5)[1], boots[:, 1])
    assert not np.allclose(ev.macro_bootstrap(x, countries, users, seeds, n_boot=400,
                                              seed=6)[1], boots)
    with pytest.raises(ValueError, match="row 1"):
        ev.macro_bootstrap([1.0, np.nan], ["a", "a"], ["u", "v"], [0, 0])
    with pytest.raises(ValueError, match="n_boot"):
        ev.macro_bootstrap([1.0], ["a"], ["u"], [0], n_boot=0)
