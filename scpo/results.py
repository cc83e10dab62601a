"""A run's files: results, the record that traces them, saved models, and exported checkpoints.

    write_results(out, runs, results, record)  # results.parquet/.csv, run.json, histories.json
    save_country(out, run, record)             # one country's, under out/<Country>/
    reopen(root)                               # the country pages' runs, as they ran: their
                                               # config, results, inputs and saved models
    export_model(...) / export_saved(...)      # HF checkpoints with a model card

Everything here takes plain values (a config, a data description, a model) or a run's shared
inputs (``scpo.scoring.prepare``); the loop that produces them is ``scpo.experiment``. Under
``accelerate launch`` only rank 0 writes.
"""

from __future__ import annotations

import functools
import json
import platform
import re
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path
from typing import Any

import pandas as pd

import scpo
from scpo import models
from scpo.config import Config, RunConfig
from scpo.models import RewardModel, export, saved
from scpo.models.device import is_main_process
from scpo.outdir import (
    MARKER,
    Target,
    check_writable,
    claim,
    hold,
    replace_dir,
    safe_name,
    write_file_atomically,
)
from scpo.scoring import RunInputs, prepare
from scpo.variants import KNOWN, RENAMED, Variant, resolve


@dataclass
class CountryRun:
    """What ``scpo.experiment.run_country`` produced for one country."""

    country: str
    results: pd.DataFrame
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "variant/seed"
    models: dict[str, RewardModel] = field(default_factory=dict)  # "variant/seed"
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)  # "variant/seed" -> choice
    exported: dict[str, str] = field(default_factory=dict)  # "variant/seed" -> checkpoint dir
    # one row per (variant, seed, test pair): scpo.experiment.test_outcomes, what paired
    # comparisons of two models read (scpo.companion.report.paired_difference)
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame)


# ---- where things go ----

def country_slug(country: str) -> str:
    """A country's folder name: its name with spaces as underscores, checked to be one path
    component (``scpo.outdir.safe_name``): a country comes from data or the command line."""
    return safe_name(country, "country").replace(" ", "_")


def model_dir(root: str | Path, country: str, variant: str, seed: int | str) -> Path:
    """Where a country's trained minority model is saved: ``<root>/<Country>/models/...``."""
    return Path(root) / country_slug(country) / "models" / variant / f"seed{seed}"


# ---- the record ----

# the libraries that compute a run's numbers and render the book, in the order the book lists them
VERSIONED = ("torch", "transformers", "datasets", "peft", "trl", "jupyter-book")
_COMMIT = re.compile(r"[0-9a-f]{40}")


def environment() -> dict[str, str]:
    """The versions the numbers come from, read from the running interpreter (never typed):
    Python, each of ``VERSIONED`` ("not installed" when absent), scpo and its commit."""
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return {**found, "scpo": scpo.__version__, "scpo_commit": scpo_commit(),
            "scpo_source": source_hash()}


@functools.cache
def source_hash() -> str:
    """sha256 of the running scpo's source (its code, presets and simulator banks: what decides
    every number), whatever the commit says: a run records it, and ``reopen`` refuses runs made
    by other code."""
    import hashlib

    root = Path(scpo.__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(f for f in root.rglob("*") if f.is_file()
                    and f.suffix in (".py", ".toml", ".json") and "__pycache__" not in f.parts):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def scpo_commit(source: Path | None = None) -> str:
    """The git commit of the scpo source that runs: the HEAD of the checkout it lies in (with
    "-dirty" when tracked files differ from it), else the commit pip recorded when it installed
    scpo from git (``git+URL@commit``), else "unknown". Never raises: a record is still written."""
    root = (source or Path(scpo.__file__).resolve().parent).parent
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=30, check=True).stdout.strip()

        # only a checkout of scpo itself: a venv inside some other repository is not one
        if Path(git("rev-parse", "--show-toplevel")).resolve() == root.resolve():
            head = git("rev-parse", "--verify", "HEAD")
            dirty = git("status", "--porcelain", "--untracked-files=no")
            if _COMMIT.fullmatch(head):
                return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return installed_commit() or "unknown"


def installed_commit() -> str | None:
    """The commit in scpo's ``direct_url.json`` (PEP 610): pip writes it for a git install."""
    try:
        info = json.loads(distribution("scpo").read_text("direct_url.json") or "{}")
    except (PackageNotFoundError, ValueError):
        return None
    commit = info.get("vcs_info", {}).get("commit_id", "") if isinstance(info, dict) else ""
    return commit if isinstance(commit, str) and _COMMIT.fullmatch(commit) else None


