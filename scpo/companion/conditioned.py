"""One reward model for every country, r(x, y | c), steered at inference by naming c.

The per-country models of ``scpo.experiment`` are one copy of the global RM per country. Here a
single model (``scpo.models.ConditionedRM``: a country vector per country on the embedding
tier, the country written into the prompt on the hf and partial tiers) is trained on every
country's SCPO-weighted pairs at once and told which country it scores for:

    pairs, counts = conditioned_training_set(prep, countries, tau, beta)  # one weighted table
    out = run_conditioned(prep, countries, seeds)      # rows as run_country's, variant
                                                       # "conditioned" ("conditioned_loo")
    cross_country(model, prep, countries)              # asked-for country x test country
    per_country_seconds(prep, countries, seed)         # the per-country models' training time

``model.for_country(c)`` is the ``RewardModel`` that scores for c, so
``scpo.experiment.evaluate_on_test`` evaluates it as it does a per-country model.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from scpo import experiment
from scpo.config import check_seeds
from scpo.experiment import country_splits, evaluate_on_test, result_rows, training_counts
from scpo.models import ConditionedRM, TrainHistory, UnknownCountryWarning, build_conditioned
from scpo.models.base import country_list
from scpo.outdir import claim
from scpo.results import test_accuracies, write_run_files
from scpo.scoring import RunInputs, prepare_without
from scpo.variants import VARIANTS, training_weights

VARIANT, VARIANT_LOO = "conditioned", "conditioned_loo"  # the results' variant names
GLOBAL_LOO = "global_loo"  # a global RM trained without the left-out countries (if retrained)


# ---- training data ----

def _left_out(leave_out: str | Collection[str] | None, countries: list[str]) -> set[str]:
    out = {leave_out} if isinstance(leave_out, str) else set(leave_out or ())
    stray = sorted(out - set(countries))
    if stray:
        raise ValueError(f"leave_out names {stray}, which are not among the countries "
                         f"{countries}; leave out one of those")
    if out >= set(countries):
        raise ValueError(f"leave_out {sorted(out)} leaves no country to train on; keep at least "
                         f"one of {countries}")
    return out


def conditioned_training_set(prep: RunInputs, countries: Sequence[str], tau: float, beta: float,
                             leave_out: str | Collection[str] | None = None
                             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pairs, counts): every training country's kept training pairs in one table, with its
    ``country`` and SCPO weight ``weight``, and per country what was kept of what
    (``experiment.training_counts``) and whether it was left out.

    The weights are ``scpo_fw``'s (filter p_glo < tau, W = min(exp(delta / beta), 1)) from the
    SHARED global RM's scores ``rg_chosen`` / ``rg_rejected``, so each country's pairs carry
    exactly the weights its per-country model trains with; pairs of weight 0 are dropped and
    counted. ``leave_out`` countries contribute nothing (their counts row says so).
    """
    countries = country_list(countries)
    out = _left_out(leave_out, countries)
    parts, rows = [], []
    for c in countries:
        train = country_splits(prep, c)["train"]
        w = training_weights(VARIANTS["scpo_fw"], train["rg_chosen"].to_numpy(),
                             train["rg_rejected"].to_numpy(), tau, beta)
        keep = (w > 0) & (c not in out)
        parts.append(train[keep].assign(weight=w[keep]))
        rows.append({"country": c, **training_counts(train, keep, float(w[keep].sum())),
                     "left_out": c in out})
    counts = pd.DataFrame(rows)
    pairs = pd.concat(parts, ignore_index=True)
    if pairs.empty:
        raise ValueError(f"no training pair: at tau={tau} the filter keeps 0 of "
                         f"{int(counts.loc[~counts.left_out, 'n_train'].sum())} training pairs of "
                         f"{counts.loc[~counts.left_out, 'country'].tolist()} (left out: "
                         f"{sorted(out)}); raise tau or add countries")
    empty = counts.loc[(counts.n_kept == 0) & ~counts.left_out, "country"].tolist()
    if empty:
        warnings.warn(f"the filter at tau={tau} keeps no training pair of {empty}: the model "
                      "learns nothing of them (a country vector stays 0); raise tau",
                      stacklevel=2)
    return pairs, counts


# ---- runs and the cross-country matrix ----

