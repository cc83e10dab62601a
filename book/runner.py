"""The book's pages executed with papermill, each again only when what it depends on changed.

doit keeps the record and schedules: a page is a task whose file dependencies are its notebook, the
preset's file, the lock of the environment, the scpo source, its data and the executed pages it
reads; its parameters are a ``config_changed``; its executed notebook and the files it saves are
its targets. The record lives in the store (``--store``), listed in its marker like every file the
build writes there.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from doit import control
from doit.cmd_base import ModuleTaskLoader
from doit.dependency import SqliteDB
from doit.doit_cmd import DoitMain
from doit.exceptions import TaskFailed
from doit.reporter import ConsoleReporter
from doit.tools import config_changed
from launch import BuildError, read_notebook

if TYPE_CHECKING:
    from scpo.outdir import Target

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "scpo"
LOCK = ROOT / "requirements" / "lock.txt"  # every installed distribution, exact (make lock)
# Kernels inherit these unless already set: offline, and no progress bars in the book's pages.
KERNEL_ENV = {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
              "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false",
              # tqdm.auto warns once per kernel that ipywidgets is missing; a plain bar is fine
              "PYTHONWARNINGS": "ignore:IProgress not found"}
KERNEL_START_ATTEMPTS = 3
KERNEL_START_FAILURES = ("Kernel died before replying to kernel_info",
                         "Kernel didn't respond in")
# doit's record of the pages that ran, in the store (sqlite, with its journal or WAL beside it)
DB = "doit.sqlite3"
DB_FILES = tuple(DB + suffix for suffix in ("", "-journal", "-wal", "-shm"))
STORE_KIND = "book store"
STORE_LAYOUT = ("executed", "inputs", "failed", "results", "results-prism", "work")
STORE_FILES = ("executed/*", "inputs/*", "failed/*")  # what the build itself writes in a store


@dataclass
class Job:
    """One notebook execution: a page of the book made from a notebook and its parameters."""

    page: str  # where it lands in the book, without suffix, e.g. "countries/Chile"
    source: Path  # jupytext notebook (MyST markdown) in notebooks/
    params: dict[str, Any]
    inputs: list[str] = field(default_factory=list)  # pages whose saved outputs this one reads
    outputs: list[Path] = field(default_factory=list)  # files a rebuild must still find
    title: str | None = None  # replaces the notebook's first heading (a country's name)
    # (dataset, data_dir, countries) it prepares: warmed before it runs
    warm: tuple[str, str, tuple[str, ...]] | None = None
    data: list[str] = field(default_factory=list)  # more inputs whose files it depends on


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


def execute(job: Job, store: Path, env: dict[str, str]) -> None:
    """Run one notebook with papermill in a subprocess. doit retries nothing, so a kernel that
    never started is started again here: two kernels started at once can be handed the same free
    port (jupyter_client picks it, closes it, and the kernel binds it later), and the second
    dies ("Address already in use") before running a cell."""
    import nbformat

    out, todo = store / "executed" / f"{job.page}.ipynb", store / "inputs" / f"{job.page}.ipynb"
    running = out.with_name(out.stem + ".running.ipynb")
    store_files(store, [f"{d}/{job.page}{s}" for d, s in (
        ("executed", ".ipynb"), ("executed", ".running.ipynb"), ("inputs", ".ipynb"),
        ("failed", ".ipynb"))])
    for d in (out.parent, todo.parent):
        d.mkdir(parents=True, exist_ok=True)
    nbformat.write(read_notebook(job.source), todo)
    cmd = [sys.executable, "-m", "papermill", str(todo), str(running), "-y",
           json.dumps(job.params), "-k", "python3", "--cwd", str(ROOT), "--no-progress-bar"]
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode == 0 or not any(m in proc.stderr + proc.stdout
                                           for m in KERNEL_START_FAILURES):
            break
        print(f"  retrying   {job.page}: its kernel did not start (attempt {attempt})", flush=True)
    if proc.returncode != 0:
        failed = store / "failed" / f"{job.page}.ipynb"
        failed.parent.mkdir(parents=True, exist_ok=True)
        where = "(papermill wrote none)"
        if running.exists():
            os.replace(running, failed)
            where = str(failed)
        rerun = shlex.join(["papermill", str(todo), "out.ipynb", "-y", json.dumps(job.params)])
        raise BuildError(f"notebook {job.source} (page {job.page}, parameters {job.params}) "
                         f"failed.\nThe executed notebook with the error: {where}\nRerun it "
                         f"alone: {rerun}\npapermill said:\n"
                         f"{(proc.stderr.strip() or proc.stdout.strip())[-6000:]}")
    if job.title:
        retitle(running, job.title)
    os.replace(running, out)


class DurableDB(SqliteDB):
    """doit's sqlite3 record, committed as doit writes each value (doit itself commits when the
    run ends): a build killed mid-way keeps the pages it finished. WAL: a commit needs no fsync."""

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None):
        super().__init__(name, codec, module_name=module_name)
        self._conn.execute("pragma journal_mode=wal")
        self._conn.execute("pragma synchronous=normal")

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        super().set(task_id, dependency, value)
        self._conn.execute("insert or replace into doit values (?,?)",
                           (task_id, self.codec.encode(self._cache[task_id])))
        self._conn.commit()

    def remove(self, task_id: str) -> None:
        super().remove(task_id)
        self._conn.commit()


class Report(ConsoleReporter):
    """doit's report as the build's log, one line a page; the failures kept for the error."""

    def __init__(self, log: Any):
        super().__init__(sys.stdout, {})
        self.log, self.failures, self.started = log, [], {}

    def execute_task(self, task: Any) -> None:
        if task.name.startswith("page:"):
            self.started[task.name] = time.perf_counter()
            self.log(f"  executing  {task.name[5:]}  ({task.doc})")

    def skip_uptodate(self, task: Any) -> None:
        self.log(f"  unchanged  {task.name[5:]}")

    def add_success(self, task: Any) -> None:
        if task.name in self.started:
            seconds = time.perf_counter() - self.started[task.name]
            self.log(f"  done       {task.name[5:]}  {seconds:.0f} s")

    def add_failure(self, task: Any, fail: Any) -> None:
        self.failures.append(fail.get_msg().strip())
        self.log(f"  FAILED     {task.name.removeprefix('page:')}")

    def runtime_error(self, msg: str) -> None:
        self.failures.append(msg)

    def complete_run(self) -> None:
        pass  # the build raises the first failure


def data_files(path: str) -> list[Path]:
    """The files of a data file or folder: each one a dependency of the pages that read it."""
    p = Path(path)
    if not p.exists():
        raise BuildError(f"data path {p} does not exist; fix --data-dir / SCPO_DATA_DIR")
    return [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]


def package_files() -> list[Path]:
    """The scpo source: code, presets and simulator banks (what decides every number)."""
    return sorted(p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix in (
        ".py", ".toml", ".json") and "__pycache__" not in p.parts)


# Actions print to the terminal as they are: doit's capture swaps sys.stdout, process-wide, for
# each action, which threads running at once interleave (a line's end went to another's capture)
IO = {"capture": False}


def file_states(paths: list[Path]) -> dict[str, tuple[int, int] | None]:
    """Each file's (modification time in ns, size), None when it is missing: what tells a file
    edited while a page ran (doit itself looks at the time first, then the contents)."""
    out: dict[str, tuple[int, int] | None] = {}
    for p in map(str, paths):
        try:
            st = os.stat(p)
            out[p] = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            out[p] = None
    return out


def page_task(job: Job, store: Path, env: dict[str, str], warm: str | None) -> dict[str, Any]:
    """The doit task of a page: its file dependencies (the notebook, the preset's file, the
    lock, the scpo source, its data, the executed pages it reads), its parameters
    (``config_changed``) and the files it makes (a missing one runs it again)."""
    from scpo.config import preset_path

    deps = [job.source, LOCK, *package_files(), *(
        store / "executed" / f"{p}.ipynb" for p in job.inputs)]
    if "preset" in job.params:  # by its contents: --preset my.toml is edited in place
        deps.append(preset_path(job.params["preset"]))
    for path in [v for k, v in job.params.items() if k.endswith("data_dir") and v] + job.data:
        deps += data_files(path)

    def run() -> TaskFailed | None:
        before = file_states(deps)
        try:
            execute(job, store, env)
        except BuildError as e:
            return TaskFailed(str(e))
        # doit records its dependencies' state when the page ends: one edited while the page
        # ran would be recorded as what the page was made from. Not recorded, said instead.
        changed = [p for p, state in file_states(deps).items() if before[p] != state]
        if changed:
            return TaskFailed(f"{job.page}: {changed[0]} changed while the page ran"
                              f"{f' (and {len(changed) - 1} more files)' if changed[1:] else ''}"
                              "; the page is not recorded as built: build again")
        return None

    return {"name": job.page, "doc": job.source.name, "actions": [run],
            "file_dep": sorted({str(p) for p in deps}),
            "targets": [str(store / "executed" / f"{job.page}.ipynb"), *map(str, job.outputs)],
            "uptodate": [config_changed({"params": job.params, "title": job.title})],
            "setup": [f"warm:{warm}"] if warm else [], "io": IO}


WARMING = threading.Lock()  # the warm-ups train in this process: one at a time (torch's seed)
Warm = Callable[[str, str, str, list[str]], None]  # (preset, dataset, data_dir, countries)


class _Queue(dict):
    """A set that keeps the order things were added in."""

    def add(self, item: Any) -> None:
        self[item] = None


def _ordered_node(init: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.waiting_me = _Queue()
    return __init__


# doit starts the pages that a finished page held back in the order of a set (of their memory
# addresses); in the order they were queued instead, the catalogue's: the long chapters first,
# so the build does not end waiting for one of them (doit 0.37's ExecNode.waiting_me)
control.ExecNode.__init__ = _ordered_node(control.ExecNode.__init__)


def run_jobs(jobs: list[Job], store: Path, workers: int, force: bool, log: Any = print,
             warm: Warm | None = None) -> None:
    """Execute the pages whose inputs changed, ``workers`` at a time, in their order (doit);
    ``warm`` prepares a job's data (``Job.warm``) before the first of its pages that runs, and
    not at all when none does.

    On a failure no new notebook starts; the running ones finish, then the first error raises.
    """
    known = {j.page for j in jobs}
    for j in jobs:
        if set(j.inputs) - known:
            raise BuildError(f"job {j.page} depends on unknown page(s) "
                             f"{sorted(set(j.inputs) - known)}")
    if not jobs:
        return
    env = {**KERNEL_ENV, **os.environ}
    warms = {w: (f"{w[0]}-{i}", next(j.params["preset"] for j in jobs if j.warm == w))
             for i, w in enumerate(dict.fromkeys(j.warm for j in jobs if j.warm and warm))}

    def warm_up(w: tuple[str, str, tuple[str, ...]], preset: str) -> TaskFailed | None:
        with WARMING:
            t0 = time.perf_counter()
            log(f"  warming the caches of {w[0]} data {w[1] or '(simulated)'}")
            try:
                warm(preset, w[0], w[1], list(w[2]))
            except BuildError as e:  # the loader's error, not doit's traceback of this action
                return TaskFailed(str(e))
            log(f"  warm       {w[0]}  {time.perf_counter() - t0:.0f} s")
        return None

    report = Report(log)
    tasks = {
        "task_page": lambda: (page_task(j, store, env, warms[j.warm][0] if j.warm in warms
                                        else None) for j in jobs),
        "task_warm": lambda: ({"name": name, "actions": [(warm_up, (w, preset))], "io": IO}
                              for w, (name, preset) in warms.items()),
        "DOIT_CONFIG": {"dep_file": str(store / DB), "backend": "durable", "always": force,
                        "num_process": max(1, workers), "par_type": "thread", "verbosity": 0,
                        "reporter": report, "default_tasks": [f"page:{j.page}" for j in jobs]}}
    store_files(store, DB_FILES)
    doit = DoitMain(ModuleTaskLoader(tasks), config_filenames=(),
                    extra_config={"BACKEND": {"durable": f"{__name__}:DurableDB"}})
    if doit.run([]) != 0:
        raise BuildError(report.failures[0] if report.failures else "doit stopped the build")


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


def store_files(store: Path, names: list[str] | tuple[str, ...]) -> None:
    """List files the build writes in the store in its marker before writing them
    (``scpo.outdir.Target.add``); a file of the user's under one of their names is refused."""
    try:
        claim_store(store).add(names)
    except FileExistsError as e:
        raise BuildError(f"--store {e}") from None