def run_record(prep: RunInputs) -> dict[str, Any]:
    """What is needed to trace and rerun any number of a run (``scpo.scoring.prepare``'s):
    config, versions, data fingerprint, global RM."""
    data = prep.data
    return {
        "scpo_version": scpo.__version__, "config": prep.cfg.to_dict(),
        "data": {"source": data.source, "fingerprint": data.fingerprint,
                 "report": data.report, "meta": data.meta},
        "global_rm": prep.global_rm.fingerprint(),
        # the hub commit the global RM's weights came from (None: a local directory)
        "global_rm_commit": prep.global_rm.commit,
        "countries": prep.countries,
        "environment": environment(),
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

RESULTS = "run's results"  # the kind of output (scpo.outdir's marker) of a results directory
RECORD = "run.json"  # written last: a results directory without it holds an interrupted run
PREDICTIONS = "predictions.parquet"  # each model's outcome on each test pair (CountryRun)
# Every other file a run may write; one this run does not write is removed, so a file of an
# earlier run never stands beside the new results.
RUN_FILES = ("results.parquet", "results.csv", "histories.json", "tuned.json", "timing.json",
             "exported.json", "counts.csv", PREDICTIONS)
# what every `scpo run` writes (``write_results`` with its timing): checked before any work
RUN_WRITES = ("results.parquet", "results.csv", "histories.json", "tuned.json", "timing.json",
              PREDICTIONS, RECORD)


def _has_our_record(path: Path) -> bool:
    """A results directory of an older scpo (before the marker): its run.json names scpo."""
    try:
        return "scpo_version" in json.loads((path / RECORD).read_text())
    except (OSError, ValueError, TypeError):
        return False


def claim_results_dir(out: str | Path, overwrite: bool = False,
                      names: tuple[str, ...] = ()) -> Target:
    """``out`` as a directory this run may write its results into (``scpo.outdir.claim``):
    new, empty or scpo's own (its files of a run listed in its marker; of an older scpo's, the
    run files present), where a file of the user's among ``names`` (the files the run will
    write) is refused; a user's non-empty folder only with ``overwrite`` (then none of its
    other files may be deleted)."""
    return claim(out, overwrite=overwrite, what=RESULTS, ours=_has_our_record,
                 legacy=(*RUN_FILES, RECORD), names=names)


def check_results_dir(out: str | Path, overwrite: bool = False,
                      names: tuple[str, ...] = RUN_WRITES) -> Target:
    """``claim_results_dir``'s check alone, before any work (nothing is written); ``names``:
    the files the run will write (default: those of every ``scpo run``)."""
    return check_writable(out, overwrite=overwrite, what=RESULTS, ours=_has_our_record,
                          legacy=(*RUN_FILES, RECORD), names=names)


def write_run_files(out: Path, files: dict[str, Callable[[Path], None]],
                    record: dict[str, Any], overwrite: bool = False) -> None:
    """Write a run's files as one set, one writer at a time (``scpo.outdir.hold``: a second
    process writing the same directory waits for the first to finish its set): each is listed
    in the directory's marker, the old record goes first, each file is written to a temporary
    name and renamed into place, files of ``RUN_FILES`` this run does not write are removed
    when scpo listed them (any other is kept and named), and the record (``RECORD``) comes
    last. A crash part-way leaves no record, so no reader takes new results for old ones or the
    reverse (``load_results`` refuses them)."""
    if not is_main_process():
        return
    unknown = set(files) - set(RUN_FILES)
    if unknown:
        raise ValueError(f"write_run_files: {sorted(unknown)} are not run files {RUN_FILES}")
    with hold(out, what=RESULTS):  # another run writing here finishes its set first
        target = claim_results_dir(out, overwrite, names=(*files, RECORD))
        target.add([*files, RECORD])  # scpo's from now (or the user's folder, told --overwrite)
        (out / RECORD).unlink(missing_ok=True)  # replaced below, last
        stale = [name for name in RUN_FILES if name not in files and (out / name).exists()]
        kept = sorted(set(stale) - set(target.remove(stale)), key=stale.index)
        if kept:  # a file of the user's is never deleted
            warnings.warn(f"{out}: {kept} (not written by this run) are not files scpo wrote "
                          f"there (no {MARKER} marker lists them), so they are kept; delete them "
                          "if they belong to an earlier run", stacklevel=2)
        for name, write in files.items():
            write_file_atomically(out / name, write)
        text = json.dumps(record, indent=1, sort_keys=True, default=str)
        write_file_atomically(out / RECORD, lambda p: p.write_text(text))


def _json(value: Any, **kw: Any) -> Callable[[Path], None]:
    return lambda p: p.write_text(json.dumps(value, **kw))


def write_results(out: Path, runs: dict[str, CountryRun], results: pd.DataFrame,
                  record: dict[str, Any], timing: dict[str, float] | None = None,
                  overwrite: bool = False) -> None:
    """The tidy results, the record (``run_record`` + what each variant trained on) and the
    country runs' training curves, tuning choices and exports, as one set
    (``write_run_files``)."""
    hist = {f"{c}/{k}": v for c, r in runs.items() for k, v in r.histories.items()}
    tuned = {c: dict(r.tuned) for c, r in runs.items() if r.tuned}
    exported = {f"{c}/{k}": v for c, r in runs.items() for k, v in r.exported.items()}
    files: dict[str, Callable[[Path], None]] = {
        "results.parquet": lambda p: results.to_parquet(p, index=False),
        "results.csv": lambda p: results.to_csv(p, index=False, float_format="%.10g"),
        "histories.json": _json(hist, sort_keys=True),
        "tuned.json": _json(tuned, sort_keys=True, indent=1, default=float),
    }
    predictions = [r.predictions for r in runs.values() if len(r.predictions)]
    if predictions:
        table = compact_predictions(pd.concat(predictions, ignore_index=True))
        files[PREDICTIONS] = lambda p: table.to_parquet(p, index=False)
    if timing:
        files["timing.json"] = _json(timing, indent=1)
    if exported:
        files["exported.json"] = _json(exported, sort_keys=True, indent=1)
    write_run_files(Path(out), files, {**record, "trained_on": trained_on(results)}, overwrite)


def compact_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """A run's per-pair outcomes as written: who and which seed first, names as categories and
    flags as booleans (about 2 bytes a row in parquet)."""
    first = ["country", "variant", "seed", "pair", "user_id"]
    out = predictions[first + [c for c in predictions.columns if c not in first]].copy()
    for col in ("country", "variant", "user_id"):
        out[col] = out[col].astype(str).astype("category")
    return out.astype({"seed": "int64", "pair": "int32"})


def load_predictions(root: str | Path, countries: list[str]) -> pd.DataFrame | None:
    """The per-pair outcomes (``PREDICTIONS``) of ``countries``' runs under ``root`` (one run
    directory, or a country page's each); None when a run kept none (an older scpo's)."""
    root = Path(root)
    if (root / PREDICTIONS).is_file():
        found = [root / PREDICTIONS]
    else:
        found = [root / country_slug(c) / PREDICTIONS for c in countries]
        if not all(f.is_file() for f in found):
            return None
    out = pd.concat([pd.read_parquet(f) for f in found], ignore_index=True)
    for col in ("country", "variant", "user_id"):
        out[col] = out[col].astype(str)
    out["variant"] = out["variant"].replace(RENAMED)
    return out[out["country"].isin(countries)].reset_index(drop=True)


def save_model(model: RewardModel, path: str | Path) -> None:
    """``model.save(path)`` as one directory of scpo's (``scpo.outdir.replace_dir``): new, or
    an earlier save's, whose files are replaced; any other file there is kept. Under a launch
    the other ranks only take part in gathering the weights (into a directory of their own)."""
    if not is_main_process():
        with tempfile.TemporaryDirectory() as tmp:
            model.save(Path(tmp) / "model")
        return
    replace_dir(path, model.save, what=export.SAVED, legacy=export.FILES, wait=True, told="",
                ours=lambda p: saved.saved_kind(p) is not None)


def save_country(out: str | Path, run_: CountryRun, record: dict[str, Any]) -> Path:
    """Write one country's results (and its trained models, if kept) under ``out/<Country>/``.

    Aggregate notebooks read these back with ``load_results`` / ``load_model`` and never retrain.
    """
    d = Path(out) / country_slug(run_.country)
    for key, model in run_.models.items():
        variant, seed = key.split("/")
        if KNOWN[variant].train:  # the global RM and external RMs are not this run's to save
            claim_results_dir(d)
            save_model(model, model_dir(out, run_.country, variant, seed))
    write_results(d, {run_.country: run_}, run_.results, record)
    return d


def load_results(root: str | Path, countries: list[str] | None = None) -> pd.DataFrame:
    """Concatenate ``<root>/<Country>/results.parquet`` (all countries found, or those given);
    a directory whose run did not finish (no ``run.json``) is refused, naming it. A directory
    that holds one run of several countries (``scpo run --out``: ``results.parquet`` at its
    top) is read as it is, restricted to ``countries`` (each must be in it)."""
    root = Path(root)
    if (root / "results.parquet").is_file():
        return _one_run(root, countries)
    dirs = ([root / country_slug(c) for c in countries] if countries
            else sorted(p.parent for p in root.glob("*/results.parquet")))
    missing = [str(d) for d in dirs if not (d / "results.parquet").exists()]
    if missing or not dirs:
        raise FileNotFoundError(f"no results under {missing or root}; run the country notebook "
                                "(or `scpo run --out`) first")
    unfinished = [str(d) for d in dirs if not (d / RECORD).exists()]
    if unfinished:
        raise FileNotFoundError(f"{unfinished}: results without {RECORD}, the record a run "
                                "writes last: the run that wrote them did not finish. Run it "
                                "again.")
    out = pd.concat([pd.read_parquet(d / "results.parquet") for d in dirs], ignore_index=True)
    return _renamed(out, root)


def _one_run(root: Path, countries: list[str] | None) -> pd.DataFrame:
    """The results of one run directory, of ``countries`` (None: all of them)."""
    if not (root / RECORD).exists():
        raise FileNotFoundError(f"{root}: results without {RECORD}, the record a run writes "
                                "last: the run that wrote them did not finish. Run it again.")
    out = pd.read_parquet(root / "results.parquet")
    if countries:
        absent = [c for c in countries if c not in set(out["country"])]
        if absent:
            raise FileNotFoundError(f"{root} holds no results of {absent} (it ran "
                                    f"{sorted(set(out['country']))})")
        out = out[out["country"].isin(countries)].reset_index(drop=True)
    return _renamed(out, root)


def _renamed(out: pd.DataFrame, root: Path) -> pd.DataFrame:
    old = sorted(set(out["variant"]) & set(RENAMED))
    if old:  # results of an earlier version: the variant is kept, under its name of today
        warnings.warn(f"results under {root} name variant(s) {old}, renamed since: read as "
                      f"{[RENAMED[v] for v in old]}", stacklevel=2)
        out["variant"] = out["variant"].replace(RENAMED)
    return out


def _setting_differences(configs: dict[str, dict[str, Any]]) -> list[str]:
    """The settings (section.key) on which the configs differ, but for run.countries, each with
    its value per country: "method.tau: 0.5 (Chile), 0.7 (Mexico)"."""
    keys = sorted({(s, k) for c in configs.values() for s, v in c.items() for k in v}
                  - {("run", "countries")})
    out = []
    for s, k in keys:
        values = {c: cfg.get(s, {}).get(k) for c, cfg in configs.items()}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            out.append(f"{s}.{k}: " + ", ".join(f"{v!r} ({c})" for c, v in values.items()))
    return out


# What else must be one across the runs a chapter reads, and what ``Reopened.prep`` checks it
# prepared again: field -> where a run's record keeps it
RUN_IDENTITY = {
    "data fingerprint": lambda r: r.get("data", {}).get("fingerprint"),
    "global RM (its score-cache key)": lambda r: r.get("global_rm"),
    "global RM commit": lambda r: r.get("global_rm_commit"),
    "code (scpo's source, sha256)": lambda r: r.get("environment", {}).get("scpo_source"),
}


def _identity_differences(records: dict[str, dict[str, Any]]) -> list[str]:
    """The fields of ``RUN_IDENTITY`` on which the records differ, each with its value per
    record: "data fingerprint: 'ab' (Chile), 'cd' (Mexico)"."""
    out = []
    for name, get in RUN_IDENTITY.items():
        values = {c: get(r) for c, r in records.items()}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            out.append(f"{name}: " + ", ".join(f"{v!r} ({c})" for c, v in values.items()))
    return out


@dataclass
class Reopened:
    """Runs read back as they ran (``reopen``): the config of their ``run.json``, their results,
    the run's shared inputs (``prep``, prepared once when first asked) and their saved models."""

    root: Path
    cfg: Config  # as the runs ran, with run.countries: every country reopened
    results: pd.DataFrame
    records: dict[str, dict[str, Any]]  # country -> its run.json

    @property
    def countries(self) -> list[str]:
        return list(pd.unique(self.results["country"]))

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.results["seed"].unique())

    @functools.cached_property
    def prep(self) -> RunInputs:
        """``scpo.scoring.prepare`` of the config they ran with: their pairs, global RM and its
        scores (cached by the runs themselves). Checked against the runs' records: data
        another fingerprint, or a global RM of another cache key or commit, is an error naming
        the page and the field (the data or the model changed since the pages ran)."""
        prep = prepare(self.cfg)
        now = {"data": {"fingerprint": prep.data.fingerprint},
               "global_rm": prep.global_rm.fingerprint(), "global_rm_commit": prep.global_rm.commit}
        for country, record in self.records.items():
            for name in list(RUN_IDENTITY)[:3]:
                ran, have = RUN_IDENTITY[name](record), RUN_IDENTITY[name](now)
                if ran != have:
                    raise ValueError(
                        f"{self.record_path(country)} records {name} {ran!r}, but what is "
                        f"prepared now has {have!r}: the input changed since that run. Rerun "
                        "it (the book's build reruns it when its inputs change).")
        return prep

    def record_path(self, country: str) -> Path:
        """The ``run.json`` a country's results come from."""
        one = self.root / RECORD
        return one if one.is_file() else self.root / country_slug(country) / RECORD

    @functools.cached_property
    def predictions(self) -> pd.DataFrame | None:
        """Each model's outcome on each test pair (``load_predictions``), what verdicts compare
        pair by pair; None when the runs kept none."""
        return load_predictions(self.root, self.countries)

    def model(self, country: str, variant: str, seed: int) -> RewardModel:
        """A model a run saved (``load_model``; the global RM for variant "global")."""
        return load_model(self.root, self.prep.global_rm, country, variant, seed)


