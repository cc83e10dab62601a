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
