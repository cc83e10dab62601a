"""Run the paper's variants for countries x seeds and collect tidy, traceable results.

    prep = prepare(cfg)                  # pairs, the global RM, its scores (scpo.scoring)
    run_country(prep, "Chile")           # every variant x seed for one country
    run(cfg, out_dir)                    # all countries; writes results + a JSON record

prepare -> weights -> train (and tune) -> evaluate, for one country -> every country. What a
run writes (results, record, saved and exported models) and what the chapters reopen is
``scpo.results``.

One row per country x variant x seed x test set ("overall", "pure_minority").
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from scpo import evaluate, method, models
from scpo.config import Config, check_seeds
from scpo.evaluate import TRUTH_COLUMNS
from scpo.models import RewardModel
from scpo.models.device import is_main_process
from scpo.pairs import require_test_pairs, select_country
from scpo.results import (
    CountryRun,
    Reopened,
    check_results_dir,
    claim_results_dir,
    country_slug,
    export_model,
    export_variants,
    model_dir,
    run_record,
    save_model,
    write_results,
)
from scpo.scoring import RunInputs, prepare
from scpo.variants import Variant, resolve, training_weights


class EmptyFilterError(ValueError):
    """A variant's filter kept no training pair."""


def country_splits(prep: RunInputs, country: str) -> dict[str, pd.DataFrame]:
    """A country's pairs: "train" (every training pair: what each variant trains on), "test",
    and the tuned variant's inner split of the training users, "fit" and "val"."""
    sub = select_country(prep.pairs, country)
    require_test_pairs(sub, country)
    train = sub[sub["split"] == "train"]
    return {"train": train.reset_index(drop=True),
            "test": sub[sub["split"] == "test"].reset_index(drop=True),
            "fit": train[~train["tune_val"]].reset_index(drop=True),
            "val": train[train["tune_val"]].reset_index(drop=True)}


def check_runnable(prep: RunInputs, countries: Collection[str],
                   variants: Sequence[Variant]) -> None:
    """Fail before any training if a requested country cannot be run as configured
    (``variants``: ``run.variants`` resolved).

    Each country needs test pairs; each filtering variant must keep a training pair at tau; the
    tuned variant needs validation and fitting pairs and a grid point that keeps a pair. Every
    failing country is named in one message, so a long run does not stop half-way.
    """
    cfg = prep.cfg
    problems = []
    for country in countries:
        sub = select_country(prep.pairs, country)  # an unknown country lists the known ones
        train = sub[sub["split"] == "train"]
        why = []
        if not (sub["split"] == "test").any():
            why.append(f"no test pairs ({len(sub)} training pairs)")
        if train.empty and any(v.train for v in variants):
            why.append("no training pairs")
        elif any(v.filter != "none" and not v.tuned for v in variants):
            rc, rr = train["rg_chosen"].to_numpy(), train["rg_rejected"].to_numpy()
            n = min(int((training_weights(v, rc, rr, cfg.method.tau, cfg.method.beta) > 0).sum())
                    for v in variants if v.filter != "none" and not v.tuned)
            if n == 0:
                why.append(f"the filter at tau={cfg.method.tau} keeps 0 of {len(train)} "
                           "training pairs (raise tau)")
        tuned = [v for v in variants if v.tuned]
        if tuned and not train.empty:
            fit, val = train[~train["tune_val"]], train[train["tune_val"]]
            if val.empty or fit.empty:
                why.append(f"the tuned variants need both tuning splits ({len(fit)} fitting, "
                           f"{len(val)} validation pairs; set data.val_frac in (0, 1))")
            elif not all(any((training_weights(v, fit["rg_chosen"].to_numpy(),
                                               fit["rg_rejected"].to_numpy(), p["tau"],
                                               p["beta"]) > 0).any()
                             for p in tune_points(v, cfg)) for v in tuned):
                why.append(f"no tau of the tuning grid {cfg.run.tune_grid['tau']} keeps a "
                           "fitting pair")
        external = [v.name for v in variants if v.external]
        if external and cfg.model.backend != models.EXTERNAL_TIER:
            why.append(f"variant(s) {external} need model.backend = {models.EXTERNAL_TIER!r}")
        elif external:
            try:
                models.model_location(country, cfg.model.minority_models,
                                      cfg.model.minority_dir)
            except (KeyError, FileNotFoundError) as e:
                why.append(str(e.args[0]))
        if why:
            problems.append(f"{country}: " + "; ".join(why))
    if problems:
        raise ValueError(f"{len(problems)} of {len(countries)} countries cannot be run, nothing "
                         "was trained:\n  " + "\n  ".join(problems)
                         + "\nLeave them out (run.countries) or change the settings named.")


