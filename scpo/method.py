"""The SCPO equations, one small pure function each (paper §3; spec §3-§5).

Notation: for a pair (x, y+, y-) the global RM gives r+ = r_glo(x, y+) and r- = r_glo(x, y-);
delta = r+ - r-. Everything here works on numpy arrays except the loss, which is torch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit


def margin(r_chosen: np.ndarray, r_rejected: np.ndarray) -> np.ndarray:
    """delta = r_glo(x, y+) - r_glo(x, y-); raises on NaN so no pair is silently mis-scored."""
    r_chosen = np.asarray(r_chosen, dtype=np.float64)
    r_rejected = np.asarray(r_rejected, dtype=np.float64)
    delta = r_chosen - r_rejected
    bad = np.flatnonzero(~np.isfinite(delta))
    if bad.size:
        raise ValueError(
            f"{bad.size} pair(s) have a NaN or infinite global-RM score (first at row {bad[0]}); "
            "rescore them or drop them explicitly before filtering."
        )
    return delta


def p_glo(r_chosen: np.ndarray, r_rejected: np.ndarray) -> np.ndarray:
    """p_glo(y+ > y- | x) = sigma(r+ - r-).

    Equal to e^{r+} / (e^{r+} + e^{r-}) but computed as a logistic of the difference, which
    does not overflow for large rewards (the released code's form does; spec §8.6).
    """
    return expit(margin(r_chosen, r_rejected))


def check_tau(tau: float) -> float:
    if not (0.0 < float(tau) <= 1.0) or np.isnan(tau):
        raise ValueError(f"tau must be in (0, 1], got {tau!r}; tau=1 keeps every pair, 0.5 keeps "
                         "pairs the global RM gets wrong.")
    return float(tau)


def check_beta(beta: float) -> float:
    if not float(beta) > 0.0:
        raise ValueError(f"beta must be > 0, got {beta!r}; the paper uses beta = 1.10.")
    return float(beta)


def filter_mask(p: np.ndarray, tau: float) -> np.ndarray:
    """Keep a pair iff p_glo < tau: the pairs the global RM does not already agree with.

    With tau = 1 every pair with p_glo < 1 is kept (all of them unless p_glo rounds to 1).
    """
    return np.asarray(p) < check_tau(tau)


def scpo_weights(delta: np.ndarray, beta: float) -> np.ndarray:
    """W = min(exp(delta / beta), 1) = exp(min(delta / beta, 0)).

    Pairs the global RM agrees with (delta >= 0) keep weight 1; the more strongly it disagrees,
    the less the pair counts, damping outliers. The second form never overflows.
    """
    delta = np.asarray(delta, dtype=np.float64)
    return np.exp(np.minimum(delta / check_beta(beta), 0.0))


def inverse_weights(delta: np.ndarray) -> np.ndarray:
    """Ablation, the opposite idea: W = max(exp(-delta), 1), unbounded (spec §4).

    Strong disagreement with the global RM counts more. Large margins give huge weights; that
    is the point of the ablation, so it is not clipped.
    """
    delta = np.asarray(delta, dtype=np.float64)
    return np.exp(np.maximum(-delta, 0.0))


def weighted_bt_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    weights: torch.Tensor | None = None,
    normalize: str = "batch",
) -> torch.Tensor:
    """L = -(1/N) sum_i W_i log sigma(r(x_i, y+_i) - r(x_i, y-_i)).

    ``normalize="batch"`` divides by the batch size N, as the paper's code does (spec §5), so a
    batch of small weights takes a small step; ``"weights"`` divides by sum W instead, a weighted
    mean whose step size does not depend on how many pairs were down-weighted.
    """
    logp = F.logsigmoid(r_chosen - r_rejected)
    if weights is None:
        return -logp.mean()
    weights = weights.to(logp.dtype)
    if normalize == "batch":
        return -(weights * logp).mean()
    if normalize == "weights":
        return -(weights * logp).sum() / weights.sum().clamp_min(torch.finfo(logp.dtype).tiny)
    raise ValueError(f"normalize must be 'batch' or 'weights', got {normalize!r}")
