"""book/build.py: what reruns a page (doit), the plan from the catalogue, failure handling,
and a real build of the tiny book."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import book_build
from hubcache import stand_in_hub

from scpo.outdir import MARKER, mark, read_marker

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
NOTEBOOK = """---
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A test page

```{{code-cell}} ipython3
:tags: [parameters]
x = 1  # a number
```

```{{code-cell}} ipython3
{body}
```
"""


build = book_build()


def notebook(path: Path, body: str) -> Path:
    path.write_text(NOTEBOOK.format(body=body))
    return path


# ---------------------------------------------------------------------------- what reruns a page
@pytest.fixture
def fake_papermill(monkeypatch):
    """``runner.execute`` replaced by one that writes the executed notebook (a new one each run)
    and the page's outputs without a kernel: which pages run is read from doit's log."""
    def execute(job, store, env):
        out = store / "executed" / f"{job.page}.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"params": job.params, "ran": time.perf_counter_ns()}))
        for path in job.outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("saved")

    monkeypatch.setattr(build.runner, "execute", execute)


def test_a_page_whose_notebook_is_edited_while_it_runs_is_not_recorded(tmp_path, monkeypatch):
    """doit records a page's dependencies when it ends: an edit made while the page ran would
    be recorded as what the page was made from (a stale page read as current). The build fails
    naming the file instead, and the next build runs the page again."""
    src = notebook(tmp_path / "one.md", "x = 1")
    edits = iter(["x = 2"])

    def execute(job, store, env):
        out = store / "executed" / f"{job.page}.ipynb"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}")
        body = next(edits, None)
        if body:  # the reader edits the notebook while its page runs
            notebook(src, body)
            os.utime(src, ns=(time.time_ns() + 10**9,) * 2)

    monkeypatch.setattr(build.runner, "execute", execute)
    jobs = [build.runner.Job("one", src, {})]
    log: list[str] = []
    with pytest.raises(build.BuildError, match="one.md changed while the page ran"):
        build.runner.run_jobs(jobs, tmp_path / "store", workers=1, force=False, log=log.append)
    assert executed(jobs, tmp_path / "store") == ["one"]  # not recorded: it runs again
    assert executed(jobs, tmp_path / "store") == []  # and now it is


def executed(jobs: list, store: Path, force: bool = False) -> list[str]:
    log: list[str] = []
    build.runner.run_jobs(jobs, store, workers=1, force=force, log=log.append)
    return [line.split()[1] for line in log if line.split()[0] == "executing"]


def test_a_page_runs_again_when_what_it_depends_on_changes_and_only_then(tmp_path, monkeypatch,
                                                                         fake_papermill):
    """doit's dependencies of a page: its notebook, parameters and title, the contents of its
    preset (``--preset my.toml`` edited in place), the lock (another transformers can move
    every number), the scpo source (code, presets, simulator banks; not caches or notes), its
    data and the pages it reads; a missing output runs it again. Nothing else does."""
    pkg, lock, preset = tmp_path / "scpo", tmp_path / "lock.txt", tmp_path / "my.toml"
    for rel, text in [("method.py", "x = 1\n"), ("presets/tiny.toml", "[run]\n"),
                      ("sim_banks/phrases.json", "{}")]:
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    lock.write_text("transformers==5.25.0\n")
    preset.write_text("[method]\ntau = 0.5\n")
    monkeypatch.setattr(build.runner, "PACKAGE", pkg)
    monkeypatch.setattr(build.runner, "LOCK", lock)
    src, other = notebook(tmp_path / "nb.md", "print(x)"), notebook(tmp_path / "o.md", "x")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("1,2\n")
    (tmp_path / "extra.csv").write_text("1\n")
    store = tmp_path / "store"

    def jobs(x=1, title=None):
        return [build.Job("page", src, {"x": x, "data_dir": str(data), "preset": str(preset)},
                          title=title, data=[str(tmp_path / "extra.csv")],
                          outputs=[store / "results" / "page.parquet"]),
                build.Job("reader", other, {}, inputs=["page"]),
                build.Job("alone", other, {"y": 1})]

    assert executed(jobs(), store) == ["page", "reader", "alone"]
    assert executed(jobs(), store) == []  # same inputs: nothing runs
    everyone = [lambda: lock.write_text("transformers==5.26.0\n")] + [
        lambda rel=rel: (pkg / rel).write_text((pkg / rel).read_text() + " ")
        for rel in ("method.py", "presets/tiny.toml", "sim_banks/phrases.json")]
    for change in [lambda: (data / "a.csv").write_text("1,3\n"),  # its data
                   lambda: (tmp_path / "extra.csv").write_text("2\n"),  # a declared data file
                   lambda: notebook(src, "print(x + 1)"),  # its notebook
                   lambda: preset.write_text("[method]\ntau = 0.6\n"),  # same path, new contents
                   lambda: (store / "results" / "page.parquet").unlink()] + everyone:
        change()
        # it and the page that reads it, not "alone"; every page when scpo or the lock changed
        rerun = ["page", "reader", "alone"] if change in everyone else ["page", "reader"]
        assert executed(jobs(), store) == rerun
        assert executed(jobs(), store) == []
    assert executed(jobs(x=2), store) == ["page", "reader"]  # a parameter
    assert executed(jobs(x=2, title="Chile"), store) == ["page", "reader"]  # its title
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "method.cpython-311.pyc").write_bytes(b"\0")
    (pkg / "notes.txt").write_text("not code")
    notebook(other, "x + 1")  # the reader's notebook: the reader and "alone", not the page
    assert executed(jobs(x=2, title="Chile"), store) == ["reader", "alone"]
    assert executed(jobs(x=2, title="Chile"), store, force=True) == ["page", "reader", "alone"]


def test_the_pages_a_page_held_back_start_in_the_catalogue_order(tmp_path, fake_papermill):
    """When the last country page is done, the chapters that waited for it start in the
    catalogue's order, the long ones first (doit itself started them in a set's order)."""
    src = notebook(tmp_path / "nb.md", "x")
    readers = ["sweeps", "conditioned", "behaviour", "main", "efficiency", "seeds", "cross",
               "steering", "try"]
    jobs = [build.Job(c, src, {}) for c in ("Chile", "Mexico")] + [
        build.Job(r, src, {"i": i}, inputs=["Chile", "Mexico"]) for i, r in enumerate(readers)]
    log: list[str] = []
    build.runner.run_jobs(jobs, tmp_path / "store", workers=2, force=False, log=log.append)
    started = [line.split()[1] for line in log if line.startswith("  executing")]
    # two workers log their starts from two threads: neighbours may swap, nothing more
    assert all(abs(started.index(r) - 2 - i) <= 1 for i, r in enumerate(readers)), started


KILLED = """
import sys, time
sys.path.insert(0, sys.argv[1])
import runner

def execute(job, store, env):
    if job.page == "two":
        time.sleep(60)  # killed here
    (store / "executed").mkdir(parents=True, exist_ok=True)
    (store / "executed" / f"{job.page}.ipynb").write_text(job.page)

