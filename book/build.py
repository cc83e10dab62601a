"""Build the scpo book: execute its notebooks with papermill, then render them with Jupyter Book.

    python book/build.py                          # the embedded default: simulated data, "default"
    python book/build.py --preset tiny            # the small CI book (2 countries, 1 seed)
    python book/build.py --data-dir /path/to/data    # + the real-data chapters
    python book/build.py convert                  # notebooks/*.md -> notebooks/*.ipynb, then e.g.
    papermill notebooks/country.ipynb out/Chile.ipynb -p country Chile -p tau 0.6
    python book/build.py launch-branch            # those .ipynb as branch "notebooks" (Colab)

Why a driver rather than Jupyter Book's own execution: the country notebook runs once per country
with different parameters (papermill), and the results chapters read what the country notebooks
saved instead of retraining it. Which pages there are is data, book/chapters.toml; doit runs them:
a page runs again only when its notebook, parameters, preset, data, the scpo package, the lock of
the environment or a page it reads changed, so a warm rebuild is mostly the Sphinx step. A failing
notebook stops the build with papermill's error (the failing cell and its traceback) and a
non-zero exit; the book is rendered into a staging directory and swapped into place only on
success, so a failed build never replaces the previous one.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import os
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import launch
import pages
import runner
from launch import LAUNCH_BRANCH, BuildError, convert
from runner import KERNEL_ENV, Job

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = ROOT / "notebooks"
CATALOGUE = BOOK / "chapters.toml"  # the chapters: page, notebook, parameters, what they read
PRISM_RESULTS = "results-prism"  # PRISM on a laptop's results, in the store


# ---------------------------------------------------------------------------- the data
def catalogue() -> dict[str, Any]:
    return tomllib.loads(CATALOGUE.read_text())


def layout() -> dict[str, str]:
    """Where each input sits in a data directory: the pins' ``dest`` (where ``scpo fetch`` puts
    it; scpo/pins.toml) and the catalogue's [data_dirs] (put there by hand)."""
    from scpo.companion.fetch import load_pins

    return {**{n: p.dest for n, p in load_pins().items()}, **catalogue()["data_dirs"]}


def resolve_data_dir(data_dir: str, dataset: str) -> str:
    """The data of ``dataset`` inside a data directory: its folder if present (prism/,
    globalopinionqa/, sim/), else the directory itself; "" for a fresh simulation."""
    if not data_dir:
        return ""
    sub = Path(data_dir) / layout()[dataset]
    if sub.is_dir():
        return str(sub.resolve())
    return "" if dataset == "sim" else str(Path(data_dir).resolve())


def part_dir(data_dir: str, name: str, holds: Any) -> str:
    """The folder of input ``name`` in the data directory when ``holds(folder)``, else ""."""
    d = Path(data_dir) / layout()[name] if data_dir else None
    return str(d.resolve()) if d is not None and d.is_dir() and holds(d) else ""


def prism_dir(data_dir: str) -> str:
    from scpo.companion.fetch import load_pins

    needs = load_pins()["prism"].required  # one is enough: the loader names one that is missing
    return part_dir(data_dir, "prism", lambda d: any((d / f).is_file() for f in needs))


def carb_dir(data_dir: str) -> str:
    return part_dir(data_dir, "carb",
                    lambda d: any(p.suffix in (".json", ".jsonl") for p in d.rglob("*")))


def goqa_dir(data_dir: str) -> str:
    """Where GlobalOpinionQA's csv is: its folder in the data directory, or the directory
    itself; "" when it is in neither."""
    from scpo.companion.fetch import load_pins

    csv = Path(load_pins()["goqa"].required[0]).name
    there = part_dir(data_dir, "goqa", lambda d: (d / csv).is_file())
    return there or (str(Path(data_dir).resolve()) if data_dir and (Path(data_dir) / csv)
                     .is_file() else "")


def pinned(patterns: list[str], data_dir: str) -> list[str]:
    """The folders of the data directory that hold these inputs of scpo/pins.toml."""
    found = {str((Path(data_dir) / dest).resolve()) for name, dest in layout().items()
             if any(fnmatch.fnmatch(name, p) for p in patterns) and (Path(data_dir) / dest)
             .is_dir()}
    return sorted(found)


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


def slug(country: str) -> str:
    """A country's page and folder name; a name that is not one path component (say
    ``../../x``) is refused before anything is written (``scpo.results.country_slug``)."""
    from scpo.results import country_slug

    try:
        return country_slug(country)
    except ValueError as e:
        raise BuildError(f"--countries: {e}") from None


# ---------------------------------------------------------------------------- the plan
def fill(template: Any, values: dict[str, Any]) -> Any:
    """A catalogue value with the build's ``values`` put in; a list is joined with ";"."""
    if isinstance(template, list):
        return ";".join(fill(t, values) for t in template)
    return template.format_map(values) if isinstance(template, str) else template


