"""The locked environment: requirements/lock.txt agrees with pyproject.toml (checked offline,
with ``packaging``, not by resolving again), holds a hash for every file, and is exactly what the
running venv has installed."""

import os
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import distributions
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
FIX = "run `make lock` (it resolves pyproject.toml again and rewrites requirements/lock.txt)"


@dataclass
class Locked:
    version: Version
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)  # what asked for it, as uv annotated it


@dataclass
class Lock:
    command: list[str]  # the `uv pip compile` arguments of its header
    entries: dict[str, Locked]

    def options(self, flag: str) -> list[str]:
        return [self.command[i + 1] for i, a in enumerate(self.command) if a == flag]

    def inputs(self) -> list[str]:
        """The requirement files it was resolved from (pyproject.toml, requirements/*.in)."""
        takes_value = {a for a in self.command if a.startswith("-")} - {"--generate-hashes"}
        return [a for i, a in enumerate(self.command[3:], 3)
                if not a.startswith("-") and self.command[i - 1] not in takes_value]


def read_lock(text: str) -> Lock:
    """uv's pip-compile format: ``name==version \\`` then ``--hash`` lines, then ``# via`` ones."""
    command, entries, current, in_via = [], {}, None, False
    for line in text.splitlines():
        stripped = line.strip().rstrip("\\").strip()
        if line.startswith("#    uv pip compile"):
            command = shlex.split(line.lstrip("# "))
        elif line and not line[0].isspace() and not line.startswith("#"):
            req = Requirement(stripped)
            (spec,) = req.specifier
            current = entries[canonicalize_name(req.name)] = Locked(Version(spec.version))
            in_via = False
        elif current and stripped.startswith("--hash="):
            current.hashes.append(stripped.removeprefix("--hash="))
        elif current and stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            in_via = not rest
            current.via += [rest] if rest else []
        elif current and in_via and stripped.startswith("#   "):
            current.via.append(stripped.removeprefix("#").strip())
    return Lock(command, entries)


def target_environment(lock: Lock) -> dict[str, str]:
    """Markers evaluate as on the lock's platform (CPython 3.11 on Linux x86_64)."""
    (python,) = lock.options("--python-version")
    return {**default_environment(), "python_version": python, "python_full_version": python,
            "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "platform_machine": "x86_64", "implementation_name": "cpython",
            "platform_python_implementation": "CPython"}


def asked_for(pyproject: dict, files: dict[str, str], lock: Lock) -> list[tuple[Requirement, str]]:
    """Every requirement the lock was resolved from, with where it is written."""
    project = pyproject["project"]
    extras, env = lock.options("--extra"), target_environment(lock)
    out = [(Requirement(r), "pyproject.toml [project] dependencies")
           for r in project["dependencies"]]
    todo, done = list(extras), set()
    while todo:  # an extra may name the project's own other extras (scpo[notebooks])
        extra = todo.pop()
        if extra in done:
            continue
        done.add(extra)
        for text in project.get("optional-dependencies", {}).get(extra, []):
            req = Requirement(text)
            if canonicalize_name(req.name) == canonicalize_name(project["name"]):
                todo += sorted(req.extras)
            else:
                out.append((req, f"pyproject.toml extra {extra!r}"))
    for name, text in files.items():
        for line in text.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                out.append((Requirement(line), name))
    return [(r, where) for r, where in out
            if r.marker is None or r.marker.evaluate({**env, "extra": ""})]


def lock_problems(pyproject: dict, files: dict[str, str], lock: Lock) -> list[str]:
    """Where the lock no longer holds what pyproject.toml and the .in files ask for: one line
    per package, naming it."""
    problems = []
    asked = asked_for(pyproject, files, lock)
    for req, where in asked:
        name = canonicalize_name(req.name)
        got = lock.entries.get(name)
        if got is None:
            problems.append(f"{name}: {where} asks for {req}, requirements/lock.txt has no "
                            f"{name}; {FIX}")
        elif not req.specifier.contains(got.version, prereleases=True):
            problems.append(f"{name}: {where} asks for {req}, requirements/lock.txt has "
                            f"{got.version}; {FIX}")
    names = {canonicalize_name(r.name) for r, _ in asked}
    sources = {"scpo (pyproject.toml)", *(f"-r {f}" for f in files)}
    for name, got in lock.entries.items():
        parents = [v for v in got.via if v not in sources]
        if name not in names and not parents:
            problems.append(f"{name}: requirements/lock.txt holds it because {got.via} asked, "
                            f"which no longer do; {FIX}")
        for parent in parents:
            if canonicalize_name(parent) not in lock.entries:
                problems.append(f"{name}: locked for {parent}, which the lock no longer has; "
                                f"{FIX}")
    for f in lock.options("--excludes"):
        for line in files.get(f, (ROOT / f).read_text()).splitlines():
            line = line.split("#")[0].strip()
            if line and canonicalize_name(line) in lock.entries:
                problems.append(f"{line}: excluded by {f} but in requirements/lock.txt; {FIX}")
    return problems


def project_files(lock: Lock) -> tuple[dict, dict[str, str]]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    files = {f: (ROOT / f).read_text() for f in lock.inputs() if f != "pyproject.toml"}
    return pyproject, files


@pytest.fixture(scope="module")
def lock() -> Lock:
    return read_lock(LOCK.read_text())