def reopen(root: str | Path, countries: list[str] | None = None) -> Reopened:
    """The country pages' runs under ``root`` (those of ``countries``; None: every one found;
    or one run directory of several countries, ``scpo run --out``), as they were run: the
    aggregate chapters read their results and models back under the settings they ran with (a
    page rerun with ``-p tau 0.5`` is read back at tau 0.5), never under a preset's. The pages
    must have run alike but for their country: a setting, the data (its fingerprint), the
    global RM (its cache key, its commit) or the code (scpo's source) that differs between
    them, or a code other than the one running, is an error naming the page and the field.
    What they prepare again is checked against their records too (``Reopened.prep``)."""
    results = load_results(root, countries)
    names = list(pd.unique(results["country"]))
    one = Path(root) / RECORD
    records = {c: json.loads((one if (Path(root) / "results.parquet").is_file()
                              else Path(root) / country_slug(c) / RECORD).read_text())
               for c in names}
    configs = {c: r["config"] for c, r in records.items()}
    differ = _setting_differences(configs) + _identity_differences(records)
    if differ:
        raise ValueError(f"the runs under {root} did not run alike, so no one configuration "
                         "describes them: " + "; ".join(differ)
                         + ". Rerun them alike (or reopen them apart).")
    ran = RUN_IDENTITY["code (scpo's source, sha256)"](records[names[0]])
    if ran != source_hash():
        raise ValueError(f"the runs under {root} ({', '.join(names)}) were made by other code "
                         f"(scpo's source {ran!r}; running: {source_hash()!r}): numbers of other "
                         "code are not read back as this code's. Rerun them (the book's build "
                         "reruns every page when scpo changes).")
    first = dict(configs[names[0]])
    cfg = Config().update({**first, "run": {**first["run"], "countries": names}},
                          where=str(Path(root) / country_slug(names[0]) / RECORD))
    return Reopened(Path(root), cfg, results, records)