def plan(preset: str, dataset: str | None, data_dir: str, countries: list[str] | None,
         store: Path, published: str = "") -> list[Job]:
    """Every notebook of the book with its parameters, in the order they are started: the
    chapters of the catalogue (book/chapters.toml) whose part this build has."""
    from scpo.companion.published import rescorable
    from scpo.config import load_preset
    from scpo.pairs import PAPER_COUNTRIES

    cat, cfg = catalogue(), load_preset(preset)
    dataset = dataset or cfg.data.dataset
    countries = list(countries or cfg.run.countries)
    countries = list(PAPER_COUNTRIES) if countries == ["all"] else countries
    main, left = resolve_data_dir(data_dir, dataset), {}
    if main:  # a preset on real data runs the countries those data cover
        countries, left = coverage(preset, dataset, main, countries)
    goqa, prism = goqa_dir(data_dir), prism_dir(data_dir)
    # the countries PRISM's files hold (a sample may lack some: their pages are left out, said)
    covered, prism_left = coverage(preset, "prism", prism, countries) if prism else ([], {})
    # the authors' models whose country PRISM covers, with PRISM and the global RM beside them
    rescore = [c for c in rescorable(data_dir, countries) if c in covered] if data_dir else []
    committed = {k: ROOT / v for k, v in cat["committed"].items()}
    pub = Path(published).resolve() if published else None
    parts = {"goqa": bool(goqa), "carb": bool(carb_dir(data_dir)), "rescore": bool(rescore),
             "published": not rescore and pub is not None and (pub / "results.parquet").is_file(),
             "goqa-beside": bool(goqa) and dataset != "goqa",
             "prism-beside": bool(prism) and dataset != "prism",
             "prism-pages": bool(prism) and dataset != "prism" and bool(covered),
             **{k: (committed[k] / "results.csv").is_file() for k in ("ladder", "released")}}
    root = str(Path(data_dir).resolve()) if data_dir else ""
    values = {"preset": preset, "results": str(store / "results"), "data_root": root,
              "prism_results": str(store / PRISM_RESULTS), "carb": carb_dir(data_dir),
              # GlobalOpinionQA's revision is recorded when it is where scpo fetch puts it
              "goqa_root": root if goqa and goqa == part_dir(data_dir, "goqa", bool) else "",
              **{k: str(v) for k, v in committed.items()}, "published": str(pub or ""),
              "rescore": ",".join(rescore), "prism_countries": ",".join(covered),
              "left_out": "; ".join(f"{c}: {why}" for c, why in (left | prism_left).items()),
              "prism_left_out": "; ".join(f"{c}: {why}" for c, why in prism_left.items()),
              "work_of": {c["page"]: str(store / "work" / Path(c["page"]).name)
                          for c in cat["chapter"]}}
    on_data = {"main": (dataset, main, countries), "goqa": ("goqa", goqa, countries),
               "prism": ("prism", prism, covered)}
    jobs, reads = [], []
    for ch in cat["chapter"]:
        if "when" in ch and not parts[ch["when"]]:
            continue
        on = on_data[ch.get("on", "main")]
        extra = [w for part, w in ch.get("with", {}).items() if parts[part]]
        params = dict(ch.get("params", {}))
        for w in extra:  # a list grows, a value is replaced
            params |= {k: params.get(k, []) + v if isinstance(v, list) else v
                       for k, v in w.get("params", {}).items()}
        params |= cat.get("by_preset", {}).get(preset, {}).get(ch["notebook"], {})
        for country in on[2] if ch.get("each") else [None]:
            v = {**values, "dataset": on[0], "data_dir": on[1], "countries": ",".join(on[2]),
                 "country": country, "slug": slug(country) if country else ""}
            page = fill(ch["page"], v)
            v["work"] = str(store / "work" / Path(page).name)
            data = [fill(d, v) for w in [ch, *extra] for d in w.get("data", [])]
            jobs.append(Job(page, NOTEBOOKS / ch["notebook"],
                            {k: fill(t, v) for k, t in params.items()},
                            outputs=[Path(fill(o, v)) for o in ch.get("outputs", [])],
                            title=fill(ch["title"], v) if "title" in ch else None,
                            warm=(on[0], on[1], tuple(on[2])) if ch.get("warm") else None,
                            data=list(dict.fromkeys(data)) + pinned(ch.get("pins", []),
                                                                     data_dir)))
            reads.append([r for w in [ch, *extra] for r in w.get("reads", [])])
    for job, patterns in zip(jobs, reads):
        job.inputs = [j.page for j in jobs if any(fnmatch.fnmatch(j.page, p) for p in patterns)]
    return jobs


def warm_caches(preset: str, dataset: str, data_dir: str, countries: list[str]) -> None:
    """Embed every text and train the global RM once, here, before the pages of these data
    run, for those of ``countries`` the data cover (``coverage``: the pages run no other).

    Their pages can then run in parallel on a warm cache, and the progress bars of this long
    step go to the terminal instead of into a page of the book.
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


def build(args: argparse.Namespace) -> Path:
    from scpo.config import cache_dir
    from scpo.outdir import Busy, hold

    t0 = time.perf_counter()
    build_dir = Path(args.build_dir).resolve()
    pages.check_build_dir(build_dir)
    # one store per preset and dataset; doit's record in it decides what is still valid
    name = f"{Path(args.preset).stem}-{args.dataset or 'preset-data'}"
    store = Path(args.store) if args.store else cache_dir() / "book" / name
    jobs = plan(args.preset, args.dataset, args.data_dir or "", args.countries, store,
                args.published or "")
    runner.claim_store(store)
    with contextlib.ExitStack() as held:  # one build at a time uses a store
        try:
            held.enter_context(hold(store, wait=False, what="book's executed notebooks"))
        except Busy as e:
            raise BuildError(f"--store {e}") from None
        print(f"book: {len(jobs)} notebooks, executed copies in {store}")
        runner.run_jobs(jobs, store, args.jobs, args.force, warm=warm_caches)
        t_exec = time.perf_counter() - t0
        build_dir.parent.mkdir(parents=True, exist_ok=True)
        # the build's own staging directory, beside the book (a rename moves it into place)
        staging = Path(tempfile.mkdtemp(prefix=f".{build_dir.name}-staging-",
                                        dir=build_dir.parent))
        try:
            pages.assemble(jobs, store, staging / "src", catalogue()["chapter"])
            html = pages.render(staging / "src", staging, build_dir, strict=not args.lenient)
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
            print(f"{LAUNCH_BRANCH} {launch.launch_branch()}")
        else:
            build(args)
    except BuildError as e:
        print(f"\nbook build FAILED: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