runner.execute = execute
src = runner.Path(sys.argv[3])
jobs = [runner.Job("one", src, {}), runner.Job("two", src, {}, inputs=["one"])]
runner.run_jobs(jobs, runner.Path(sys.argv[2]), 1, False, log=lambda m: print(m, flush=True))
"""


def test_a_build_killed_mid_way_keeps_the_pages_it_finished(tmp_path, monkeypatch):
    """doit writes its record when the run ends; the build's record commits each page as it
    finishes, so after a kill -9 only the unfinished pages run again."""
    src = notebook(tmp_path / "nb.md", "x")
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(ROOT / "book"), str(store),
                             str(src)], stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:  # killed while page "two" runs
        lines.append(line.split()[:2])
        if lines[-1] == ["executing", "two"]:
            proc.kill()
            break
    assert proc.wait() == -9 and ["done", "one"] in lines

    def quick(job, store, env):
        (store / "executed" / f"{job.page}.ipynb").write_text(job.page)

    monkeypatch.setattr(build.runner, "execute", quick)
    log: list[str] = []
    build.runner.run_jobs([build.Job("one", src, {}), build.Job("two", src, {}, inputs=["one"])],
                          store, 1, False, log=log.append)
    assert [m.split()[:2] for m in log] == [["unchanged", "one"], ["executing", "two"],
                                            ["done", "two"]]


def record(results: Path, country: str, **env) -> None:
    d = results / build.slug(country)
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({"environment": env}))


def test_the_intro_states_the_versions_each_run_recorded(tmp_path):
    jobs = [build.Job(f"countries/{c}", Path("country.md"),
                      {"country": c, "results_dir": str(tmp_path)}) for c in ("Chile", "Mexico")]
    for c in ("Chile", "Mexico"):
        record(tmp_path, c, python="3.11.7", transformers="5.25.0", scpo_commit="abc")
    intro = tmp_path / "intro.md"
    intro.write_text(f"## Building this book\n\n{build.pages.ENVIRONMENT_MARKER}\n\nmore\n")
    build.pages.write_environment(intro, jobs)
    text = intro.read_text()
    assert "| transformers | `5.25.0` |" in text and "| scpo commit | `abc` |" in text
    assert "runs of Chile, Mexico" in text and build.pages.ENVIRONMENT_MARKER not in text
    assert "| TRL | `not recorded` |" in text  # a key the record lacks is said, not dropped
    # two environments (a run from an older venv): both, each with its countries
    (tmp_path / "Mexico" / "run.json").unlink()
    record(tmp_path / "x", "Mexico", python="3.11.7", transformers="5.26.0", scpo_commit="abc")
    jobs[1].params["results_dir"] = str(tmp_path / "x")
    table = build.pages.environment_section(jobs)
    assert "| transformers | `5.25.0` | `5.26.0` |" in table
    assert "runs of Chile | runs of Mexico" in table
    (tmp_path / "x" / "Mexico" / "run.json").unlink()
    with pytest.raises(build.BuildError, match=r"Mexico/run.json: no run record.*--force"):
        build.pages.environment_section(jobs)
    intro.write_text("## Building this book\n")
    with pytest.raises(build.BuildError, match="marker"):
        build.pages.write_environment(intro, jobs[:1])


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(build.BuildError, match="does not exist"):
        build.runner.data_files(str(tmp_path / "nowhere"))


# ---------------------------------------------------------------------------- the plan
def test_plan_has_one_page_per_country_and_the_results_chapters(tmp_path):
    jobs = build.plan("tiny", None, "", None, tmp_path)
    pages = [j.page for j in jobs]
    assert pages[:2] == ["method", "data"]
    assert {"countries/Chile", "countries/Mexico", "results/main", "results/efficiency",
            "results/sweeps", "results/seeds", "results/cross_country",
            "results/simulator"} <= set(pages)
    assert "results/goqa" not in pages  # no data directory, no real-data chapter
    chile = jobs[pages.index("countries/Chile")]
    assert chile.params["country"] == "Chile" and chile.title == "Chile"
    assert chile.params["results_dir"] == str(tmp_path / "results")
    main = jobs[pages.index("results/main")]
    assert set(main.inputs) == {"countries/Chile", "countries/Mexico"}  # reads, never retrains
    assert main.params["countries"] == "Chile,Mexico"
    # the scorecard reads the build's countries: a page an earlier plan left in the store is not
    # among them (with --countries Chile, Mexico's page stays in the store and is not read)
    card = jobs[pages.index("scorecard")]
    assert card.params["countries"] == "Chile,Mexico"
    # and the learning curves' share to match (the efficiency claim read as training users)
    curves = jobs[pages.index("results/curves")]
    assert card.params["curves_dirs"] == f"sim:{curves.params['work_dir']}"
    assert "results/curves" in card.inputs
    assert not {"results/curves_goqa", "results/curves_prism"} & set(pages)  # no real data
    one = next(j for j in build.plan("tiny", None, "", ["Chile"], tmp_path)
               if j.page == "scorecard")
    assert one.params["countries"] == "Chile" and one.params["results_dir"] == str(
        tmp_path / "results")
    # the dial reads the sweeps chapter's own results, where that chapter writes them
    steering, sweeps = (jobs[pages.index(p)] for p in ("results/steering", "results/sweeps"))
    assert "results/sweeps" in steering.inputs
    assert steering.params["sweeps_dir"] == sweeps.params["work_dir"]
    # the picks of best-of-N beside the sweeps' fronts; no PRISM without a data directory
    behaviour = jobs[pages.index("results/behaviour")]
    assert set(behaviour.inputs) == {"countries/Chile", "countries/Mexico", "results/sweeps"}
    assert behaviour.params["sweeps_dir"] == sweeps.params["work_dir"]
    assert "prism_results_dir" not in behaviour.params
    # the one model for every country reads only the country pages: it runs beside the sweeps
    cond = jobs[pages.index("results/conditioned")]
    assert set(cond.inputs) == {"countries/Chile", "countries/Mexico"}
    assert pages.index("results/sweeps") < pages.index("results/conditioned")  # longest first
    # the committed ladder study: its own page, and the main page's "does it hold deeper?"
    ladder = jobs[pages.index("results/ladder")]
    assert ladder.params == {"ladder_dir": str(ROOT / "data" / "ladder")}
    assert main.params["ladder_dir"] == str(ROOT / "data" / "ladder")
    assert main.data == [str(ROOT / "data" / "ladder")]
    # every page the toc lists is either a prose file in book/ or a planned notebook
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]] + [toc["root"]]
    for f in files:
        assert (ROOT / "book" / f"{f}.md").exists() or f in pages or f in (
            "results/goqa", "results/ladder", "results/released", "results/published",
            "results/carb", "prism/main"), f
        # optional pages: a page in their place says how to add them (build.assemble)
    # the published page is planned when a run of the preset "published" is given
    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "results.parquet").write_bytes(b"")
    pub = build.plan("tiny", None, "", None, tmp_path, published=str(tmp_path / "pub"))
    job = next(j for j in pub if j.page == "results/published")
    assert job.params == {"results_dir": str((tmp_path / "pub").resolve())}


def test_every_page_is_given_only_parameters_its_notebook_declares(tmp_path):
    """A parameter the notebook does not declare would be injected and ignored: the aggregate
    pages take no preset or data any more (they reopen the country pages' runs)."""
    import nbformat
    import papermill

    from scpo.simulate import sim_config, simulate

    data = tmp_path / "data"
    for d in ("prism", "carb", "globalopinionqa"):
        (data / d).mkdir(parents=True)
    sim = simulate(sim_config("tiny"), tmp_path / "sim")  # the plan reads which countries it has
    for name in ("utterances.jsonl", "survey.jsonl"):
        (data / "prism" / name).write_bytes((sim / name).read_bytes())
    (data / "carb" / "es.json").write_text("[]")
    (data / "globalopinionqa" / "global_opinions.csv").write_text("")
    jobs = build.plan("tiny", None, str(data), None, tmp_path / "store")
    assert {"prism/main", "results/carb", "results/goqa"} <= {j.page for j in jobs}
    declared = {}
    for job in jobs:
        if job.source not in declared:
            ipynb = tmp_path / f"{job.source.stem}.ipynb"
            nbformat.write(build.launch.read_notebook(job.source), ipynb)
            declared[job.source] = set(papermill.inspect_notebook(str(ipynb)))
        assert set(job.params) <= declared[job.source], job.page
    for page in ("results/steering", "results/cross_country", "prism/main", "results/carb"):
        assert "preset" not in next(j for j in jobs if j.page == page).params


def test_a_data_directory_adds_prism_on_a_laptop_and_the_rescoring(tmp_path):
    """With prism/ and the models in the data directory (scpo fetch's layout), the book runs
    the country pages again on PRISM under prism/, a chapter that reads them, and rescores the
    authors' models of the countries whose model is there."""
    from scpo.simulate import sim_config, simulate

    data = tmp_path / "data"
    sim = simulate(sim_config("tiny"), tmp_path / "sim")
    (data / "prism").mkdir(parents=True)
    (data / "prism" / "utterances.jsonl").write_bytes((sim / "utterances.jsonl").read_bytes())
    (data / "prism" / "survey.jsonl").write_bytes((sim / "survey.jsonl").read_bytes())
    jobs = build.plan("tiny", None, str(data), None, tmp_path / "store")
    pages = [j.page for j in jobs]
    assert {"prism/countries/Chile", "prism/countries/Mexico", "prism/main"} <= set(pages)
    assert "results/published" not in pages  # PRISM alone: no models to rescore
    card = jobs[pages.index("scorecard")]  # reads every source the plan has, after them
    assert {"prism/countries/Chile", "countries/Chile"} <= set(card.inputs)
    assert card.params["prism_results_dir"] == str(tmp_path / "store" / "results-prism")
    assert card.params["published_dir"] == "" and card.params["goqa_dir"] == ""
    # the learning curves again on PRISM, on the countries its files cover, read by the card
    curves = jobs[pages.index("results/curves_prism")]
    assert (curves.params["dataset"], curves.params["countries"]) == ("prism", "Chile,Mexico")
    assert curves.params["work_dir"] != jobs[pages.index("results/curves")].params["work_dir"]
    assert card.params["curves_dirs"].split(";")[1] == f"prism:{curves.params['work_dir']}"
    assert "results/curves_prism" in card.inputs
    chile = jobs[pages.index("prism/countries/Chile")]
    assert chile.params["dataset"] == "prism"
    assert chile.warm == ("prism", chile.params["data_dir"], ("Chile", "Mexico"))
    assert chile.params["results_dir"] == str(tmp_path / "store" / "results-prism")
    assert set(jobs[pages.index("prism/main")].inputs) == {"prism/countries/Chile",
                                                          "prism/countries/Mexico"}
    behaviour = jobs[pages.index("results/behaviour")]  # its PRISM section reads those pages
    assert {"prism/countries/Chile", "prism/countries/Mexico"} <= set(behaviour.inputs)
    assert behaviour.params["prism_results_dir"] == chile.params["results_dir"]
    assert "prism_data_dir" not in behaviour.params  # it reopens the pages' runs, as they ran
    assert "prism/countries/Chile" not in build.pages.launch_pages(jobs)  # this machine's data
    for name in ("reward-model-deberta-v3-base", "scpo-reward-model-mexico"):
        (data / "models" / name).mkdir(parents=True)
        (data / "models" / name / "config.json").write_text("{}")
    jobs = build.plan("tiny", None, str(data), None, tmp_path / "store")
    pub = next(j for j in jobs if j.page == "results/published")
    assert pub.params["countries"] == "Mexico"  # Chile's model is not there
    assert pub.params["data_root"] == str(data.resolve())
    assert str((data / "models" / "scpo-reward-model-mexico").resolve()) in pub.data
    # a PRISM sample without Mexico's users: no page for it, the chapter says why, no rescoring
    survey = [json.loads(line) for line in (sim / "survey.jsonl").read_text().splitlines()]
    kept = [u for u in survey if u["location"]["reside_country"] != "Mexico"]
    (data / "prism" / "survey.jsonl").write_text("".join(json.dumps(u) + "\n" for u in kept))
    jobs = build.plan("tiny", None, str(data), None, tmp_path / "store")
    pages = [j.page for j in jobs]
    assert "prism/countries/Chile" in pages and "prism/countries/Mexico" not in pages
    chapter = jobs[pages.index("prism/main")]
    assert chapter.params["countries"] == "Chile"
    assert chapter.params["left_out"] == "Mexico: no pairs in this data"
    assert "results/published" not in pages  # Mexico's model, but no Mexican test users
    assert jobs[pages.index("results/curves_prism")].params["countries"] == "Chile"
    (data / "prism" / "survey.jsonl").write_text("{not json\n")
    with pytest.raises(build.BuildError, match="survey.jsonl, line 1: not valid JSON"):
        build.plan("tiny", None, str(data), None, tmp_path / "store")


def prism_without(tmp_path: Path, country: str) -> Path:
    """A data directory whose PRISM-format files (the tiny simulation's) have no user of
    ``country``."""
    from scpo.simulate import sim_config, simulate

    sim = simulate(sim_config("tiny"), tmp_path / "sim")
    data = tmp_path / "data"
    (data / "prism").mkdir(parents=True)
    (data / "prism" / "utterances.jsonl").write_bytes((sim / "utterances.jsonl").read_bytes())
    survey = [json.loads(line) for line in (sim / "survey.jsonl").read_text().splitlines()]
    (data / "prism" / "survey.jsonl").write_text("".join(
        json.dumps(u) + "\n" for u in survey if u["location"]["reside_country"] != country))
    return data


PRESETS = sorted(p.stem for p in (ROOT / "scpo" / "presets").glob("*.toml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_runs_the_countries_the_data_cover(tmp_path, preset):
    """Issue 36: PRISM-format files without Mexican users stopped the build in warm_caches
    (KeyError: unknown country 'Mexico': no pairs). Whatever the preset, no page on PRISM runs
    Mexico, nothing warms it, and the scorecard says it was left out and why."""
    import pandas as pd

    from scpo.pairs import PAPER_COUNTRIES

    data = prism_without(tmp_path, "Mexico")
    rng = np.random.default_rng(0)  # a GlobalOpinionQA csv of 40 questions, for its presets
    (data / "globalopinionqa").mkdir()
    shares = [{c: rng.dirichlet(np.ones(3)).round(3).tolist() for c in PAPER_COUNTRIES}
              for _ in range(40)]
    pd.DataFrame([{"question": f"Question {q}?", "options": repr(["Yes", "No", "Maybe"]),
                   "selections": f"defaultdict(<class 'list'>, {shares[q]!r})",
                   "source": "GAS"} for q in range(40)]).to_csv(
        data / "globalopinionqa" / "global_opinions.csv", index=False)
    jobs = build.plan(preset, None, str(data), None, tmp_path / "store")
    on_prism = [j for j in jobs if j.params.get("dataset") == "prism" and "country" in j.params]
    assert on_prism  # the main pages (a PRISM preset) or PRISM on a laptop's
    for job in on_prism:
        assert job.params["country"] != "Mexico", job.page
        assert job.warm is not None and "Mexico" not in job.warm[2], job.page
        assert set(job.warm[2]) == {j.params["country"] for j in on_prism}
    card = next(j for j in jobs if j.page == "scorecard")
    assert "Mexico: no pairs in this data" in card.params["left_out"]
    for job in jobs:  # every chapter reading PRISM's pages reads those it has
        key = "countries" if job.page == "prism/main" else "prism_countries"
        if job.params.get("prism_results_dir") or job.page == "prism/main":
            assert "Mexico" not in job.params[key].split(","), (job.page, key)
        if job.params.get("dataset") == "prism":  # a PRISM preset: every chapter
            assert "Mexico" not in job.params.get("countries", ""), job.page


def test_warming_the_caches_prepares_only_the_covered_countries(tmp_path, monkeypatch):
    """What warm_caches prepares: the countries the data cover (it prepared the preset's, and
    a sample without Mexico stopped the build with a 20-line traceback)."""
    import scpo.scoring

    data = prism_without(tmp_path, "Mexico")
    prism = build.prism_dir(str(data))
    covered, left = build.coverage("tiny", "prism", prism, ["Chile", "Mexico"])
    assert covered == ["Chile"] and left == {"Mexico": "no pairs in this data"}
    prepared, real = [], scpo.scoring.prepare
    monkeypatch.setattr(scpo.scoring, "prepare",
                        lambda cfg: prepared.append(list(cfg.run.countries)) or real(cfg))
    build.warm_caches("tiny", "prism", prism, ["Chile", "Mexico"])  # no KeyError
    assert prepared == [["Chile"]]


def test_without_the_ladder_data_neither_page_reads_it(tmp_path, monkeypatch):
    catalogue = tmp_path / "chapters.toml"  # the committed ladder study is not there
    catalogue.write_text(build.CATALOGUE.read_text().replace('ladder = "data/ladder"',
                                                             'ladder = "data/no-ladder"'))
    monkeypatch.setattr(build, "CATALOGUE", catalogue)
    jobs = build.plan("tiny", None, "", None, tmp_path / "store")
    assert "results/ladder" not in [j.page for j in jobs]
    main = next(j for j in jobs if j.page == "results/main")
    assert "ladder_dir" not in main.params and main.data == []


def test_carb_files_under_the_data_dir_add_the_carb_chapter(tmp_path):
    assert "results/carb" not in [j.page for j in build.plan("tiny", None, str(tmp_path), None,
                                                               tmp_path / "store")]
    (tmp_path / "carb" / "es").mkdir(parents=True)
    (tmp_path / "carb" / "es" / "spanish.json").write_text("[]")
    jobs = build.plan("tiny", None, str(tmp_path), None, tmp_path / "store")
    carb = next(j for j in jobs if j.page == "results/carb")
    assert carb.params["carb_data_dir"] == str((tmp_path / "carb").resolve())
    assert carb.params["results_dir"] == str(tmp_path / "store" / "results")
    assert set(carb.inputs) == {"countries/Chile", "countries/Mexico"}


def test_data_dir_adds_the_goqa_chapter(tmp_path):
    data = SHARED_DATA if (SHARED_DATA / "globalopinionqa").is_dir() else tmp_path
    if data is tmp_path:
        (tmp_path / "globalopinionqa").mkdir()
        (tmp_path / "globalopinionqa" / "global_opinions.csv").write_text("question\n")
    jobs = build.plan("tiny", None, str(data), None, tmp_path / "store")
    goqa = [j for j in jobs if j.page == "results/goqa"]
    assert len(goqa) == 1
    assert Path(goqa[0].params["goqa_data_dir"]) == (data / "globalopinionqa").resolve()
    # the country pages keep the simulation: the data directory holds no sim/
    chile = [j for j in jobs if j.page == "countries/Chile"][0]
    assert chile.params["dataset"] == "sim" and chile.params["data_dir"] == ""
    assert chile.warm == ("sim", "", ("Chile", "Mexico"))
    assert goqa[0].warm == ("goqa", goqa[0].params["goqa_data_dir"], ("Chile", "Mexico"))
    # the learning curves on GlobalOpinionQA too, warmed with the chapter's own tuple
    curves = [j for j in jobs if j.page == "results/curves_goqa"]
    assert len(curves) == 1 and curves[0].params["dataset"] == "goqa"
    assert curves[0].params["data_dir"] == goqa[0].params["goqa_data_dir"]
    assert curves[0].warm == goqa[0].warm
    assert curves[0].title and "GlobalOpinionQA" in curves[0].title


# ---------------------------------------------------------------------------- execution
@pytest.mark.slow
def test_unchanged_notebooks_are_skipped(tmp_path, env, monkeypatch):
    for key, value in build.KERNEL_ENV.items():
        monkeypatch.setenv(key, value)
    src = notebook(tmp_path / "nb.md", "print('ran', x)")
    store, log = tmp_path / "store", []
    jobs = [build.Job("one", src, {"x": 3})]
    build.runner.run_jobs(jobs, store, workers=1, force=False, log=log.append)
    out = (store / "executed" / "one.ipynb").read_text()
    assert "ran 3" in out
    build.runner.run_jobs(jobs, store, workers=1, force=False, log=log.append)
    assert [m.split()[0] for m in log] == ["executing", "done", "unchanged"]
    build.runner.run_jobs([build.Job("one", src, {"x": 4})], store, workers=1, force=False,
                          log=log.append)
    assert log[-2].split()[0] == "executing"
    assert "ran 4" in (store / "executed" / "one.ipynb").read_text()


@pytest.mark.slow
def test_a_failing_notebook_fails_the_build_and_keeps_the_old_book(tmp_path, env, monkeypatch,
                                                                    capsys):
    for key, value in build.KERNEL_ENV.items():
        monkeypatch.setenv(key, value)
    bad = notebook(tmp_path / "bad.md", "ratio = x / 0")
    params = {"x": 1, "note": "Côte d'Ivoire's page"}  # a quote the rerun line must survive
    monkeypatch.setattr(build, "plan", lambda *a: [build.Job("bad", bad, params)])
    old = tmp_path / "_build" / "html"
    old.mkdir(parents=True)
    (old / "index.html").write_text("the previous book")
    mark(tmp_path / "_build", "book")  # as the build that made it left it
    code = build.main(["--build-dir", str(tmp_path / "_build"), "--store",
                       str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert code == 1
    assert "ZeroDivisionError" in err and "ratio = x / 0" in err  # papermill's failing cell
    assert "bad.md" in err and str(tmp_path / "store" / "failed" / "bad.ipynb") in err
    assert (old / "index.html").read_text() == "the previous book"
    assert (tmp_path / "store" / "failed" / "bad.ipynb").exists()
    rerun = next(line for line in err.splitlines() if line.startswith("Rerun it alone: "))
    argv = shlex.split(rerun.removeprefix("Rerun it alone: "))  # as a shell reads it
    assert argv[0] == "papermill" and argv[-2] == "-y" and json.loads(argv[-1]) == params
    assert not (tmp_path / "store" / "executed" / "bad.ipynb").exists()
    log: list[str] = []  # not recorded as done: the next build runs it again
    with pytest.raises(build.BuildError, match="ZeroDivisionError"):
        build.runner.run_jobs([build.Job("bad", bad, params)], tmp_path / "store", 1, False,
                              log=log.append)
    assert [m.split()[0] for m in log] == ["executing", "FAILED"]


def test_a_kernel_that_did_not_start_is_started_again(tmp_path, env, monkeypatch):
    """Two kernels started at once can get the same port; the one that dies never ran a cell,
    so its notebook runs again. Any other failure is not retried."""
    for key, value in build.KERNEL_ENV.items():
        monkeypatch.setenv(key, value)
    real, calls = subprocess.run, []
    died = ("zmq.error.ZMQError: Address already in use (addr='tcp://127.0.0.1:37441')\n"
            "RuntimeError: Kernel died before replying to kernel_info")

    def flaky(cmd, **kw):
        calls.append(cmd)
        if len(calls) == 1:
            return subprocess.CompletedProcess(cmd, 1, "", died)
        return real(cmd, **kw)

    monkeypatch.setattr(subprocess, "run", flaky)
    src = notebook(tmp_path / "nb.md", "print('ran', x)")
    build.runner.execute(build.Job("one", src, {"x": 3}), tmp_path / "store", dict(os.environ))
    assert len(calls) == 2 and "ran 3" in (tmp_path / "store/executed/one.ipynb").read_text()

    calls.clear()
    monkeypatch.setattr(subprocess, "run",
                        lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(
                            cmd, 1, "", died))
    with pytest.raises(build.BuildError, match="Kernel died before replying"):
        build.runner.execute(build.Job("two", src, {"x": 3}), tmp_path / "store", {})
    assert len(calls) == build.runner.KERNEL_START_ATTEMPTS
    calls.clear()
    monkeypatch.setattr(subprocess, "run",
                        lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(
                            cmd, 1, "", "ZeroDivisionError: division by zero"))
    with pytest.raises(build.BuildError, match="ZeroDivisionError"):
        build.runner.execute(build.Job("three", src, {"x": 3}), tmp_path / "store", {})
    assert len(calls) == 1


def html_pages(html: Path) -> dict[str, str]:
    return {str(p.relative_to(html).with_suffix("")): p.read_text()
            for p in html.rglob("*.html") if "_static" not in p.parts and "_modules" not in p.parts}


class Tables(HTMLParser):
    """The tables of an HTML page as lists of rows of cell texts (the standard library's
    parser: what a reader's browser shows, read back without a table library)."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def table_with(html: str, heading: str) -> list[list[str]]:
    """The first table of the page whose header row holds ``heading``."""
    for table in Tables(html).tables:
        if any(heading in cell for row in table[:2] for cell in row):
            return table
    raise AssertionError(f"no table with {heading!r}")


def slider_figures(html: str) -> dict[str, dict]:
    """The figures with a slider on a page (``scpo.companion.sliders``): title -> their values."""
    found = re.findall(r'<figure class="scpo-slider"[^>]*><script type="application/json">'
                       r"(.*?)</script></figure>", html, re.S)
    return {d["title"]: d for d in (json.loads(f) for f in found)}


def sliders_against_tables(pages: dict[str, str]) -> list[str]:
    """The steering and behaviour chapters' slider figures show, position by position, the
    numbers of the same chapter's static table (rounded as the table shows them)."""
    problems = []
    wanted = {  # page -> (figure title, its series, the table's heading and column, digits)
        "results/steering": [("Accuracy along the dial, macro-averaged", "overall", "Overall", 1),
                             ("Accuracy along the dial, macro-averaged", "pure minority",
                              "Pure minority", 1)],
        "results/behaviour": [
            ("Best-of-N from each prompt's pool: the pick's gain over a random candidate",
             "country's truth", "country's truth: gain", 2),
            ("Best-of-N from each prompt's pool: the pick's gain over a random candidate",
             "consensus", "consensus: gain", 2),
            ("Best-of-N on the test turns: the pick is the user's top choice",
             "top-choice agreement", "turns: top-choice agreement (%)", 1)]}
    for page, checks in wanted.items():
        figures = slider_figures(pages[page])
        for title, label, heading, digits in checks:
            if title not in figures:
                problems.append(f"{page}: no slider figure {title!r} (it has {list(figures)})")
                continue
            fig = figures[title]
            series = next(s for s in fig["series"] if s["label"] == label)
            table = table_with(pages[page], heading)
            column = next(i for i, c in enumerate(table[0]) if c == heading)
            rows = {r[0]: r[column].split(" [")[0] for r in table[2:]}
            shown = [rows.get(f"{x:.2f}") for x in fig["x"]]
            slid = [None if v is None else f"{v:.{digits}f}" for v in series["values"]]
            if shown != slid:
                problems.append(f"{page}: {title!r}, {label}: the slider shows {slid}, the "
                                f"table {shown}")
    return problems


def exercise_against_page(html: Path, pages: dict[str, str]) -> list[str]:
    """Exercise 9 of the exercises page says on which of the page's starting examples Chile's
    model prefers another answer than the global RM: scpo's rewards of them, as staged."""
    from scpo.companion import browser

    ref = json.loads((html / "_static" / "dial" / "reference.json").read_text())
    flips = browser.disagreements(ref["examples"], "Chile")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", pages["teaching"]))
    said = re.search(r"Chile is one of this book.s countries\. Its SCPO \(F\+W\) model prefers "
                     r"another answer than the global RM on (\d+) of the page.s (\d+) starting "
                     r"examples(?: \(([^)]*)\))?", text)
    if not said:
        return ["teaching: exercise 9 does not say where Chile's model and the global RM "
                "disagree"]
    listed = [int(n) - 1 for n in re.findall(r"example (\d+)", said[3] or "")]
    if (int(said[1]), int(said[2]), listed) != (len(flips), len(ref["examples"]), flips):
        return [f"teaching: exercise 9 says {said[0]!r}; scpo's rewards disagree on examples "
                f"{[i + 1 for i in flips]} of {len(ref['examples'])}"]
    return []


@pytest.fixture(scope="module")
def fetched(tmp_path_factory, tiny_bert, env):
    """A data directory made by `scpo fetch` from the stand-in hub: simulated PRISM-format
    files (as the hub's, unsorted), a GlobalOpinionQA csv, tiny models under the paper's and the
    authors' ids."""
    root = tmp_path_factory.mktemp("fetched")
    pins = stand_in_hub(root / "cache", tiny_bert, root)
    out = subprocess.run([sys.executable, "-m", "scpo.cli", "fetch", str(root / "data"), "--pins",
                          str(pins)], env={**env, "HF_HUB_CACHE": str(root / "cache"),
                                           "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return root / "data"


# The sentences that state an effect are chosen by their numbers (scpo.companion.report.said): each
# triple is (up, down, flat), said when the interval beside it lies above 0, below 0, or covers 0
SAID = [("better at home than away", "worse at home than away",
         "no better at home than away beyond the noise"),
        ("rises", "falls", "does not move beyond the noise"),
        ("its pairs do better", "the random pairs do better",
         "no better than the random pairs beyond the noise")]
SAID += [(f"agrees with the truth more than {x}", f"agrees with the truth less than {x}",
          f"agrees with the truth no more than {x} beyond the noise")
         for x in ("the baseline", "the global model")]
NUMBER = r"([+-]\d+\.\d+)"


def sentences_follow_their_numbers(pages: dict[str, str]) -> list[str]:
    """Every sentence of ``SAID``'s kinds (and the released check's, over seeds) in the built
    pages, each checked against the numbers beside it; returns those checked, raising on one
    whose words do not follow its numbers."""
    checked = []
    for name, page in pages.items():
        text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
        for up, down, flat in SAID:
            for word in (up, down, flat):
                pattern = rf"{re.escape(word)} \({NUMBER}(?: points)? \[{NUMBER}, {NUMBER}\]\)"
                for m in re.finditer(pattern, text):
                    mean, low, high = (float(x) for x in m.groups())
                    want = up if low > 0 else down if high < 0 else flat
                    assert word == want and low <= high, f"{name}: {m[0]!r} should say {want!r}"
                    checked.append(f"{name}: {m[0]}")
        for m in re.finditer(rf"(inflates it|deflates it|moves it by no consistent sign) "
                             rf"\({NUMBER} to {NUMBER} points over \d+ seeds\)", text):
            low, high = float(m[2]), float(m[3])
            want = ("inflates it" if low > 0 else "deflates it" if high < 0
                    else "moves it by no consistent sign")
            assert m[1] == want, f"{name}: {m[0]!r}"
            checked.append(f"{name}: {m[0]}")
        for m in re.finditer(r"(not smaller|smaller) than the seed spread \(largest per-seed "
                             r"change ([\d.]+) points; fixed's range over seeds ([\d.]+) points\)",
                             text):
            assert (m[1] == "smaller") == (float(m[2]) < float(m[3])), f"{name}: {m[0]!r}"
            checked.append(f"{name}: {m[0]}")
        m = re.search(r"the pick's gain under the country's truth (\w+).*?and under the "
                      r"consensus (\w+).*?: (the dial trades one for the other|the dial gains on "
                      r"both|here the dial gives up both|here the dial moves the pick away|here "
                      r"the dial does not trade)", text)
        if m:
            lead = {("rises", "falls"): "the dial trades one for the other",
                    ("rises", "rises"): "the dial gains on both",
                    ("falls", "falls"): "here the dial gives up both",
                    ("falls", "rises"): "here the dial moves the pick away"}.get(
                (m[1], m[2]), "here the dial does not trade")
            assert m[3] == lead, f"{name}: {m[0]!r}"
            checked.append(f"{name}: {m[0]}")
        m = re.search(r"The same as the paper: (.*?)\. Also different", text)
        if m:  # "as in the paper" only when the runs' config says so
            tb = re.search(r"τ = ([\d.]+) and β = ([\d.]+)", m[1])
            assert tb is None or (float(tb[1]), float(tb[2])) == (0.7, 1.1), m[1]
            assert "seven countries" not in m[1] or "Mexico" not in m[1], m[1]
            checked.append(f"{name}: {m[0]}")
    return checked


def test_the_sentence_check_catches_a_sentence_against_its_numbers():
    good = {"p": "<p>a model is better at home than away (+2.0 points [+0.5, +3.1]) and "
                 "rises (+0.12 [-0.01, +0.30])</p>"}
    with pytest.raises(AssertionError, match="should say 'does not move beyond the noise'"):
        sentences_follow_their_numbers(good)
    good["p"] = good["p"].replace("rises", "does not move beyond the noise")
    assert len(sentences_follow_their_numbers(good)) == 2
    with pytest.raises(AssertionError, match="worse at home"):
        sentences_follow_their_numbers({"p": "better at home than away (-2.0 points [-3.0, "
                                             "-1.0])"})


@pytest.mark.slow
def test_tiny_book_builds_with_a_data_directory_then_rebuilds_from_the_stamps(tmp_path, env,
                                                                             fetched):
    """The whole road offline (issue 26): `scpo fetch` from a stand-in hub, then the tiny book
    with that data directory; the data chapters' tables are read back from the pages. Issue
    36: the PRISM files have no Mexican users (the book runs the countries they cover and says
    which it left out), and the simulation is another seed's than the CI book's, so every
    sentence chosen by its numbers is checked on numbers it was not written against."""
    from scpo.goqa import load_goqa
    from scpo.prism import load_prism

    data = tmp_path / "data"
    shutil.copytree(fetched, data)
    survey = data / "prism" / "survey.jsonl"
    users = [json.loads(line) for line in survey.read_text().splitlines()]
    survey.write_text("".join(json.dumps(u) + "\n" for u in users
                              if u["location"]["reside_country"] != "Mexico"))
    preset = tmp_path / "tiny-seed1.toml"
    preset.write_text((ROOT / "scpo" / "presets" / "tiny.toml").read_text().replace(
        "[data.sim]", "[data.sim]\nseed = 1", 1))
    cmd = [sys.executable, str(ROOT / "book" / "build.py"), "--preset", str(preset),
           "--data-dir", str(data),
           "--build-dir", str(tmp_path / "_build"), "--store", str(tmp_path / "store")]
    t0 = time.perf_counter()
    first = subprocess.run(cmd, env=env, capture_output=True, text=True)
    t_first = time.perf_counter() - t0
    assert first.returncode == 0, first.stderr[-5000:]
    html = tmp_path / "_build" / "html"
    pages = html_pages(html)
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    expected = {toc["root"]} | {c["file"] for part in toc["parts"] for c in part["chapters"]}
    expected |= {"countries/Chile", "countries/Mexico", "prism/countries/Chile"}
    assert expected <= set(pages), expected - set(pages)
    assert "prism/countries/Mexico" not in pages  # the data have no Mexican users ...
    for page in ("prism/main", "scorecard"):  # ... and the chapters say so
        assert "Mexico: no pairs in this data" in re.sub(r"<[^>]+>", "", pages[page]), page
    behaviour = " ".join(re.sub(r"<[^>]+>", " ", pages["results/behaviour"]).split())
    assert "left out, Mexico" in behaviour
    checked = sentences_follow_their_numbers(pages)
    for page in ("results/cross_country", "results/behaviour", "results/simulator",
                 "results/efficiency", "results/released", "prism/main"):
        assert any(c.startswith(f"{page}: ") for c in checked), (page, checked)

    # the data chapters read the data directory: their numbers are the data's own
    prism = load_prism(data / "prism").pairs
    sizes = table_with(pages["prism/main"], "training pairs")
    header = sizes[0]
    for row in sizes[1:]:
        if row[0] in ("Chile", "Mexico"):
            mine = prism[prism["country"] == row[0]]
            got = dict(zip(header, row))
            assert int(got["training pairs"]) == int((mine["split"] == "train").sum())
            assert int(got["test pairs"]) == int((mine["split"] == "test").sum())
    commit = "18ab5cfb37456f4ec8cbc00212ce54cf7b1239f6"
    assert commit in pages["prism/main"] and "reported in the paper" in pages["prism/main"]
    published = table_with(pages["results/published"], "Chile")
    pairs_row = next(r for r in published if r[0] == "overall: test pairs")
    chile = published[0].index("Chile")
    assert int(pairs_row[chile]) == int(((prism["country"] == "Chile")
                                         & (prism["split"] == "test")).sum())
    assert "4ed92a8acef9f134280c274a47135472ba6e2379" in pages["results/published"]
    # best-of-N on PRISM's test turns: the turns and the chance of a random pick are the data's
    from scpo.prism import load_test_turns

    turns, _ = load_test_turns(data / "prism")
    turns = turns[turns["country"].isin(["Chile", "Mexico"])]
    top = turns["score"] == turns.groupby("interaction_id")["score"].transform("max")
    chance = turns.assign(top=top).groupby(["country", "interaction_id"])["top"].mean()
    text = re.sub(r"<[^>]+>", "", pages["results/behaviour"])
    said = re.search(r"own test users \((\d+) turns.*?against ([\d.]+) % for a random pick",
                     text, re.S)
    assert said, "the behaviour chapter's PRISM section is missing"
    assert int(said[1]) == turns["interaction_id"].nunique()
    assert said[2] == f"{100 * chance.groupby('country').mean().mean():.1f}"
    goqa = load_goqa(data / "globalopinionqa").pairs
    text = re.sub(r"<[^>]+>", "", pages["results/goqa"])
    assert re.search(rf"\b{len(goqa)}\b option pairs", text)
    # the scorecard's PRISM column is PRISM on a laptop's own paired difference, pair by pair
    from scpo.companion import report
    from scpo.results import load_predictions

    outcomes = load_predictions(tmp_path / "store" / "results-prism", ["Chile"])
    d = report.paired_difference(outcomes, "scpo_fw", "global")
    cells = [r[2] for t in Tables(pages["scorecard"]).tables for r in t
             if len(r) == 3 and r[0] == "SCPO (F+W) beats the global RM overall"]
    want = f"{d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}]"
    assert any(c.startswith(want) for c in cells), (want, cells)
    assert "PRISM" in table_with(pages["scorecard"], "simulator")[0]
    for name, text in pages.items():
        for bad in ("Traceback", "output error", "output traceback", "output stderr"):
            assert bad not in text, f"{name}.html shows {bad!r}"
    chile = pages["countries/Chile"]
    assert "<h1>Chile" in chile and "pure-minority" in chile
    assert re.search(r"keeps\s*(<[^>]+>\s*)*\d+(<[^>]+>\s*)*\s*pairs", chile)  # glued numbers
    assert "reported in the paper" in pages["results/main"]
    # the dial's figures with a slider hold the numbers of their chapters' static tables
    assert sliders_against_tables(pages) == []
    assert exercise_against_page(html, pages) == []
    # "Building this book" states the versions the runs read from their kernels (this venv's)
    from importlib.metadata import version

    from scpo.results import scpo_commit
    for name in ("transformers", "torch", "jupyter-book"):
        label = build.pages.ENVIRONMENT_LABELS[name]
        assert re.search(rf"{label}\W.{{0,300}}?{re.escape(version(name))}", pages["intro"], re.S)
    assert scpo_commit() in pages["intro"]
    # a standalone page opens its notebook in Colab/Binder and offers the executed .ipynb,
    # which installs scpo itself outside the repository; a page that reads others' results not
    url = build.launch.repository_url().removeprefix("https://github.com/")
    colab = (f"https://colab.research.google.com/github/{url}/blob/{build.LAUNCH_BRANCH}/"
             "notebooks/country.ipynb")
    assert colab in chile and "mybinder.org" in chile
    assert "colab.research.google.com" not in pages["results/main"]
    download = json.loads((html / "_sources" / "countries" / "Chile.ipynb").read_text())
    assert build.launch.INSTALL_TAG in download["cells"][0]["metadata"]["tags"]
    assert 'href="../_sources/countries/Chile.ipynb"' in chile
    assert 'href="../_modules/scpo/method.html' in pages["method"] or \
        '_modules/scpo/method.html' in pages["method"]  # equations link to their source

    t0 = time.perf_counter()
    second = subprocess.run(cmd, env=env, capture_output=True, text=True)
    t_second = time.perf_counter() - t0
    assert second.returncode == 0, second.stderr[:5000]
    assert "executing" not in second.stdout and second.stdout.count("unchanged") == len(
        [j for j in build.plan(str(preset), None, str(data), None, tmp_path / "store")])
    assert t_second < t_first
    assert html_pages(html).keys() == pages.keys()


def test_pages_hide_their_plumbing_and_keep_every_cell():
    out = {"output_type": "display_data", "data": {"text/plain": "fig"}, "metadata": {}}
    nb = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": [],
         "source": 'results_dir = "results"'},
        {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "outputs": [],
         "source": 'results_dir = "<the builder\'s cache>/results"'},
        {"cell_type": "code", "metadata": {}, "outputs": [], "source": "import numpy as np"},
        {"cell_type": "code", "metadata": {}, "outputs": [out], "source": "fig"},
        {"cell_type": "code", "metadata": {"tags": ["remove-input"]}, "outputs": [out],
         "source": "table"},
        {"cell_type": "markdown", "metadata": {}, "source": "The answer."}]}
    sources = [c["source"] for c in nb["cells"]]
    page = build.pages.for_readers(nb)
    assert [c["metadata"].get("tags") for c in page["cells"]] == [
        ["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], ["remove-cell"],
        ["hide-input"], ["remove-input"], None]
    assert [c["source"] for c in page["cells"]] == sources  # the notebook still runs


# ---------------------------------------------------------------------------- a user's files
def test_a_build_dir_of_the_users_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    """Issue 27: --build-dir docs (or ~/public_html, or .) was renamed to DIR.old and deleted."""
    monkeypatch.setattr(build, "plan", lambda *a: pytest.fail("the build started"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("my site")
    code = build.main(["--build-dir", str(docs), "--store", str(tmp_path / "store")])
    assert code == 1 and "holds no book this build made" in capsys.readouterr().err
    assert (docs / "index.md").read_text() == "my site"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs"]


def fake_jupyter_book(monkeypatch, version: str):
    """Jupyter Book's step replaced by one that writes a page saying ``version``."""
    def run(cmd, **kwargs):
        out = Path(cmd[cmd.index("--path-output") + 1]) / "_build" / "html"
        out.mkdir(parents=True)
        (out / "index.html").write_text(version)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(build, "plan", lambda *a: [])
    monkeypatch.setattr(build.pages, "configure", lambda *a: None)
    monkeypatch.setattr(subprocess, "run", run)


def test_the_book_is_staged_in_a_directory_of_its_own_and_replaces_only_its_own(tmp_path,
                                                                                monkeypatch):
    """The old build deleted DIR.old and DIR/../generated/staging whoever made them."""
    for mine in (tmp_path / "book.old", tmp_path / "generated" / "staging"):
        mine.mkdir(parents=True)
        (mine / "keep.txt").write_text("mine")
    book = tmp_path / "book"
    args = ["--build-dir", str(book), "--store", str(tmp_path / "store")]
    fake_jupyter_book(monkeypatch, "v1")
    assert build.main(args) == 0
    assert (book / "html" / "index.html").read_text() == "v1" and (book / MARKER).is_file()
    fake_jupyter_book(monkeypatch, "v2")
    assert build.main(args) == 0  # its own book: replaced
    assert (book / "html" / "index.html").read_text() == "v2"
    for mine in (tmp_path / "book.old", tmp_path / "generated" / "staging"):
        assert (mine / "keep.txt").read_text() == "mine"
    # nothing of the build's beside them but the store this test named (claimed, marked)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book", "book.old", "generated",
                                                          "store"]


def test_a_country_that_is_not_a_name_is_refused_before_anything_is_written(tmp_path,
                                                                           monkeypatch, capsys):
    """Issue 27: --countries "../../x" wrote x.ipynb outside the book's store."""
    monkeypatch.setattr(build, "warm_caches", lambda *a: pytest.fail("the build started"))
    store = tmp_path / "deep" / "er" / "store"
    code = build.main(["--preset", "tiny", "--countries", "../../x", "--store", str(store),
                       "--build-dir", str(tmp_path / "book")])
    assert code == 1 and "cannot name a file or folder" in capsys.readouterr().err
    assert not list(tmp_path.rglob("x.ipynb")) and not store.exists()


def test_a_store_of_the_users_is_refused_before_anything_is_written(tmp_path, monkeypatch,
                                                                   capsys):
    """--store names where executed notebooks and results go: a folder of the user's is
    refused, untouched; the book's own store (an older one: its executed/) is taken."""
    monkeypatch.setattr(build, "warm_caches", lambda *a: pytest.fail("the build started"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    code = build.main(["--preset", "tiny", "--store", str(mine),
                       "--build-dir", str(tmp_path / "book")])
    assert code == 1 and "--store" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    older = tmp_path / "older"
    (older / "executed").mkdir(parents=True)
    build.runner.claim_store(older)
    assert (older / ".scpo").is_file()


def test_the_default_build_stages_beside_the_book_without_copying_itself(tmp_path, monkeypatch):
    """The default book/_build puts its staging directory in book/, the directory the book's
    sources are copied from: the copy must leave it out (it copied itself without end)."""
    book = tmp_path / "book"
    shutil.copytree(build.BOOK, book, ignore=shutil.ignore_patterns("_build", "generated"))
    monkeypatch.setattr(build.pages, "BOOK", book)
    staging = book / "._build-staging-x"
    staging.mkdir()
    (book / "._build-old-y").mkdir()
    monkeypatch.setattr(build.pages, "configure", lambda *a: None)
    build.pages.assemble([], tmp_path / "store", staging / "src", build.catalogue()["chapter"])
    assert (staging / "src" / "intro.md").is_file()
    assert not [p.name for p in (staging / "src").iterdir() if p.name.startswith(".")]
    # the build's own files stay out of the book; each chapter it did not run gets its page of
    # book/missing/ in its place (no page of its own: the strict build fails on a page in no toc)
    src = staging / "src"
    assert not {"missing", "chapters.toml", "build.py", "runner.py"} & {p.name for p in
                                                                        src.iterdir()}
    for page, heading in [("results/carb", "# A cultural benchmark (CARB)"),
                          ("prism/main", "# PRISM on a laptop"), ("results/goqa", "# Global")]:
        assert (src / f"{page}.md").read_text().startswith(heading), page


def test_the_catalogue_names_only_its_own_pages_parts_and_notebooks():
    """A typo in book/chapters.toml (a page a chapter reads, a part, a missing page) would
    silently drop a dependency or a chapter: every name resolves."""
    import tomllib

    cat = tomllib.loads(build.CATALOGUE.read_text())
    pages = [c["page"].replace("{slug}", "*") for c in cat["chapter"]]
    parts = {"goqa", "carb", "rescore", "published", "goqa-beside", "prism-beside",
             "prism-pages", "ladder", "released"}  # build.plan's
    for ch in cat["chapter"]:
        assert (ROOT / "notebooks" / ch["notebook"]).is_file(), ch["page"]
        assert ch.get("when", "goqa") in parts and set(ch.get("with", {})) <= parts, ch["page"]
        assert ch.get("on", "main") in ("main", "goqa", "prism"), ch["page"]
        for read in ch.get("reads", []) + [r for w in ch.get("with", {}).values()
                                           for r in w.get("reads", [])]:
            assert any(re.fullmatch(re.escape(read).replace(r"\*", ".*"), p)
                       for p in pages), (ch["page"], read)
        if "missing" in ch:
            assert (ROOT / "book" / "missing" / ch["missing"]).is_file(), ch["page"]
        if "section_of" in ch:
            assert ch["section_of"] in pages, ch["page"]


def test_a_folder_that_holds_an_executed_subfolder_is_not_a_store(tmp_path):
    """Issue 35: any folder with an executed/ was claimed as an older store (proj/ with its
    README became scpo's). An older store holds the store's own folders and nothing else."""
    proj = tmp_path / "proj"
    (proj / "executed").mkdir(parents=True)
    (proj / "README.md").write_text("mine")
    with pytest.raises(build.BuildError, match="--store .* not empty and scpo did not make it") \
            as refused:
        build.runner.claim_store(proj)
    assert "--overwrite" not in str(refused.value)  # the build has no such option
    assert sorted(p.name for p in proj.iterdir()) == ["README.md", "executed"]
    older = tmp_path / "older"
    (older / "executed").mkdir(parents=True)
    (older / "executed" / "a.ipynb").write_text("{}")
    (older / "results").mkdir()
    assert build.runner.claim_store(older).own
    assert read_marker(older).files == {"executed/a.ipynb"}  # the build's own file, listed


def test_the_store_lists_each_file_the_build_writes_and_replaces_no_other(tmp_path,
                                                                          monkeypatch):
    def papermill(cmd, **kw):  # writes the executed notebook where papermill would
        Path(cmd[4]).write_text(Path(cmd[3]).read_text())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", papermill)
    src = notebook(tmp_path / "nb.md", "print(x)")
    store = tmp_path / "store"
    build.runner.execute(build.Job("one", src, {"x": 1}), store, {})
    assert {"executed/one.ipynb", "inputs/one.ipynb"} <= read_marker(store).files
    (store / "executed" / "mine.ipynb").write_text("the user's")
    with pytest.raises(build.BuildError, match="mine.ipynb is not among the files scpo wrote"):
        build.runner.execute(build.Job("mine", src, {"x": 1}), store, {})
    assert (store / "executed" / "mine.ipynb").read_text() == "the user's"
    build.runner.execute(build.Job("one", src, {"x": 2}), store, {})  # its own: replaced


def test_a_symlinked_book_build_leads_to_a_folder_of_the_users(tmp_path, monkeypatch, capsys):
    """Issue 35: with book/_build a symlink to a folder of the user's (a web root), the build
    took it for its own default folder and emptied it (`ls -A` after: .scpo html)."""
    book = tmp_path / "book"
    shutil.copytree(build.BOOK, book, ignore=shutil.ignore_patterns("_build", "generated"))
    for module in (build, build.pages):
        monkeypatch.setattr(module, "BOOK", book)
    www = tmp_path / "www"
    (www / "html").mkdir(parents=True)
    (www / "html" / "index.html").write_text("my site")
    (www / "robots.txt").write_text("mine")
    (book / "_build").symlink_to(www)
    fake_jupyter_book(monkeypatch, "v1")
    args = ["--store", str(tmp_path / "store")]  # the default --build-dir: book/_build
    assert build.main(args) == 1
    assert "holds no book this build made" in capsys.readouterr().err
    assert sorted(p.name for p in www.rglob("*")) == ["html", "index.html", "robots.txt"]
    assert (www / "html" / "index.html").read_text() == "my site"
    (book / "_build").unlink()  # a folder of the checkout's own, an older book in it: replaced
    (book / "_build" / "html").mkdir(parents=True)
    (book / "_build" / "html" / "index.html").write_text("old")
    assert build.main(args) == 0
    assert (book / "_build" / "html" / "index.html").read_text() == "v1"


def test_a_notebook_that_is_two_pages_documents_its_functions_once():
    """The learning curves run on each dataset: the second page's autodoc gets :no-index:."""
    text = "Intro\n\n```{eval-rst}\n.. autofunction:: scpo.curves.user_subset\n```\n"
    nb = {"cells": [{"cell_type": "markdown", "source": [text]},
                    {"cell_type": "code", "source": ".. autofunction:: x", "outputs": []}]}
    out = build.pages.without_index(nb)
    assert out["cells"][0]["source"] == text.replace(
        "user_subset\n", "user_subset\n   :no-index:\n")
    assert out["cells"][1]["source"] == ".. autofunction:: x"  # code is not touched
