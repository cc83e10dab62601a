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


def test_random_weighted_keeps_the_same_draw_with_scpo_weights():
    for seed in (0, 1, 2):
        unweighted, weighted = big("random_subset", seed), big("random_weighted", seed)
        assert kept(weighted) == kept(unweighted)
    w, draw = big("random_weighted", 0), sorted(kept(big("random_subset", 0)))
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
