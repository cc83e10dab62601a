"""Training weights per variant, by hand."""

import numpy as np
import pytest

from scpo.variants import VARIANTS, resolve, training_weights

# delta = r+ - r- = [2, 0, -1.1, -3]; p_glo = sigma(delta) = [0.881, 0.5, 0.250, 0.047]
RC = np.array([2.0, 0.0, 0.0, 0.0])
RR = np.array([0.0, 0.0, 1.1, 3.0])


def w(name, tau=0.7, beta=1.1, seed=0):
    return training_weights(VARIANTS[name], RC, RR, tau, beta, seed)


def test_baseline_and_filtered():
    assert w("baseline").tolist() == [1, 1, 1, 1]
    assert w("filtered").tolist() == [0, 1, 1, 1]  # p = 0.881 >= 0.7 dropped
    assert w("filtered", tau=0.5).tolist() == [0, 0, 1, 1]  # p = 0.5 is not < 0.5


def test_scpo_weights_and_filter():
    e = np.exp(-1.0)  # delta / beta = -1.1 / 1.1
    np.testing.assert_allclose(w("scpo_w"), [1, 1, e, np.exp(-3 / 1.1)], rtol=1e-15)
    np.testing.assert_allclose(w("scpo_fw"), [0, 1, e, np.exp(-3 / 1.1)], rtol=1e-15)


def test_inverse_weighted():
    np.testing.assert_allclose(w("inverse_weighted"), [1, 1, np.exp(1.1), np.exp(3.0)],
                               rtol=1e-15)


def test_random_fw_weights_carries_scpo_fw_s_own_weights_on_the_random_draw():
    # scpo_fw at tau 0.7, beta 1.1 keeps delta = 0, -1.1, -3 with W = exp(delta / 1.1):
    # 1, exp(-1) = 0.3678794412, exp(-2.7272727) = 0.0653974032; sum 1.4332768444
    by_hand = [0.0653974032, 0.3678794412, 1.0]
    assert w("scpo_fw").sum() == pytest.approx(1.4332768444, abs=1e-10)
    orders = set()
    for seed in range(6):
        ctl = w("random_fw_weights", seed=seed)
        assert kept(ctl) == kept(w("random_subset", seed=seed))  # the random subset's draw
        np.testing.assert_allclose(sorted(ctl[ctl > 0]), by_hand, atol=1e-10)
        assert ctl.sum() == pytest.approx(1.4332768444, abs=1e-10)
        np.testing.assert_array_equal(ctl, w("random_fw_weights", seed=seed))  # seeded
        orders.add(tuple(ctl))
    assert len(orders) > 1  # the pairs and the order of the weights follow the seed
    # on 200 pairs: scpo_fw's weight sum 20 x (1 + e^-0.5 + e^-1 + e^-1.5 + e^-2) = 46.6575109
    # (the filter keeps 20 pairs of each delta 0, -0.55, ..., -2.2); the random draw's own
    # weights sum to more, as half its pairs are ones the global RM agrees with (W = 1)
    for seed in range(3):
        assert big("scpo_fw", seed).sum() == pytest.approx(46.6575108854, abs=1e-9)
        assert big("random_fw_weights", seed).sum() == pytest.approx(46.6575108854, abs=1e-9)
        assert big("random_own_weights", seed).sum() > 60
        assert kept(big("random_fw_weights", seed)) == kept(big("random_own_weights", seed))


def test_shuffled_weights_need_a_random_draw():
    from scpo.variants import Variant

    with pytest.raises(ValueError, match="needs filter 'random'"):
        training_weights(Variant("x", "x", filter="tau", weighting="scpo_shuffled"), RC, RR,
                         0.7, 1.1)


def test_random_subset_keeps_as_many_as_the_filter_and_is_seeded():
    a, b = w("random_subset", seed=1), w("random_subset", seed=1)
    assert (a > 0).sum() == (w("filtered") > 0).sum() == 3
    assert a.tolist() == b.tolist()
    assert set(np.unique(a)) <= {0.0, 1.0}


