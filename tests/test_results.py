"""scpo.results: the record of a run states the versions and the scpo commit it ran with."""

import json
import subprocess
from importlib.metadata import version
from pathlib import Path

import scpo
from scpo import results


def test_the_versions_are_read_from_the_running_environment(monkeypatch):
    env = results.environment()
    assert set(env) == {"python", *results.VERSIONED, "scpo", "scpo_commit"}
    assert env["transformers"] == version("transformers") and env["scpo"] == scpo.__version__
    # read, not typed: another installed version is another record
    monkeypatch.setattr(results, "version", lambda name: f"{name}-9.9")
    env = results.environment()
    assert [env[n] for n in results.VERSIONED] == [f"{n}-9.9" for n in results.VERSIONED]


def git(repo: Path, *args: str) -> str:
    who = ["-c", "user.name=t", "-c", "user.email=t@t"]
    return subprocess.run(["git", "-C", str(repo), *who, *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_the_commit_is_the_checkouts_and_says_when_files_differ(tmp_path, monkeypatch):
    pkg = tmp_path / "repo" / "scpo"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    git(pkg.parent, "init", "-q")
    git(pkg.parent, "add", ".")
    git(pkg.parent, "commit", "-q", "-m", "one")
    head = git(pkg.parent, "rev-parse", "HEAD")
    assert results.scpo_commit(pkg) == head
    (pkg / "__init__.py").write_text("x = 2\n")
    assert results.scpo_commit(pkg) == head + "-dirty"
    # a package inside some other repository (a venv in a project) is not a checkout of scpo
    monkeypatch.setattr(results, "installed_commit", lambda: None)
    inside = tmp_path / "repo" / "venv" / "site-packages" / "scpo"
    inside.mkdir(parents=True)
    assert results.scpo_commit(inside) == "unknown"
    # no git at all: still a record
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert results.scpo_commit(pkg) == "unknown"


def test_a_git_install_records_the_commit_pip_wrote(monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"

    class Dist:
        def __init__(self, info):
            self.info = info

        def read_text(self, name):
            return json.dumps(self.info) if name == "direct_url.json" else None

    monkeypatch.setattr(results, "distribution", lambda name: Dist(
        {"url": "https://github.com/o/r", "vcs_info": {"vcs": "git", "commit_id": commit}}))
    assert results.installed_commit() == commit
    monkeypatch.setattr(results, "distribution", lambda name: Dist(
        {"url": "file:///x", "dir_info": {"editable": True}}))
    assert results.installed_commit() is None
