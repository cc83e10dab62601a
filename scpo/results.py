"""A run's files: results, the record that traces them, saved models, and exported checkpoints.

    write_results(out, runs, results, record)  # results.parquet/.csv, run.json, histories.json
    save_country(out, run, record)             # one country's, under out/<Country>/
    load_results(root) / load_model(...)       # read back by the aggregate notebooks
    export_model(...) / export_saved(...)      # HF checkpoints with a model card

Everything here takes plain values (a config, a data description, a model); the loop that
produces them is ``scpo.experiment``. Under ``accelerate launch`` only rank 0 writes.
"""

from __future__ import annotations

import json
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import scpo
from scpo.config import Config, RunConfig
from scpo.models.base import RewardModel
from scpo.models.device import is_main_process
from scpo.pairs import PairData
from scpo.variants import KNOWN, RENAMED, resolve


@dataclass
class CountryRun:
    """What ``scpo.experiment.run_country`` produced for one country."""

    country: str
    results: pd.DataFrame
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "variant/seed"
    models: dict[str, RewardModel] = field(default_factory=dict)  # "variant/seed"
    tuned: dict[int, dict[str, Any]] = field(default_factory=dict)  # seed -> choice + grid
    exported: dict[str, str] = field(default_factory=dict)  # "variant/seed" -> checkpoint dir


# ---- where things go ----

def country_slug(country: str) -> str:
    return country.replace(" ", "_")


def model_dir(root: str | Path, country: str, variant: str, seed: int | str) -> Path:
    """Where a country's trained minority model is saved: ``<root>/<Country>/models/...``."""
    return Path(root) / country_slug(country) / "models" / variant / f"seed{seed}"


# ---- the record ----

def run_record(cfg: Config, data: PairData, global_rm: RewardModel,
               countries: list[str]) -> dict[str, Any]:
    """What is needed to trace and rerun any number: config, version, data fingerprint."""
    import torch

    return {
        "scpo_version": scpo.__version__, "config": cfg.to_dict(),
        "data": {"source": data.source, "fingerprint": data.fingerprint,
                 "report": data.report, "meta": data.meta},
        "global_rm": global_rm.fingerprint(),
        # the hub commit the global RM's weights came from (None: a local directory)
        "global_rm_commit": getattr(global_rm, "commit", None),
        "countries": countries,
        "python": platform.python_version(), "torch": torch.__version__,
    }


def trained_on(results: pd.DataFrame) -> dict[str, dict[str, dict[str, int]]]:
    """country -> variant -> training users and pairs available and used (first seed's row)."""
    if results.empty:
        return {}
    first = results.drop_duplicates(["country", "variant"])
    return {c: {r.variant: {"train_users": int(r.n_train_users), "train_pairs": int(r.n_train),
                            "users_trained": int(r.n_users_trained), "pairs_trained": int(r.n_kept)}
                for r in g.itertuples(index=False)}
            for c, g in first.groupby("country", sort=False)}


# ---- writing and reading results ----

def write_results(out: Path, runs: dict[str, CountryRun], results: pd.DataFrame,
                  record: dict[str, Any], timing: dict[str, float] | None = None) -> None:
    """The tidy results, the record (``run_record`` + what each variant trained on) and the
    country runs' training curves, tuning choices and exports."""
    if not is_main_process():
        return
    out.mkdir(parents=True, exist_ok=True)
    results.to_parquet(out / "results.parquet", index=False)
    results.to_csv(out / "results.csv", index=False, float_format="%.10g")
    hist = {f"{c}/{k}": v for c, r in runs.items() for k, v in r.histories.items()}
    (out / "histories.json").write_text(json.dumps(hist, sort_keys=True))
    tuned = {c: {str(s): v for s, v in r.tuned.items()} for c, r in runs.items() if r.tuned}
    (out / "tuned.json").write_text(json.dumps(tuned, sort_keys=True, indent=1, default=float))
    record = {**record, "trained_on": trained_on(results)}
    (out / "run.json").write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
    if timing:
        (out / "timing.json").write_text(json.dumps(timing, indent=1))
    exported = {f"{c}/{k}": v for c, r in runs.items() for k, v in r.exported.items()}
    if exported:
        (out / "exported.json").write_text(json.dumps(exported, sort_keys=True, indent=1))


def save_country(out: str | Path, run_: CountryRun, record: dict[str, Any]) -> Path:
    """Write one country's results (and its trained models, if kept) under ``out/<Country>/``.

    Aggregate notebooks read these back with ``load_results`` / ``load_model`` and never retrain.
    """
    d = Path(out) / country_slug(run_.country)
    write_results(d, {run_.country: run_}, run_.results, record)
    for key, model in run_.models.items():
        variant, seed = key.split("/")
        if KNOWN[variant].train:  # the global RM and given RMs are not this run's to save
            model.save(model_dir(out, run_.country, variant, seed))
    return d


def load_results(root: str | Path, countries: list[str] | None = None) -> pd.DataFrame:
    """Concatenate ``<root>/<Country>/results.parquet`` (all countries found, or those given)."""
    root = Path(root)
    dirs = ([root / country_slug(c) for c in countries] if countries
            else sorted(p.parent for p in root.glob("*/results.parquet")))
    missing = [str(d) for d in dirs if not (d / "results.parquet").exists()]
    if missing or not dirs:
        raise FileNotFoundError(f"no results under {missing or root}; run the country notebook "
                                "(or `scpo run --out`) first")
    out = pd.concat([pd.read_parquet(d / "results.parquet") for d in dirs], ignore_index=True)
    old = sorted(set(out["variant"]) & set(RENAMED))
    if old:  # results of an earlier version: the variant is kept, under its name of today
        warnings.warn(f"results under {root} name variant(s) {old}, renamed since: read as "
                      f"{[RENAMED[v] for v in old]}", stacklevel=2)
        out["variant"] = out["variant"].replace(RENAMED)
    return out