def test_the_lock_agrees_with_pyproject(lock):
    assert lock.inputs() == ["pyproject.toml", "requirements/companion.in"]
    assert lock.options("--extra") == ["cpu", "test", "book", "gpu"]
    assert len(lock.entries) > 100 and "transformers" in lock.entries
    assert lock_problems(*project_files(lock), lock) == []


def test_a_change_to_pyproject_is_named_until_the_lock_follows(lock):
    pyproject, files = project_files(lock)
    deps = pyproject["project"]["dependencies"]
    at = next(i for i, d in enumerate(deps) if d.startswith("transformers"))
    deps[at] = "transformers>=99"  # a newer bound than the lock's
    deps.append("tomli-w>=1")  # a new dependency
    pyproject["project"]["optional-dependencies"]["gpu"] = []  # peft is still in "test"
    pyproject["project"]["dependencies"] = [d for d in deps if not d.startswith("tqdm")]
    problems = lock_problems(pyproject, files, lock)
    assert any(p.startswith("transformers: pyproject.toml [project] dependencies asks for "
                            "transformers>=99, requirements/lock.txt has 5.") for p in problems)
    assert any(p.startswith("tomli-w: ") and "has no tomli-w" in p for p in problems)
    assert not any(p.startswith("peft") or p.startswith("tqdm") for p in problems), problems
    assert all("make lock" in p for p in problems) and len(problems) == 2
    # a dependency no one asks for any more: matplotlib is only scpo's own
    pyproject["project"]["dependencies"].remove(next(d for d in deps if d.startswith("matpl")))
    assert any(p.startswith("matplotlib: requirements/lock.txt holds it because")
               for p in lock_problems(pyproject, files, lock))
    # the CPU build of torch is what the lock must name, not PyPI's (CUDA) 2.13.0
    cpu = {f: t.replace("torch==2.13.0+cpu", "torch==2.13.0+cu128") for f, t in files.items()}
    assert any(p.startswith("torch: requirements/companion.in asks for torch==2.13.0+cu128")
               for p in lock_problems(*project_files(lock)[:1], cpu, lock))


def test_every_locked_file_has_its_sha256(lock):
    unhashed = [n for n, e in lock.entries.items()
                if not e.hashes or not all(h.startswith("sha256:") for h in e.hashes)]
    assert unhashed == []
    assert str(lock.entries["torch"].version) == "2.13.0+cpu"


def installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}


def env_problems(have: dict[str, str], lock: Lock, project: str = "scpo") -> list[str]:
    """Each difference between the installed distributions and the lock, by name."""
    want = {n: str(e.version) for n, e in lock.entries.items()}
    out = [f"{n}: installed {v}, locked {want[n]}" for n, v in sorted(have.items())
           if n in want and Version(v) != Version(want[n])]
    out += [f"{n}: installed {have[n]} but not in the lock" for n in sorted(set(have) - set(want))
            if n != project]
    out += [f"{n}: locked {want[n]}, not installed" for n in sorted(set(want) - set(have))]
    return out


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                    reason="runs in this checkout's .venv, the environment the lock describes")
def test_the_running_venv_is_exactly_the_lock(lock):
    have = installed()
    assert env_problems(have, lock) == [], "rm .venv/.installed-*; make test: syncs the lock"
    assert env_problems({**have, "six": "1.17.0"}, lock) == ["six: installed 1.17.0 but not in "
                                                             "the lock"]


def test_environment_yml_installs_the_lock(lock):
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    (pip,) = [d["pip"] for d in deps if isinstance(d, dict)]
    assert f"python={lock.options('--python-version')[0]}" in deps
    assert "-r requirements/lock.txt" in pip
    # nothing else unpinned: every other line is an option (torch's index)
    assert all(p.startswith("-") for p in pip), pip


def test_the_conda_command_installs_the_lock_without_pips_resolver():
    """A locked package's declared dependency is left out of the lock (exclude.txt), so pip's
    resolver refuses the lock ("must have their versions pinned"); measured: plain
    `pip install -r requirements/lock.txt` exits 1, with PIP_NO_DEPS=1 it installs. The command
    environment.yml and the README give must say so while anything is excluded."""
    excluded = [line.split("#")[0].strip() for line in
                (ROOT / "requirements" / "exclude.txt").read_text().splitlines()]
    assert [e for e in excluded if e] == ["sentence-transformers"]
    command = "PIP_NO_DEPS=1 conda env create -f environment.yml"
    assert command in (ROOT / "environment.yml").read_text()
    assert command in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("store, want", [(None, "1"), ("/no/such/bundle.crt", "unset")])
def test_uv_reads_the_systems_certificates_as_pip_does(tmp_path, store, want):
    """Issue 35: behind a proxy whose certificate authority is in the system store, pip
    installed and the Makefile's uv failed at the lock (uv reads its own bundle): every uv the
    Makefile runs reads the system's store, wherever there is one (a stand-in uv records what
    it was given)."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("no make here")
    if store is None and not any(Path(f).exists() for f in (
            "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/cert.pem")):
        pytest.skip("no system certificate store here")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    uv = tmp_path / "uv"
    uv.write_text('#!/bin/sh\necho "${UV_SYSTEM_CERTS-unset}" > "$(dirname "$0")/seen"\n')
    uv.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "UV_SYSTEM_CERTS"}
    extra = [] if store is None else [f"SYSTEM_CERT_FILES={store}"]
    subprocess.run(["make", "-s", "-C", str(tmp_path), f"UV={uv}", *extra, "lock"], env=env,
                   check=True, capture_output=True)
    assert (tmp_path / "seen").read_text().strip() == want
