"""Steering at inference: a dial alpha from the global RM (alpha = 0) to a country's (alpha = 1).

Two ways to turn it, both without training:

    r_a = steered_reward(r_glo, r_country, a)           # mix the rewards:  r_glo + a (r_c - r_glo)
    rm_a = interpolate_weights(global_rm, country_rm, a)  # mix the weights: a "model soup"

and ``dial`` evaluates the first over a grid of alpha, with the rows ``scpo.evaluate`` builds
for every other model. alpha may leave [0, 1]: alpha = 2 extrapolates past the country model.
For a linear head on a frozen encoder the two agree (the reward is linear in the weights); for
anything deeper they differ, and only the weights' mix is one model that can be exported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from scpo.evaluate import TRUTH_COLUMNS, _finite, _same_length, evaluate_model
from scpo.models.base import RewardModel


def _alpha(alpha: float) -> float:
    a = float(alpha)
    if not math.isfinite(a):
        raise ValueError(f"alpha must be a finite number (0 = global RM, 1 = country RM), got "
                         f"{alpha!r}")
    return a


def steered_reward(r_glo: Any, r_country: Any, alpha: float) -> np.ndarray:
    """r_a = r_glo + alpha (r_country - r_glo), float64, one per text.

    Computed as ``torch.lerp`` does (from the nearer end), so alpha = 0 and alpha = 1 give the
    global and the country scores bit for bit: the dial's end points are those models' rows.
    """
    g, c = _finite(r_glo, "r_glo"), _finite(r_country, "r_country")
    _same_length(r_glo=g, r_country=c)
    a = _alpha(alpha)
    d = c - g
    return g + a * d if a < 0.5 else c - (1.0 - a) * d


def mixes_agree(rm: RewardModel) -> bool:
    """Whether the two dials are one function for models like ``rm``: mixing the weights mixes
    the rewards only where the reward is linear in the weights, a linear head on a frozen
    encoder (``model.head = "linear"``). An MLP head or a transformer is not linear in them."""
    return rm.linear_in_weights


def interpolate_weights(global_model: RewardModel, country_model: RewardModel,
                        alpha: float) -> RewardModel:
    """A new model of the same class with weights theta_glo + alpha (theta_country - theta_glo).

    Every floating-point tensor of the state dict is mixed (``torch.lerp``: alpha = 0 and 1 give
    the end points bit for bit); the others (position ids) and the frozen weights (the partial
    tier's bottom layers, shared by copies) must be equal and are kept. Both models must come
    from one global RM: same class, keys, shapes, dtypes, encoder or tokenizer and options.
    LoRA models are refused (mixing A and B is not mixing B A); merge them first. The result is
    ``global_model.copy()`` with new weights and no cached fingerprint, so the score cache,
    keyed by the fingerprint, never returns another model's scores for it.
    """
    a = _alpha(alpha)
    if type(global_model) is not type(country_model):
        raise TypeError(f"cannot mix {type(global_model).__name__} and "
                        f"{type(country_model).__name__}: both must be of one tier (class)")
    glo, cty = global_model.torch_module(), country_model.torch_module()
    global_model.check_mixable(country_model)
    sg, sc = glo.state_dict(), cty.state_dict()
    if sg.keys() != sc.keys():
        only_g, only_c = sorted(sg.keys() - sc.keys()), sorted(sc.keys() - sg.keys())
        raise ValueError(f"state dicts differ: {len(only_g)} key(s) only in the global model "
                         f"(e.g. {only_g[:1]}), {len(only_c)} only in the country model (e.g. "
                         f"{only_c[:1]}); both must be the same architecture")
    frozen = {k for k, p in glo.named_parameters() if not p.requires_grad}
    out = global_model.copy()
    target = out.torch_module().state_dict()  # views of the copy's own tensors
    with torch.no_grad():
        for k, x in sg.items():
            y = sc[k]
            if x.shape != y.shape or x.dtype != y.dtype:
                raise ValueError(f"{k}: global {x.dtype}{tuple(x.shape)} vs country "
                                 f"{y.dtype}{tuple(y.shape)}; both must be the same architecture "
                                 "in the same precision")
            y = y.to(x.device)
            if torch.equal(x, y):
                continue  # the copy already holds it (and may share it with the global model)
            if not x.is_floating_point():
                raise ValueError(f"{k}: a {x.dtype} tensor that differs between the models and "
                                 "cannot be interpolated; both must be built alike (same config)")
            if k in frozen:
                raise ValueError(f"{k}: frozen in the global model but different in the country "
                                 "model, so it was not trained from this global RM; interpolate "
                                 "models that share their frozen weights")
            t = target[k]
            t.copy_(torch.lerp(x.to(t.device), y.to(t.device), a))
    out.weights_changed()  # copy() carries the global model's cached fingerprint over
    return out


def dial(test: pd.DataFrame, global_scores: tuple[Any, Any], country_scores: tuple[Any, Any],
         alphas: Sequence[float], *, users: str = "user_id", n_boot: int = 1000, seed: int = 0,
         level: float = 0.95) -> pd.DataFrame:
    """One country's accuracy along the dial: a row per alpha x test set.

    ``global_scores`` and ``country_scores`` are (r(x, y+), r(x, y-)) of the ``test`` pairs.
    Each alpha's steered scores go through ``scpo.evaluate.evaluate_model``, so the columns
    (test_set, accuracy as a fraction, ci_low, ci_high from the ``users`` bootstrap, n_pairs,
    ...; country_truth_accuracy and global_truth_accuracy when ``test`` has the simulator's
    truth margins) are those of every results table, after an ``alpha`` column. The
    pure-minority set is the GLOBAL RM's wrong pairs at every alpha, as elsewhere, and every
    alpha uses the same bootstrap resamples (``seed``), so neighbouring alphas compare fairly.
    """
    if len(alphas) == 0:
        raise ValueError("alphas is empty; pass the grid to evaluate, e.g. [0, 0.5, 1]")
    if users not in test.columns:
        raise KeyError(f"test has no user column {users!r} (the bootstrap resamples users); "
                       f"have {list(test.columns)}")
    (gc, gr), (cc, cr) = global_scores, country_scores
    truth = {name: test[col].to_numpy() for name, col in TRUTH_COLUMNS.items()
             if col in test.columns}
    ids = test[users].astype(str).to_numpy()
    rows = []
    for a in alphas:
        rows += [{"alpha": _alpha(a), **row} for row in evaluate_model(
            steered_reward(gc, cc, a), steered_reward(gr, cr, a), gc, gr, ids,
            truth=truth or None, n_boot=n_boot, seed=seed, level=level)]
    return pd.DataFrame(rows)