def load_model(root: str | Path, global_rm: RewardModel, country: str, variant: str,
               seed: int) -> RewardModel:
    """A minority RM saved by ``save_country`` (``global_rm`` itself for variant "global")."""
    if variant == "global":
        return global_rm
    path = model_dir(root, country, variant, seed)
    if not path.exists():
        raise FileNotFoundError(f"no saved model at {path}; run the country notebook with "
                                f"{variant!r} in its save_variants first")
    return models.load(path, share_with=global_rm)  # the embedding tier's share its encoder


# ---- export: standard Hugging Face checkpoints with a model card ----

def _has_exports(root: Path) -> bool:
    """An export directory of an older scpo (before the marker): it holds exported models."""
    return any(root.glob(f"*/*/*/{'scpo_hf.json'}"))


def export_variants(run_cfg: RunConfig, global_rm: RewardModel, overwrite: bool = False, *,
                    variants: Sequence[Variant]) -> set[str]:
    """The trained variants (of ``variants``, ``run.variants`` resolved) whose models
    ``run.export_dir`` asks for (empty: no export).

    Checked before any training, so a long GPU run cannot end without the checkpoints asked for
    (or end by refusing a folder of the user's: ``scpo.outdir.claim``).
    """
    if not run_cfg.export_dir:
        return set()
    if not global_rm.can_export:
        raise ValueError(f"run.export_dir={run_cfg.export_dir!r} needs model.backend = 'hf' "
                         "or 'partial': the embedding tier's RM (a head on frozen sentence "
                         "embeddings) is not a standard Hugging Face checkpoint. Unset "
                         "run.export_dir or use --backend hf.")
    trained = {v.name for v in variants if v.train}
    wanted = {v.name for v in resolve(run_cfg.export_variants)}
    if not wanted & trained:
        raise ValueError(f"run.export_variants={run_cfg.export_variants} names no trained variant "
                         f"of this run (run.variants={run_cfg.variants}); nothing would be "
                         "exported. Add one of them to run.variants or change run.export_variants.")
    if is_main_process():
        claim(run_cfg.export_dir, overwrite=overwrite, what="exported checkpoints",
              ours=_has_exports)
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
        "test_accuracy": test_accuracies(rows),
        "dataset": data["source"], "data_fingerprint": data["fingerprint"],
        "split_seed": int(config["data"]["split_seed"]),
    }