@dataclass(frozen=True)
class Checked:
    """What a run settles once for all its countries, before any training: its variants
    (``run.variants`` resolved) and those whose models it exports."""

    variants: list[Variant]
    export: set[str]


def check_run(prep: RunInputs, countries: Collection[str], variants: Sequence[Variant],
              overwrite: bool = False) -> Checked:
    """Check that every one of ``countries`` can run ``variants`` (``check_runnable``) and
    that the exports can be written (``export_variants``): once per run, before any training,
    so a long run cannot fail after its first country."""
    check_runnable(prep, countries, variants)
    return Checked(list(variants), export_variants(prep.cfg.run, prep.global_rm, overwrite,
                                                   variants=variants))


def kept_weights(variant: Variant, train: pd.DataFrame, tau: float, beta: float, seed: int,
                 country: str) -> np.ndarray:
    """W of every training pair (``variants.training_weights``); an error naming the country
    and tau if the variant keeps none."""
    w = training_weights(variant, train["rg_chosen"].to_numpy(), train["rg_rejected"].to_numpy(),
                         tau, beta, seed)
    if not (w > 0).any():
        p = method.p_glo(train["rg_chosen"], train["rg_rejected"])
        raise EmptyFilterError(
            f"{country}: variant {variant.name!r} with tau={tau} keeps no training pair "
            f"(0 of {len(train)}; p_glo ranges {p.min():.3f}-{p.max():.3f}). Raise tau.")
    return w


def _train(prep: RunInputs, train: pd.DataFrame, w: np.ndarray, seed: int, lr: float,
           val: pd.DataFrame | None) -> tuple[RewardModel, list[dict[str, Any]]]:
    model = prep.global_rm.copy()
    tcfg = dataclasses.replace(prep.cfg.train, lr=lr)
    keep = w > 0
    hist = model.fit(train[keep].reset_index(drop=True), w[keep], tcfg, prep.cfg.method,
                     seed=seed, eval_pairs=val if val is not None and len(val) else None)
    return model, hist


def _val_accuracy(model: RewardModel, val: pd.DataFrame) -> float:
    rc, rr = model.score_pairs(val)
    return float(np.mean(rc > rr))


def tune_points(variant: Variant, cfg: Config) -> list[dict[str, float]]:
    """The grid points (tau, beta, lr_scale) a tuned variant searches: ``run.tune_grid``'s
    values of the settings it depends on, the run's own value of the others. tau matters only
    with a filter, beta only with SCPO weights, so a tuned baseline (no filter, no weights)
    searches the learning rate alone: the same search, not nine copies of it."""
    grid = cfg.run.tune_grid
    taus = grid["tau"] if variant.filter != "none" else [cfg.method.tau]
    betas = grid["beta"] if variant.weighting in ("scpo", "scpo_shuffled") else [cfg.method.beta]
    return [{"tau": t, "beta": b, "lr_scale": s}
            for t, b, s in itertools.product(taus, betas, grid["lr_scale"])]