@dataclass
class ConditionedRun:
    """What ``run_conditioned`` produced."""

    results: pd.DataFrame  # run_country's columns, variant "conditioned" / "conditioned_loo"
    counts: pd.DataFrame  # per country: training pairs, kept, weight sum, left out
    max_steps: int  # optimizer steps of each seed's model
    n_parameters: int  # trained numbers of the one conditioned model
    per_country_parameters: int  # ... of the per-country models it replaces, together
    train_seconds: dict[int, float] = field(default_factory=dict)  # seed -> fit() time
    histories: dict[int, TrainHistory] = field(default_factory=dict)  # seed -> fit() log
    models: dict[int, ConditionedRM] = field(default_factory=dict)
    exported: dict[int, str] = field(default_factory=dict)  # seed -> checkpoint directory
    # left-out countries that the run's global pool held, so the model started from (and was
    # filtered and weighted by) a global RM trained without them (scoring.prepare_without)
    pool_without: list[str] = field(default_factory=list)


def run_conditioned(prep: RunInputs, countries: Sequence[str] | None = None,
                    seeds: Sequence[int] | None = None, *,
                    leave_out: str | Collection[str] | None = None,
                    template: str | None = None, keep_models: bool = False,
                    export_dir: str | Path | None = None, overwrite: bool = False,
                    progress: bool = False) -> ConditionedRun:
    """One conditioned model per seed, trained on every country's SCPO pairs (tier:
    ``prep.cfg.model.backend``), evaluated on each country's test pairs asked for that country.

    Rows have exactly ``run_country``'s columns (variant "conditioned", or "conditioned_loo"
    for a ``leave_out`` country, which the model never saw: n_kept 0), so the two concatenate.
    A left-out country stays unseen by the global RM too: where the run's global pool holds it
    (GlobalOpinionQA), the model starts from, and is filtered and weighted by, a global RM
    trained without it (``scoring.prepare_without``; ``pool_without`` names them), whose own
    rows are variant "global_loo". Every model is tested on the run's test pairs (its
    pure-minority pairs are those of the run's global RM).
    Budget: ``train.max_steps`` x the number of training countries steps of ``train.batch_size``
    pairs at ``train.lr``: as many steps and pairs as the per-country models together (not
    epochs: per-country runs count steps too). ``export_dir`` (hf and partial tiers) writes each
    seed's model as a standard checkpoint under ``<export_dir>/conditioned/seed<k>``
    (``overwrite``: into a folder of the user's, ``scpo.outdir``).
    """
    cfg = prep.cfg
    countries = country_list(countries if countries is not None else prep.countries)
    seeds = list(seeds if seeds is not None else cfg.run.seeds)
    if not seeds:
        raise ValueError("seeds is empty; pass at least one training seed")
    check_seeds(seeds, "seeds")
    if export_dir is not None and not prep.global_rm.can_export:
        raise ValueError("export_dir needs model.backend 'hf' or 'partial': the embedding tier's "
                         "model is a head on frozen embeddings, not a standard checkpoint")
    if export_dir is not None:  # refused before training if the folder is the user's
        claim(export_dir, overwrite=overwrite, what="exported checkpoints")
    tau, beta, lr = cfg.method.tau, cfg.method.beta, cfg.train.lr
    tests = {c: country_splits(prep, c)["test"] for c in countries}  # fails before training
    start, pool_without = prepare_without(prep, _left_out(leave_out, countries))
    pairs, counts = conditioned_training_set(start, countries, tau, beta, leave_out)
    trained = counts.loc[~counts["left_out"], "country"].tolist()
    train = dataclasses.replace(cfg.train, max_steps=cfg.train.max_steps * len(trained))
    per_country = len(trained) * prep.global_rm.n_trainable
    out: ConditionedRun | None = None
    rows: list[dict[str, Any]] = []
    for seed in tqdm(seeds, desc="conditioned", disable=not progress):
        model = build_conditioned(start.global_rm, trained, template)
        t0 = time.perf_counter()
        hist = model.fit(pairs, pairs["weight"].to_numpy(copy=True), train, cfg.method, seed)
        seconds = time.perf_counter() - t0
        if out is None:
            out = ConditionedRun(pd.DataFrame(), counts, train.max_steps, model.n_trainable,
                                 per_country, pool_without=pool_without)
        out.train_seconds[seed], out.histories[seed] = seconds, hist
        for n in counts.to_dict("records"):
            c, on = n.pop("country"), {k: v for k, v in n.items() if k != "left_out"}
            with warnings.catch_warnings():  # a left-out country: its variant name says so
                warnings.simplefilter("ignore", UnknownCountryWarning)
                evaluated = evaluate_on_test(prep, model.for_country(c), tests[c], seed, c)
            rows += result_rows(evaluated, country=c, seed=seed, counts=on, tau=tau,
                                beta=beta, lr=lr,
                                variant=VARIANT_LOO if n["left_out"] else VARIANT)
            if c in pool_without:  # the global RM it started from, on the same test pairs
                nothing = np.zeros(on["n_train"], dtype=bool)  # it trained on no pair
                rows += result_rows(
                    evaluate_on_test(prep, start.global_rm, tests[c], seed, c), country=c,
                    variant=GLOBAL_LOO, seed=seed, tau=tau, beta=beta, lr=lr,
                    counts=training_counts(country_splits(start, c)["train"], nothing, 0.0))
        out.results = pd.DataFrame(rows)
        if export_dir is not None:
            path = Path(export_dir) / VARIANT / f"seed{seed}"
            card = conditioned_card(out.results, counts, train.max_steps, seed)
            out.exported[seed] = str(model.export(path, card, overwrite=overwrite))
        if keep_models:
            out.models[seed] = model
        del model
    assert out is not None  # seeds is not empty
    return out