def load_model(root: str | Path, global_rm: RewardModel, country: str, variant: str,
               seed: int) -> RewardModel:
    """A minority RM saved by ``save_country`` (``global_rm`` itself for variant "global")."""
    if variant == "global":
        return global_rm
    path = model_dir(root, country, variant, seed)
    if not path.exists():
        raise FileNotFoundError(f"no saved model at {path}; run the country notebook with "
                                f"{variant!r} in its save_variants first")
    enc = getattr(global_rm, "encoder", None)  # the embedding tier's models share its encoder
    return type(global_rm).load(path, **({"encoder": enc} if enc is not None else {}))


# ---- export: standard Hugging Face checkpoints with a model card ----

def export_variants(run_cfg: RunConfig, global_rm: RewardModel) -> set[str]:
    """The trained variants whose models ``run.export_dir`` asks for (empty: no export).

    Checked before any training, so a long GPU run cannot end without the checkpoints asked for.
    """
    if not run_cfg.export_dir:
        return set()
    if not hasattr(global_rm, "export"):
        raise ValueError(f"run.export_dir={run_cfg.export_dir!r} needs model.backend = 'hf' "
                         "or 'partial': the embedding tier's RM (a head on frozen sentence "
                         "embeddings) is not a standard Hugging Face checkpoint. Unset "
                         "run.export_dir or use --backend hf.")
    trained = {v.name for v in resolve(run_cfg.variants) if v.train}
    wanted = {v.name for v in resolve(run_cfg.export_variants)}
    if not wanted & trained:
        raise ValueError(f"run.export_variants={run_cfg.export_variants} names no trained variant "
                         f"of this run (run.variants={run_cfg.variants}); nothing would be "
                         "exported. Add one of them to run.variants or change run.export_variants.")
    return wanted & trained


def card_record(rows: list[dict[str, Any]], config: dict[str, Any],
                data: dict[str, Any]) -> dict[str, Any]:
    """The model card's training record of one (country, variant, seed) from its result rows
    (one per test set), the run's config dict and its data description."""
    first = rows[0]
    keys = {(r["country"], r["variant"], r["seed"]) for r in rows}
    if len(keys) != 1:
        raise ValueError(f"card_record: rows of one model expected, got {sorted(keys)}")
    return {
        "country": first["country"], "variant": first["variant"],
        "tau": float(first["tau"]), "beta": float(first["beta"]), "lr": float(first["lr"]),
        "pairs_kept": int(first["n_kept"]), "pairs_train": int(first["n_train"]),
        "weight_sum": float(first["weight_sum"]), "seeds": [int(first["seed"])],
        "max_steps": int(config["train"]["max_steps"]),
        "batch_size": int(config["train"]["batch_size"]),
        "test_accuracy": {r["test_set"]: {"accuracy": float(r["accuracy"]),
                                          "ci95": [float(r["ci_low"]), float(r["ci_high"])],
                                          "n_pairs": int(r["n_pairs"])} for r in rows},
        "dataset": data["source"], "data_fingerprint": data["fingerprint"],
        "split_seed": int(config["data"]["split_seed"]),
    }


def export_model(export_dir: str | Path, model: RewardModel, rows: list[dict[str, Any]],
                 config: dict[str, Any], data: dict[str, Any]) -> Path:
    """``<export_dir>/<Country>/<variant>/seed<k>/``: checkpoint, tokenizer, model card."""
    first = rows[0]
    path = (Path(export_dir) / country_slug(first["country"]) / first["variant"]
            / f"seed{first['seed']}")
    return model.export(path, card_record(rows, config, data))


def export_saved(results_dir: str | Path, country: str, variant: str, seed: int,
                 out: str | Path) -> Path:
    """Export a minority RM that ``save_country`` saved (the country notebook keeps its models),
    with the model card filled from that country's results.parquet and run.json."""
    d = Path(results_dir) / country_slug(country)
    files = [d / "results.parquet", d / "run.json"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"export: {missing} not found; run the country notebook (or "
                                "save_country) into that results directory first")
    record = json.loads(files[1].read_text())
    backend = record["config"]["model"]["backend"]
    if backend not in ("hf", "partial"):
        raise ValueError(f"export: {d} was run with model.backend = {backend!r}; only the hf "
                         "and partial tiers' models are standard Hugging Face checkpoints")
    res = pd.read_parquet(files[0])
    rows = res[(res["variant"] == variant) & (res["seed"] == seed)].to_dict("records")
    if not rows:
        raise KeyError(f"export: no results for variant {variant!r}, seed {seed} in {files[0]}; "
                       f"it has {sorted(set(zip(res['variant'], res['seed'].astype(int))))}")
    path = model_dir(results_dir, country, variant, seed)
    if not path.exists():
        raise FileNotFoundError(f"export: no saved model at {path} (the global RM is not "
                                "exported: it is the model you started from)")
    from scpo.models.hf import HFRewardModel
    from scpo.models.partial import PartialRM

    card = card_record(rows, record["config"], record["data"])
    model = (PartialRM if backend == "partial" else HFRewardModel).load(path)
    return model.export(Path(out), card)