def tune(prep: RunInputs, country: str, seed: int, splits: dict[str, pd.DataFrame],
         variant: Variant) -> dict[str, Any]:
    """Choose tau / beta / lr for one country by overall accuracy on held-out training users.

    The companion's protocol (the paper gives none): every grid point (``tune_points``) trains
    on the "fit" users with ``seed`` and is scored on the "val" users (``data.val_frac`` of the
    training users, by a seeded hash of each id); the first best point in grid order wins. Test
    pairs are never looked at. The caller then retrains on *all* training users with the
    choice; ``run_country`` tunes on its first seed and reuses the choice for the other seeds,
    so the seed spread is training noise alone and the grid is paid once per country.
    """
    fit, val = splits["fit"], splits["val"]
    if val.empty or fit.empty:
        raise ValueError(f"{country}: tuning needs fitting and validation users ({len(fit)} and "
                         f"{len(val)} pairs); set data.val_frac in (0, 1)")
    best: tuple[float, dict] | None = None
    table = []
    for point in tune_points(variant, prep.cfg):
        tau, beta, lr_scale = point["tau"], point["beta"], point["lr_scale"]
        w = training_weights(variant, fit["rg_chosen"].to_numpy(), fit["rg_rejected"].to_numpy(),
                             tau, beta, seed)
        if not (w > 0).any():
            table.append({"tau": tau, "beta": beta, "lr_scale": lr_scale, "val_accuracy": None})
            continue
        lr = prep.cfg.train.lr * lr_scale
        model, _ = _train(prep, fit, w, seed, lr, None)
        acc = _val_accuracy(model, val)
        del model  # freed before the next grid point copies the global RM
        table.append({"tau": tau, "beta": beta, "lr_scale": lr_scale, "val_accuracy": acc})
        if best is None or acc > best[0]:
            best = (acc, {"tau": tau, "beta": beta, "lr": lr})
    if best is None:
        raise EmptyFilterError(f"{country}: no tuning grid point keeps a fitting pair")
    return {**best[1], "val_accuracy": best[0], "grid": table,
            "n_fit_pairs": len(fit), "n_val_pairs": len(val),
            "n_fit_users": int(fit["user_id"].nunique()),
            "n_val_users": int(val["user_id"].nunique())}


def external_country_model(prep: RunInputs, country: str, variant: Variant) -> RewardModel:
    """An external variant's country RM, given by ``model.minority_models`` (the authors'
    published ones with the preset "published"), loaded to be scored as
    ``variant.score_mode``, never trained."""
    m = prep.cfg.model
    where = models.model_location(country, m.minority_models, m.minority_dir)
    return models.external_model(m, where, variant.score_mode)


