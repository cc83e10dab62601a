"""The paper's variants as data (spec §6), plus a control for data efficiency.

A variant says which training pairs a minority RM sees and how each is weighted:

| variant            | pairs              | weight                        |
|--------------------|--------------------|-------------------------------|
| global             | none (global RM)   | -                             |
| baseline           | all                | 1                             |
| filtered           | p_glo < tau        | 1                             |
| inverse_weighted   | all                | max(exp(-delta), 1)           |
| scpo_w             | all                | exp(min(delta / beta, 0))     |
| scpo_fw            | p_glo < tau        | exp(min(delta / beta, 0))     |
| scpo_fw_tuned      | p_glo < tau        | SCPO, tau/beta/lr tuned on val|
| random_subset      | random, as many as filtered keeps | 1 (control of filtered)   |
| random_weighted    | random, as many as filtered keeps | SCPO (control of scpo_fw) |

The two controls are like-for-like: ``filtered`` against ``random_subset`` asks whether the
filter's pairs beat as many random pairs (both unweighted); ``scpo_fw`` against
``random_weighted`` asks the same with SCPO's weights on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scpo import method


@dataclass(frozen=True)
class Variant:
    name: str
    label: str  # as in the paper's tables
    train: bool = True  # False: the global RM as it is
    filter: str = "none"  # "none", "tau" (p_glo < tau) or "random" (same count as "tau")
    weighting: str = "none"  # "none", "scpo" or "inverse"
    tuned: bool = False  # tau / beta / lr chosen per country on the validation split
    given: bool = False  # a country RM given by model.minority_models, evaluated, never trained
    score_mode: str | None = None  # given RMs: score as this model.mode (None: the run's)
    colour: str = "0.5"  # in every figure (Okabe-Ito; a control is its match, lighter)


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("global", "Global RM", train=False, colour="#7f7f7f"),
    Variant("baseline", "Baseline (full fine-tune)", colour="#0072B2"),
    Variant("filtered", "Filtered only", filter="tau", colour="#E69F00"),
    Variant("inverse_weighted", "Inverse-weighted only", weighting="inverse",
            colour="#CC79A7"),
    Variant("scpo_w", "SCPO (W)", weighting="scpo", colour="#56B4E9"),
    Variant("scpo_fw", "SCPO (F+W)", filter="tau", weighting="scpo", colour="#D55E00"),
    Variant("scpo_fw_tuned", "SCPO (F+W) tuned", filter="tau", weighting="scpo", tuned=True,
            colour="#009E73"),
    Variant("random_subset", "Random subset (control)", filter="random", colour="#F5CF80"),
    Variant("random_weighted", "Random subset, SCPO weights (control)", filter="random",
            weighting="scpo", colour="#EAAE80"),
]}
CONTROLS = {"random_subset": "filtered", "random_weighted": "scpo_fw"}  # control -> its match
PAPER_VARIANTS = [n for n in VARIANTS if n not in CONTROLS]
# Evaluated, not trained: the authors' published country RMs (scpo.published), scored in eval
# mode and, as the released code scored them, with dropout on (not part of "all")
GIVEN = {v.name: v for v in [
    Variant("published", "Published country RM (eval)", train=False, given=True,
            score_mode="fixed", colour="#882255"),
    Variant("published_dropout", "Published country RM (dropout on, as recorded)", train=False,
            given=True, score_mode="released", colour="#C77CA8"),
]}
KNOWN = {**VARIANTS, **GIVEN}  # every name a run accepts, in table order


def resolve(names: list[str]) -> list[Variant]:
    """Variant names (or "all") -> Variants; an unknown name lists the known ones."""
    if names == ["all"] or names == "all":
        return list(VARIANTS.values())
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        raise KeyError(f"unknown variant(s) {unknown}; known: {list(KNOWN)} or 'all'")
    return [KNOWN[n] for n in names]


def training_weights(
    variant: Variant,
    rg_chosen: np.ndarray,
    rg_rejected: np.ndarray,
    tau: float,
    beta: float,
    seed: int = 0,
) -> np.ndarray:
    """Per-pair training weight; 0 means the pair is not used (filtered out).

    The filter and the weights both read the global RM's scores of the training pairs.
    ``random_subset`` keeps a seeded random subset of exactly as many pairs as the tau filter.
    """
    delta = method.margin(rg_chosen, rg_rejected)
    keep = np.ones(delta.shape, dtype=bool)
    if variant.filter == "tau":
        keep = method.filter_mask(method.p_glo(rg_chosen, rg_rejected), tau)
    elif variant.filter == "random":
        n_keep = int(method.filter_mask(method.p_glo(rg_chosen, rg_rejected), tau).sum())
        rng = np.random.default_rng(seed)
        keep = np.zeros(delta.shape, dtype=bool)
        keep[rng.choice(delta.size, size=n_keep, replace=False)] = True
    if variant.weighting == "scpo":
        w = method.scpo_weights(delta, beta)
    elif variant.weighting == "inverse":
        w = method.inverse_weights(delta)
    else:
        w = np.ones_like(delta)
    return np.where(keep, w, 0.0)
