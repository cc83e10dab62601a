"""The executed notebooks as the book: its source tree (book/ with the pages, what a reader sees
of their code, the versions their numbers came from, the launch buttons, the table of contents,
the files of "Turn the dial yourself"), rendered by Jupyter Book and put in place of the old book
only when that succeeded, and only where the folder is a book's (``--build-dir``)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from launch import LAUNCH_BRANCH, BuildError, repository_url, with_install_cell
from runner import Job

BOOK = Path(__file__).resolve().parent
# "Turn the dial yourself": its notebook writes the files a reader's browser scores with
# (scpo.companion.browser) into <work_dir>/web/; the build serves them from the book's _static/dial/
TRY_PAGE, TRY_STATIC = "try", "dial"
# book/intro.md's "Building this book": the build writes the versions of its runs here
ENVIRONMENT_MARKER = "<!-- book/build.py writes the environment here -->"


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



def stage_try_files(src: Path, jobs: list[Job]) -> None:
    """The files the page "try" wrote for the reader's browser (the exported encoder, the
    heads, the pinned JavaScript runtime; ``scpo.companion.browser.write_bundle``) into the staged
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

    from scpo.results import country_slug

    seen: dict[str, list[str]] = {}
    for job in jobs:
        if "country" not in job.params:
            continue
        record = Path(job.params["results_dir"]) / country_slug(job.params["country"]) / "run.json"
        env = json.loads(record.read_text()).get("environment") if record.is_file() else None
        if not isinstance(env, dict):
            raise BuildError(f"{record}: no run record with an 'environment' (a run of an older "
                             "scpo?); build again with --force to rerun the country notebooks")
        label = job.params["country"] + (" (PRISM)" if job.page.startswith("prism/") else "")
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


def assemble(jobs: list[Job], store: Path, src: Path, chapters: list[dict[str, Any]]) -> None:
    """The book's source tree: book/ (prose, config, toc) plus the executed notebooks, and in
    the place of each chapter (of ``chapters``, the catalogue's) this build could not run, its
    page of book/missing/ saying how to add it."""
    if src.exists():
        shutil.rmtree(src)
    # book/ holds no hidden file of the book's; a build's own staging and swap directories
    # (".<build dir>-staging-*", beside the default book/_build) must not copy into themselves;
    # nor the build's own scripts, catalogue and pages for chapters it could not run
    shutil.copytree(BOOK, src, ignore=shutil.ignore_patterns(
        "_build", "generated", *(p.name for p in BOOK.glob("*.py")), "chapters.toml", "missing",
        "__pycache__", "*.pyc", ".*"))
    documented: set[Path] = set()  # notebooks whose first page documents their functions
    for job in jobs:
        dest = src / f"{job.page}.ipynb"
        dest.parent.mkdir(parents=True, exist_ok=True)
        nb = for_readers(with_install_cell(json.loads(
            (store / "executed" / f"{job.page}.ipynb").read_text())))
        if job.source in documented:
            nb = without_index(nb)
        documented.add(job.source)
        dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False))
    configure(src / "_config.yml", launch_pages(jobs))
    stage_try_files(src, jobs)
    write_environment(src / "intro.md", jobs)
    built = {j.page for j in jobs}
    sections: dict[str, list[dict[str, str]]] = {}
    for ch in chapters:
        glob = ch["page"].replace("{slug}", "*")
        if ch.get("section_of") and any(fnmatch.fnmatch(p, glob) for p in built):
            sections.setdefault(ch["section_of"], []).append(
                {"glob": glob} if ch.get("each") else {"file": ch["page"]})
        if ch.get("missing") and ch["page"] not in built:
            (src / f"{ch['page']}.md").parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(BOOK / "missing" / ch["missing"], src / f"{ch['page']}.md")
    with_sections(src / "_toc.yml", sections)


BOOK_KIND = "book"  # the kind of output (scpo.outdir's marker) of a built book
# an older book's files (its marker listed none): Sphinx's folders, book-check's screenshots
BOOK_FILES = ("html/*", "jupyter_execute/*", ".doctrees/*", "screenshots/*.png")


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