def _external_scores(model: RewardModel, test: pd.DataFrame, seed: int,
                     cache: dict[str, tuple[np.ndarray, np.ndarray]], name: str
                     ) -> tuple[np.ndarray, np.ndarray]:
    """An external RM's test scores: computed once in eval mode (they repeat), or per seed with
    dropout on, from a generator seeded with ``seed`` (same seed, same dropout masks)."""
    import torch

    if not model.dropout_at_scoring:
        if name not in cache:
            cache[name] = model.score_pairs(test)
        return cache[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model.score_pairs(test)


def _jsd_alignment(opts: pd.DataFrame, model: RewardModel, country: str) -> float:
    """GlobalOpinionQA: mean over test questions of 1 - JSD(softmax r(x, options), shares)."""
    q = opts[(opts["country"] == country) & (opts["split"] == "test")]
    if q.empty:
        return float("nan")
    texts = pd.DataFrame({
        "prompt": [p for p, o in zip(q["prompt"], q["options"]) for _ in o],
        "response": [x for o in q["options"] for x in o],
    })
    s = model.score(texts["prompt"].tolist(), texts["response"].tolist())
    bounds = np.cumsum([0] + [len(o) for o in q["options"]])
    scores = [s[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return float(np.mean(evaluate.jsd_alignment(scores, [np.asarray(x) for x in q["shares"]])))


def evaluate_on_test(prep: RunInputs, model: RewardModel, test: pd.DataFrame, seed: int,
                     country: str, scores: tuple[np.ndarray, np.ndarray] | None = None
                     ) -> list[dict[str, Any]]:
    """The result rows of one model on a country's test pairs (``scores``: its (r+, r-), when
    already computed)."""
    rc, rr = test_scores(prep, model, test, scores)
    truth = {name: test[col].to_numpy() for name, col in TRUTH_COLUMNS.items()
             if col in test.columns}
    rows = evaluate.evaluate_model(
        rc, rr, test["rg_chosen"].to_numpy(), test["rg_rejected"].to_numpy(),
        test["user_id"].astype(str).to_numpy(), truth=truth or None,
        n_boot=prep.cfg.run.n_boot, seed=seed)
    if prep.data.source == "goqa":
        rows[0]["jsd_alignment"] = _jsd_alignment(prep.data.options, model, country)
    return rows


def test_scores(prep: RunInputs, model: RewardModel, test: pd.DataFrame,
                scores: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(r+, r-) of ``model`` on the test pairs: ``scores`` when given, the global RM's from the
    pair table, else scored."""
    if scores is not None:
        return scores
    if model is prep.global_rm:  # its test scores are already in the table: no rescoring
        return test["rg_chosen"].to_numpy(), test["rg_rejected"].to_numpy()
    return model.score_pairs(test)


def test_outcomes(test: pd.DataFrame, scores: tuple[np.ndarray, np.ndarray]) -> pd.DataFrame:
    """``scpo.evaluate.pair_outcomes`` of one model's test scores: a run keeps them (the
    ``predictions`` of its country runs) so that verdicts compare two models pair by pair."""
    truth = {name: test[col].to_numpy() for name, col in TRUTH_COLUMNS.items()
             if col in test.columns}
    return evaluate.pair_outcomes(*scores, test["rg_chosen"].to_numpy(),
                                  test["rg_rejected"].to_numpy(),
                                  test["user_id"].astype(str).to_numpy(), truth=truth or None)


def training_counts(train: pd.DataFrame, kept: np.ndarray, weight_sum: float) -> dict[str, Any]:
    """What a model trained on: the country's training pairs and users (``train``), those it
    kept (``kept``, one bool per pair) and the sum of their weights."""
    n_kept = int(kept.sum())
    return {"n_train": len(train), "n_kept": n_kept,
            "kept_ratio": n_kept / len(train) if len(train) else float("nan"),
            "n_train_users": int(train["user_id"].nunique()),
            "n_users_trained": int(train.loc[kept, "user_id"].nunique()),
            "weight_sum": weight_sum}


def result_rows(evaluated: list[dict[str, Any]], *, country: str, variant: str, seed: int,
                counts: dict[str, Any], tau: float, beta: float, lr: float
                ) -> list[dict[str, Any]]:
    """The results table's rows of one model (one per test set): who and which seed,
    ``evaluate_on_test``'s numbers, ``training_counts``' and the settings it trained with. Every
    run writes its rows through here, so their columns are one schema."""
    return [{"country": country, "variant": variant, "seed": seed, **r, **counts,
             "tau": tau, "beta": beta, "lr": lr} for r in evaluated]


def run_country(prep: RunInputs, country: str, *, keep_models: bool = False,
                progress: bool = True, save_models: str | Path | None = None,
                save_variants: Collection[str] | None = None,
                overwrite: bool = False, checked: Checked | None = None) -> CountryRun:
    """Every variant x seed of ``prep.cfg.run`` for one country (and its exports, if asked).

    ``save_models``: write each trained model (of ``save_variants``; None = all) to
    ``model_dir(save_models, ...)`` as soon as it is evaluated, so that only one minority model
    is in memory at a time: on a GPU, keeping 21 DeBERTa copies (``keep_models``) fills it.
    ``overwrite``: export into a folder of the user's (``scpo.outdir``). ``checked``: what
    ``run`` settled for every country (``check_run``); called alone, it is settled here.
    """
    cfg = prep.cfg
    if checked is None:
        check_seeds(cfg.run.seeds)
        checked = check_run(prep, [country], resolve(cfg.run.variants), overwrite)
    if save_models is not None:  # refused before training if the folder is not scpo's
        claim_results_dir(Path(save_models) / country_slug(country))
    splits = country_splits(prep, country)
    train, test = splits["train"], splits["test"]
    out = CountryRun(country, pd.DataFrame())
    rows: list[dict[str, Any]] = []
    outcomes: list[pd.DataFrame] = []
    external: dict[str, RewardModel] = {}  # an external RM is loaded once per country
    fixed_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # eval-mode scores repeat
    jobs = list(itertools.product(cfg.run.seeds, checked.variants))
    for seed, variant in tqdm(jobs, desc=country, disable=not progress, leave=False):
        tau, beta, lr = cfg.method.tau, cfg.method.beta, cfg.train.lr
        w = np.zeros(len(train))  # the global RM trains on nothing
        scores = None
        if variant.external:
            if variant.name not in external:
                external[variant.name] = external_country_model(prep, country, variant)
            model, hist = external[variant.name], []
            scores = _external_scores(model, test, seed, fixed_scores, variant.name)
        elif not variant.train:
            model, hist = prep.global_rm, []
        else:
            if variant.tuned:
                # chosen once per country and variant, on the first seed, on held-out training
                # users; every seed then trains on all training users with that choice
                mine = [k for k in out.tuned if k.split("/")[0] == variant.name]
                if not mine:
                    mine = [f"{variant.name}/{seed}"]
                    out.tuned[mine[0]] = tune(prep, country, seed, splits, variant)
                choice = out.tuned[mine[0]]
                tau, beta, lr = choice["tau"], choice["beta"], choice["lr"]
            w = kept_weights(variant, train, tau, beta, seed, country)
            model, hist = _train(prep, train, w, seed, lr, None)
        key = f"{variant.name}/{seed}"
        out.histories[key] = hist
        if keep_models:
            out.models[key] = model
        if (save_models is not None and variant.train
                and (save_variants is None or variant.name in save_variants)):
            save_model(model, model_dir(save_models, country, variant.name, seed))
        scores = test_scores(prep, model, test, scores)
        new = result_rows(evaluate_on_test(prep, model, test, seed, country, scores),
                          country=country, variant=variant.name, seed=seed,
                          counts=training_counts(train, w > 0, float(w.sum())),
                          tau=tau, beta=beta, lr=lr)
        rows += new
        outcomes.append(test_outcomes(test, scores).assign(country=country,
                                                           variant=variant.name, seed=seed))
        if variant.name in checked.export:
            out.exported[key] = str(export_model(cfg.run.export_dir, model, new, cfg.to_dict(),
                                                 prep.data_description(), overwrite))
        del model  # freed before the next job copies the global RM (unless keep_models)
    out.results = pd.DataFrame(rows)
    out.predictions = pd.concat(outcomes, ignore_index=True)
    return out


def run(cfg: Config, out_dir: str | Path | None = None, *, progress: bool = True,
        keep_models: bool = False,
        overwrite: bool = False) -> tuple[pd.DataFrame, RunInputs, dict[str, CountryRun]]:
    """All countries; with ``out_dir``, write results.parquet/.csv, histories.json, run.json
    (``out_dir`` new, empty or an earlier run's; a folder of the user's only with
    ``overwrite``: checked before any work)."""
    t0 = time.perf_counter()
    progress = progress and is_main_process()  # one set of bars per launch
    check_seeds(cfg.run.seeds)  # before any work
    if out_dir is not None and is_main_process():
        check_results_dir(out_dir, overwrite)
    variants = resolve(cfg.run.variants)  # once: every step below reads these
    prep = prepare(cfg, variants)
    checked = check_run(prep, prep.countries, variants, overwrite)  # before any training
    t_prep = time.perf_counter() - t0
    runs = {}
    for c in tqdm(prep.countries, desc="countries", disable=not progress):
        runs[c] = run_country(prep, c, keep_models=keep_models, progress=progress,
                              overwrite=overwrite, checked=checked)
    results = pd.concat([r.results for r in runs.values()], ignore_index=True)
    if out_dir is not None:
        write_results(Path(out_dir), runs, results, run_record(prep),
                      timing={"prepare_s": t_prep, "total_s": time.perf_counter() - t0},
                      overwrite=overwrite)
    return results, prep, runs


def run_simulation(cfg: Config, sim: Any, countries: list[str], variants: list[str],
                   seeds: list[int]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(results, pair table, per-pair outcomes) of the whole pipeline on one simulation (a
    ``SimConfig``): a global RM trained on its majority countries, then ``variants`` x
    ``seeds`` for ``countries``.

    The training settings are ``cfg``'s; the simulator chapter turns one knob at a time.
    """
    from scpo.config import cache_dir
    from scpo.simulate import ensure_simulation

    setting = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, dataset="sim", data_dir=str(ensure_simulation(sim, cache_dir() / "sim"))),
        run=dataclasses.replace(cfg.run, countries=list(countries), variants=list(variants),
                                seeds=list(seeds)))
    results, prep, runs = run(setting, progress=False)
    return results, prep.pairs, pd.concat([r.predictions for r in runs.values()],
                                          ignore_index=True)


# ---- what the aggregate chapters compute from the country pages' runs ----

def cross_country(models: Mapping[str, RewardModel], test: pd.DataFrame) -> pd.DataFrame:
    """Each country A's model (``models``: A -> the model for A) on the test pairs of every
    country B of ``models`` (``test``'s ``country`` column): a row per (trained_on A,
    tested_on B) with its ``overall`` accuracy and its ``pure_minority`` accuracy (nan where B
    has no pure-minority pair). A model is scored once, on every test pair; the pure-minority
    pairs are the global RM's wrong ones (``rg_chosen``, ``rg_rejected``). Steerable models
    are best on the diagonal."""
    pure = evaluate.pure_minority_mask(test["rg_chosen"], test["rg_rejected"])
    tested_on = test["country"].to_numpy()
    rows = []
    for a, model in models.items():
        correct, _ = evaluate.pairwise_correct(*model.score_pairs(test))
        for b in models:
            mine = tested_on == b
            rows.append({"trained_on": a, "tested_on": b,
                         "overall": evaluate.accuracy(correct[mine], "overall", b),
                         "pure_minority": evaluate.accuracy(correct[mine & pure])
                         if (mine & pure).any() else np.nan})
    return pd.DataFrame(rows)


def home_gap(models: Mapping[str, RewardModel], test: pd.DataFrame) -> pd.DataFrame:
    """Per test pair of each country B of ``models`` (``test``'s ``country`` column): 100 x
    (B's own model right, 1 or 0, minus the mean of the other countries' models), with the
    pair's ``user_id`` and ``pure_minority`` flag. Its mean over B's pairs, then over the
    countries, is the mean of ``cross_country``'s diagonal minus the mean off it (the home
    country's gain); per pair, its users can be resampled for an interval
    (``scpo.companion.report.interval_of``)."""
    mine = test[test["country"].isin(list(models))].reset_index(drop=True)
    tested = mine["country"].to_numpy()
    correct = {a: evaluate.pairwise_correct(*m.score_pairs(mine))[0].astype(float)
               for a, m in models.items()}
    home = np.select([tested == a for a in models], [correct[a] for a in models])
    away = (sum(correct.values()) - home) / (len(models) - 1)
    return pd.DataFrame({"country": tested, "user_id": mine["user_id"].astype(str).to_numpy(),
                         "pure_minority": evaluate.pure_minority_mask(mine["rg_chosen"],
                                                                      mine["rg_rejected"]),
                         "gap": 100 * (home - away)})


@dataclass
class SweepPoint:
    """One value of one swept setting (``sweep``): every country's result rows and models."""

    swept: str  # the setting swept: "tau" or "beta"
    value: float
    results: pd.DataFrame  # every country's rows of the swept variant and seed
    models: dict[str, RewardModel]  # country -> its model (when ``sweep`` was asked for them)
    trained: bool  # False: the runs' own setting, read back instead of trained again


def sweep(run: Reopened, grid: Mapping[str, Sequence[float]], variant: str = "scpo_fw",
          seed: int | None = None, keep_models: bool = False) -> Iterator[SweepPoint]:
    """``variant`` trained again at each value of one setting at a time (``grid``: "tau" and/or
    "beta" -> values), the other at the value the runs used, for every country of ``run`` on
    ``seed`` (None: the runs' first). The point at the runs' own setting is their result, read
    back (and their saved models), not trained again. One point at a time: each trained
    point's models are let go before the next is trained. The runs' config is not changed."""
    seed = run.seeds[0] if seed is None else seed
    mine = run.results[(run.results["variant"] == variant) & (run.results["seed"] == seed)]
    if mine.empty:
        raise ValueError(f"the runs under {run.root} have no {variant!r} rows of seed {seed}; "
                         f"they ran {sorted(set(run.results['variant']))}, seeds {run.seeds}")
    own = {"tau": float(mine["tau"].iloc[0]), "beta": float(mine["beta"].iloc[0])}
    unknown = sorted(set(grid) - set(own))
    if unknown:
        raise ValueError(f"sweep: {unknown} cannot be swept; sweep one of {sorted(own)}")
    prep = run.prep
    for swept, values in grid.items():
        for value in values:
            setting = {**own, swept: float(value)}
            if setting == own:  # the runs trained this one already
                models = ({c: run.model(c, variant, seed) for c in run.countries}
                          if keep_models else {})
                yield SweepPoint(swept, float(value), mine, models, False)
                continue
            cfg = dataclasses.replace(
                prep.cfg, method=dataclasses.replace(prep.cfg.method, **setting),
                run=dataclasses.replace(prep.cfg.run, seeds=[seed], variants=[variant]))
            at = dataclasses.replace(prep, cfg=cfg)
            runs = {c: run_country(at, c, progress=False, keep_models=keep_models)
                    for c in run.countries}
            models = ({c: r.models[f"{variant}/{seed}"] for c, r in runs.items()}
                      if keep_models else {})
            yield SweepPoint(swept, float(value), pd.concat([r.results for r in runs.values()]),
                             models, True)