def test_resolve():
    assert [v.name for v in resolve(["all"])] == list(VARIANTS)
    with pytest.raises(KeyError, match="unknown variant.*'scpo'"):
        resolve(["scpo"])


# 200 pairs; the even ones have delta = r+ - r- in {0, -0.55, -1.1, -1.65, -2.2}, so
# p_glo = sigma(delta) <= 0.5 < tau = 0.7 and the filter keeps them; the odd ones have
# delta in {1, 2, 3}, p_glo >= sigma(1) = 0.731, dropped. The filter keeps exactly the 100 even
# pairs. A random draw of 100 of 200 equals that set with probability 1 / C(200, 100) ~ 1e-59.
N = 200
IDX = np.arange(N)
DELTA = np.where(IDX % 2 == 0, -0.55 * ((IDX // 2) % 5), 1.0 + IDX % 3)
BIG_RC, BIG_RR = DELTA + 0.25, np.full(N, 0.25)  # an offset common to both sides cancels
EVEN = set(range(0, N, 2))


def big(name, seed, tau=0.7, beta=1.1):
    return training_weights(VARIANTS[name], BIG_RC, BIG_RR, tau, beta, seed)


def kept(w):
    return set(np.flatnonzero(w > 0).tolist())


def test_random_subset_is_a_new_draw_of_the_filters_size_not_the_filters_pairs():
    assert kept(big("filtered", seed=0)) == EVEN
    draws = {seed: kept(big("random_subset", seed)) for seed in range(5)}
    for seed, draw in draws.items():
        assert len(draw) == 100, seed
        assert draw != EVEN, f"seed {seed}: the random subset is the filter's own pairs"
        # a fair draw keeps about half of the filter's pairs, far from all of them
        assert 30 <= len(draw & EVEN) <= 70, (seed, len(draw & EVEN))
        np.testing.assert_array_equal(big("random_subset", seed), big("random_subset", seed))
        assert set(np.unique(big("random_subset", seed))) == {0.0, 1.0}  # unweighted
    assert len({frozenset(d) for d in draws.values()}) == 5  # every seed its own draw
    # its size follows the filter: at tau = 0.5 only delta < 0 is kept (80 of the even pairs)
    assert len(kept(big("filtered", 0, tau=0.5))) == 80
    assert len(kept(big("random_subset", 3, tau=0.5))) == 80


def test_random_own_weights_keeps_the_same_draw_with_its_own_scpo_weights():
    for seed in (0, 1, 2):
        unweighted, weighted = big("random_subset", seed), big("random_own_weights", seed)
        assert kept(weighted) == kept(unweighted)
    w, draw = big("random_own_weights", 0), sorted(kept(big("random_subset", 0)))
    # W = exp(min(delta / beta, 0)), beta = 1.1, by hand:
    #   delta = 0     -> exp(0)    = 1           delta = -0.55 -> exp(-0.5) = 0.6065306597
    #   delta = -1.1  -> exp(-1)   = 0.3678794412  delta = -1.65 -> exp(-1.5) = 0.2231301601
    #   delta = -2.2  -> exp(-2)   = 0.1353352832  delta = 1, 2, 3 (not in the filter) -> 1
    by_hand = {0.0: 1.0, -0.55: 0.6065306597, -1.1: 0.3678794412, -1.65: 0.2231301601,
               -2.2: 0.1353352832, 1.0: 1.0, 2.0: 1.0, 3.0: 1.0}
    seen = set()
    for i in draw:
        d = round(float(DELTA[i]), 2)
        assert w[i] == pytest.approx(by_hand[d], abs=1e-10), (i, d)
        seen.add(d)
    assert seen == set(by_hand)  # this draw holds every kind of pair, dropped ones included
    assert (w[[i for i in range(N) if i not in draw]] == 0).all()
