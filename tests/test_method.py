"""The SCPO equations against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from scpo import method


def test_p_glo_by_hand():
    # sigma(1 - 0) = 1 / (1 + e^-1) = 0.7310585786300049
    assert method.p_glo([1.0], [0.0])[0] == pytest.approx(0.7310585786300049, abs=1e-15)
    # sigma(-2) = 1 / (1 + e^2) = 0.11920292202211755
    assert method.p_glo([0.5], [2.5])[0] == pytest.approx(0.11920292202211755, abs=1e-15)
    assert method.p_glo([3.0], [3.0])[0] == 0.5


def test_p_glo_does_not_overflow_where_the_released_form_does():
    # e^800 overflows float64; the released code's e^a / (e^a + e^b) gives nan here.
    with np.errstate(over="ignore", invalid="ignore"):
        released = np.exp(800.0) / (np.exp(800.0) + np.exp(799.0))
    assert math.isnan(released)
    # sigma(1) again, computed stably
    assert method.p_glo([800.0], [799.0])[0] == pytest.approx(0.7310585786300049)


def test_nan_scores_rejected():
    with pytest.raises(ValueError, match="NaN or infinite.*row 1"):
        method.p_glo([0.0, np.nan], [1.0, 1.0])


def test_filter_mask():
    p = np.array([0.1, 0.5, 0.69, 0.7, 0.9])
    assert method.filter_mask(p, 0.7).tolist() == [True, True, True, False, False]
    assert method.filter_mask(p, 1.0).all()


@pytest.mark.parametrize("tau", [0.0, -0.1, 1.01, float("nan")])
def test_tau_out_of_range(tau):
    with pytest.raises(ValueError, match="tau must be in \\(0, 1\\]"):
        method.filter_mask(np.array([0.5]), tau)


def test_scpo_weights_by_hand():
    # delta = -1.1, beta = 1.1: exp(-1) = 0.36787944117144233; delta >= 0 -> 1
    w = method.scpo_weights(np.array([-1.1, 0.0, 2.0, -2.2]), beta=1.1)
    assert w[0] == pytest.approx(0.36787944117144233, abs=1e-15)
    assert w[1] == 1.0 and w[2] == 1.0
    assert w[3] == pytest.approx(0.1353352832366127, abs=1e-15)  # exp(-2)
    # min(exp(delta/beta), 1) and exp(min(delta/beta, 0)) agree; the latter never overflows
    assert method.scpo_weights(np.array([1e6]), 1.1)[0] == 1.0


@pytest.mark.parametrize("beta", [0.0, -1.0])
def test_beta_must_be_positive(beta):
    with pytest.raises(ValueError, match="beta must be > 0"):
        method.scpo_weights(np.array([0.0]), beta)


def test_inverse_weights_by_hand():
    # max(exp(r- - r+), 1): delta = -2 -> e^2 = 7.38905609893065; delta = 1 -> 1
    w = method.inverse_weights(np.array([-2.0, 1.0, 0.0]))
    assert w[0] == pytest.approx(7.38905609893065, abs=1e-12)
    assert w[1] == 1.0 and w[2] == 1.0


def test_weighted_bt_loss_by_hand():
    rc = torch.tensor([1.0, 0.0], dtype=torch.float64)
    rr = torch.tensor([0.0, 0.0], dtype=torch.float64)
    w = torch.tensor([1.0, 0.5], dtype=torch.float64)
    # -log sigma(1) = 0.31326168751822286, -log sigma(0) = log 2 = 0.6931471805599453
    a, b = 0.31326168751822286, 0.6931471805599453
    batch = method.weighted_bt_loss(rc, rr, w, normalize="batch")
    assert batch.item() == pytest.approx((1.0 * a + 0.5 * b) / 2, abs=1e-15)
    by_w = method.weighted_bt_loss(rc, rr, w, normalize="weights")
    assert by_w.item() == pytest.approx((1.0 * a + 0.5 * b) / 1.5, abs=1e-15)
    assert method.weighted_bt_loss(rc, rr).item() == pytest.approx((a + b) / 2, abs=1e-15)
    with pytest.raises(ValueError, match="normalize"):
        method.weighted_bt_loss(rc, rr, w, normalize="sum")


def test_loss_gradient_pushes_margin_up_and_zero_weight_does_nothing():
    rc = torch.tensor([0.0, 0.0], requires_grad=True)
    rr = torch.zeros(2)
    method.weighted_bt_loss(rc, rr, torch.tensor([1.0, 0.0])).backward()
    # d/dr+ of -(1/2) w log sigma(r+ - r-) at 0 = -(1/2) w (1 - sigma(0)) = -w/4
    assert rc.grad.tolist() == [-0.25, 0.0]