def cross_country(model: ConditionedRM, prep: RunInputs,
                  countries: Sequence[str] | None = None) -> pd.DataFrame:
    """Overall accuracy of ``model`` asked for country A (rows, "asked_for") on the test pairs
    of country B (columns, "tested_on"): ``experiment.cross_country`` of its views, as the
    cross-country chapter tests the per-country models. Steerable: each column best on its
    diagonal."""
    countries = country_list(countries if countries is not None else prep.countries)
    test = pd.concat([country_splits(prep, c)["test"] for c in countries], ignore_index=True)
    cross = experiment.cross_country({a: model.for_country(a) for a in countries}, test)
    return (cross.pivot(index="trained_on", columns="tested_on", values="overall")
            .loc[countries, countries].rename_axis(index="asked_for", columns="tested_on"))


def per_country_seconds(prep: RunInputs, countries: Sequence[str], seed: int,
                        variant: str = "scpo_fw") -> float:
    """The time the per-country models of ``variant`` take to train, together: each country's
    ``fit`` alone, on its kept training pairs at the run's tau and beta, from a copy of the
    global RM, with ``seed``: measured as ``run_conditioned`` measures its one model's (its
    ``train_seconds``), on this machine."""
    cfg, total = prep.cfg, 0.0
    for c in countries:
        train = country_splits(prep, c)["train"]
        w = training_weights(VARIANTS[variant], train["rg_chosen"].to_numpy(),
                             train["rg_rejected"].to_numpy(), cfg.method.tau, cfg.method.beta)
        model = prep.global_rm.copy()
        t0 = time.perf_counter()
        model.fit(train[w > 0].reset_index(drop=True), w[w > 0], cfg.train, cfg.method, seed=seed)
        total += time.perf_counter() - t0
    return total


# ---- what it writes ----

def conditioned_card(results: pd.DataFrame, counts: pd.DataFrame, max_steps: int,
                     seed: int) -> dict[str, Any]:
    """The model card's record of one seed's conditioned model: its settings, the pairs kept
    of each country (``counts``), the left-out countries and each country's test accuracies
    (its ``results`` rows)."""
    res = results[results["seed"] == seed]
    return {"tau": float(res["tau"].iloc[0]), "beta": float(res["beta"].iloc[0]),
            "lr": float(res["lr"].iloc[0]), "max_steps": max_steps,
            "pairs_kept": int(counts["n_kept"].sum()),
            "pairs_kept_by_country": dict(zip(counts["country"],
                                              counts["n_kept"].astype(int).tolist())),
            "left_out": counts.loc[counts["left_out"], "country"].tolist(),
            "seeds": [int(seed)],
            "test_accuracy": {c: test_accuracies(g.to_dict("records"))
                              for c, g in res.groupby("country", sort=False)}}


def write_conditioned(out: str | Path, res: pd.DataFrame, counts: pd.DataFrame,
                      record: dict[str, Any], overwrite: bool = False) -> None:
    """What ``scpo conditioned`` writes (``run_conditioned``'s), as one set
    (``write_run_files``): the rows (as ``scpo run``'s), the per-country counts and the record."""
    write_run_files(Path(out), {
        "results.parquet": lambda p: res.to_parquet(p, index=False),
        "results.csv": lambda p: res.to_csv(p, index=False, float_format="%.10g"),
        "counts.csv": lambda p: counts.to_csv(p, index=False)}, record, overwrite)