def test_accuracies(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A card's record of one model's test sets (its result rows): accuracy, its 95 %
    interval, pairs; every card of scpo's records them alike."""
    return {r["test_set"]: {"accuracy": float(r["accuracy"]),
                            "ci95": [float(r["ci_low"]), float(r["ci_high"])],
                            "n_pairs": int(r["n_pairs"])} for r in rows}


def export_model(export_dir: str | Path, model: RewardModel, rows: list[dict[str, Any]],
                 config: dict[str, Any], data: dict[str, Any], overwrite: bool = False) -> Path:
    """``<export_dir>/<Country>/<variant>/seed<k>/``: checkpoint, tokenizer, model card."""
    first = rows[0]
    path = (Path(export_dir) / country_slug(first["country"]) / first["variant"]
            / f"seed{first['seed']}")
    return model.export(path, card_record(rows, config, data), overwrite=overwrite)


def export_saved(results_dir: str | Path, country: str, variant: str, seed: int,
                 out: str | Path, overwrite: bool = False) -> Path:
    """Export a minority RM that ``save_country`` saved (the country notebook keeps its models),
    with the model card filled from that country's results.parquet and run.json. ``out`` must
    be new, empty or an earlier export; a user's non-empty folder only with ``overwrite``."""
    check_writable(out, overwrite=overwrite, what=export.EXPORTED, legacy=export.FILES,
                   ours=lambda p: (p / "scpo_hf.json").is_file())  # before loading any weights
    d = Path(results_dir) / country_slug(country)
    files = [d / "results.parquet", d / "run.json"]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"export: {missing} not found; run the country notebook (or "
                                "save_country) into that results directory first")
    record = json.loads(files[1].read_text())
    res = pd.read_parquet(files[0])
    rows = res[(res["variant"] == variant) & (res["seed"] == seed)].to_dict("records")
    if not rows:
        raise KeyError(f"export: no results for variant {variant!r}, seed {seed} in {files[0]}; "
                       f"it has {sorted(set(zip(res['variant'], res['seed'].astype(int))))}")
    path = model_dir(results_dir, country, variant, seed)
    if not path.exists():
        raise FileNotFoundError(f"export: no saved model at {path} (the global RM is not "
                                "exported: it is the model you started from)")
    model = models.load(path)
    if not model.can_export:
        raise ValueError(f"export: {d} was run with model.backend = "
                         f"{record['config']['model']['backend']!r}; only the hf and partial "
                         "tiers' models are standard Hugging Face checkpoints")
    card = card_record(rows, record["config"], record["data"])
    return model.export(Path(out), card, overwrite=overwrite)
