"""The paper's variants as data (spec §6), plus controls for data efficiency.

A variant says which training pairs a minority RM sees and how each is weighted:

| variant            | pairs                             | weight                         |
|--------------------|-----------------------------------|--------------------------------|
| global             | none (global RM)                  | -                              |
| baseline           | all                               | 1                              |
| filtered           | p_glo < tau                       | 1                              |
| inverse_weighted   | all                               | max(exp(-delta), 1)            |
| scpo_w             | all                               | exp(min(delta / beta, 0))      |
| scpo_fw            | p_glo < tau                       | exp(min(delta / beta, 0))      |
| scpo_fw_tuned      | p_glo < tau                       | SCPO, tau/beta/lr tuned on val |
| random_subset      | random, as many as filtered keeps | 1 (control of filtered)        |
| random_fw_weights  | the same random draw              | scpo_fw's weights, shuffled    |
| random_own_weights | the same random draw              | each pair's own SCPO weight    |
| baseline_tuned     | all                               | 1, lr tuned on val (control)   |

The controls are like-for-like: ``filtered`` against ``random_subset`` asks whether the
filter's pairs beat as many random pairs (both unweighted); ``scpo_fw`` against
``random_fw_weights`` asks the same with the very same weights on both sides (the same values,
so the same weight sum and step sizes under ``normalize = "batch"``): only the pairs differ.
``random_own_weights`` weighs its random pairs by their own SCPO weights; random pairs are
mostly ones the global RM already agrees with (W = 1), so it carries more weight than
``scpo_fw`` and mixes which pairs with how much weight (it was called ``random_weighted``).
Set against ``random_fw_weights`` (the same draw, other weights) it shows what SCPO's
weighting rule does on random pairs, against scpo_fw's weights placed at random: more weight
in all, most of it on pairs the global RM agrees with. ``baseline_tuned`` is the tuned
variant's control: the baseline given the same search of the learning rate on the same held-out
users (``scpo.experiment.tune_points``; tau and beta do not apply to it), so that what
``scpo_fw_tuned`` gains over it is not the search itself.
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
    # "none", "scpo", "inverse", or "scpo_shuffled" (filter "random" only): scpo_fw's own
    # weights (of the tau filter's pairs) shuffled onto the random draw
    weighting: str = "none"
    tuned: bool = False  # tau / beta / lr chosen per country on the validation split
    # the country RM is not this run's: given by model.minority_models, evaluated, never trained
    external: bool = False
    score_mode: str | None = None  # external RMs: score as this model.mode (None: the run's)
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
    Variant("random_fw_weights", "Random subset, SCPO (F+W)'s weights (control)",
            filter="random", weighting="scpo_shuffled", colour="#EAAE80"),
    Variant("random_own_weights", "Random subset, its own SCPO weights (control)",
            filter="random", weighting="scpo", colour="#F4D3BA"),
    Variant("baseline_tuned", "Baseline, learning rate tuned (control)", tuned=True,
            colour="#80B9D8"),
]}
# control -> the variant it is set against (``report.controls``)
CONTROLS = {"random_subset": "filtered", "random_fw_weights": "scpo_fw",
            "random_own_weights": "scpo_fw", "baseline_tuned": "scpo_fw_tuned"}
PAPER_VARIANTS = [n for n in VARIANTS if n not in CONTROLS]
RENAMED = {"random_weighted": "random_own_weights"}  # earlier name -> today's (old results)
# Evaluated, not trained: the authors' published country RMs (scpo.companion.published),
# scored in eval mode and, as the released code scored them, with dropout on (not part of "all")
EXTERNAL = {v.name: v for v in [
    Variant("published", "Published country RM (eval)", train=False, external=True,
            score_mode="fixed", colour="#882255"),
    Variant("published_dropout", "Published country RM (dropout on, as recorded)", train=False,
            external=True, score_mode="released", colour="#C77CA8"),
]}
KNOWN = {**VARIANTS, **EXTERNAL}  # every name a run accepts, in table order


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
    A "random" filter keeps a seeded random subset of exactly as many pairs as the tau filter
    (the same draw for every random variant of a seed); "scpo_shuffled" puts the tau filter's
    own SCPO weights on it in a seeded random order, so its weights are scpo_fw's, values and
    sum alike, on other pairs.
    """
    delta = method.margin(rg_chosen, rg_rejected)
    if variant.weighting == "scpo_shuffled" and variant.filter != "random":
        raise ValueError(f"variant {variant.name!r}: weighting 'scpo_shuffled' moves the tau "
                         "filter's weights onto a random draw; it needs filter 'random', got "
                         f"{variant.filter!r}")
    keep = np.ones(delta.shape, dtype=bool)
    if variant.filter != "none":
        keep = method.filter_mask(method.p_glo(rg_chosen, rg_rejected), tau)
    if variant.filter == "random":
        by_tau, keep = keep, np.zeros(delta.shape, dtype=bool)
        rng = np.random.default_rng(seed)
        drawn = rng.choice(delta.size, size=int(by_tau.sum()), replace=False)
        keep[drawn] = True
        if variant.weighting == "scpo_shuffled":
            w = np.zeros(delta.shape)
            w[drawn] = rng.permutation(method.scpo_weights(delta, beta)[by_tau])
            return w
    if variant.weighting == "scpo":
        w = method.scpo_weights(delta, beta)
    elif variant.weighting == "inverse":
        w = method.inverse_weights(delta)
    else:
        w = np.ones_like(delta)
    return np.where(keep, w, 0.0)
