"""The notebooks: what papermill needs, thin parameters cells, and the documented one-country
papermill command run for real on the tiny preset."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
from conftest import book_build

from scpo import experiment, scoring
from scpo.config import load_preset

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.md"))
COUNTRY_PARAMETERS = {"preset", "dataset", "data_dir", "country", "backbone", "tau", "beta",
                      "seeds", "variants", "results_dir"}


build = book_build()


def code_cells(path):
    return [c for c in jupytext.read(path).cells if c.cell_type == "code"]


def test_there_are_notebooks():
    names = {p.stem for p in NOTEBOOKS}
    assert {"country", "method", "data", "main_results", "efficiency", "sweeps", "seeds",
            "cross_country", "simulator", "goqa"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_finds_kernelspec_and_parameters(path, tmp_path):
    nb = build.launch.read_notebook(path)  # raises if either is missing
    assert nb.metadata["kernelspec"]["name"] == "python3"
    ipynb = tmp_path / f"{path.stem}.ipynb"
    nbformat.write(nb, ipynb)
    found = papermill.inspect_notebook(str(ipynb))
    assert found, f"papermill found no parameters in {path.name}"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    names = {t.id for t in ast.walk(ast.parse(tagged[0].source)) if isinstance(t, ast.Name)}
    assert set(found) == names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_are_flat_scalars_and_no_def(path):
    """One parameters cell of `name = constant  # comment` lines; no reusable def anywhere."""
    cells = code_cells(path)
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])][0]
    for stmt in ast.parse(params.source).body:
        assert isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Constant), \
            f"{path.name}: parameter line {ast.unparse(stmt)!r} is not `name = scalar`"
        assert isinstance(stmt.value.value, str | int | float | bool)
    for line in params.source.splitlines():
        assert "#" in line, f"{path.name}: parameter {line!r} has no comment saying what it is"
    for cell in cells:
        tree = ast.parse("\n".join(ln for ln in cell.source.splitlines()
                                   if not ln.lstrip().startswith(("%", "!"))))
        defs = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not defs, f"{path.name}: move {defs} into the scpo package"


def convert_one(path, out_dir):
    out = out_dir / f"{path.stem}.ipynb"
    nbformat.write(build.launch.read_notebook(path), out)
    return out


def test_country_notebook_has_the_issue_parameters(tmp_path):
    found = papermill.inspect_notebook(str(convert_one(ROOT / "notebooks" / "country.md",
                                                       tmp_path)))
    assert COUNTRY_PARAMETERS <= set(found)


def test_missing_parameters_cell_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.md"
    bad.write_text("---\nkernelspec:\n  name: python3\n  display_name: Python 3\n"
                   "  language: python\n---\n\n```{code-cell} ipython3\nx = 1\n```\n")
    with pytest.raises(build.BuildError, match="tagged 'parameters'"):
        build.launch.read_notebook(bad)
    nokernel = tmp_path / "nokernel.md"
    nokernel.write_text("```{code-cell} ipython3\n:tags: [parameters]\nx = 1\n```\n")
    with pytest.raises(build.BuildError, match="kernelspec"):
        build.launch.read_notebook(nokernel)


@pytest.mark.slow
def test_documented_papermill_command_reruns_one_country(tmp_path, env, monkeypatch):
    """`build.py convert` then `papermill notebooks/country.ipynb out/Chile.ipynb -p country
    Chile -p tau 0.6`, on the tiny preset and three variants to stay fast."""
    subprocess.run([sys.executable, str(ROOT / "book" / "build.py"), "convert", "--out",
                    str(tmp_path / "nb")], check=True, env=env, capture_output=True)
    out, results = tmp_path / "out" / "Chile.ipynb", tmp_path / "results"
    out.parent.mkdir()
    cmd = [sys.executable, "-m", "papermill", str(tmp_path / "nb" / "country.ipynb"), str(out),
           "-p", "country", "Chile", "-p", "tau", "0.6", "-p", "preset", "tiny",
           "-p", "variants", "global,baseline,filtered,scpo_fw",
           "-p", "results_dir", str(results), "--no-progress-bar"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]  # (a cold cache's embedding bar on stderr is fine)
    assert not errors, errors
    res = pd.read_parquet(results / "Chile" / "results.parquet")
    assert set(res["variant"]) == {"global", "baseline", "filtered", "scpo_fw"}
    assert set(res.loc[res["variant"] != "global", "tau"]) == {0.6}
    assert (results / "Chile" / "models" / "scpo_fw" / "seed0").is_dir()
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "tau = 0.6" in injected[0].source and 'country = "Chile"' in injected[0].source
    # the aggregate chapters read the page back as it ran: at tau 0.6, not the preset's 0.7
    from scpo.companion.conditioned import run_conditioned
    from scpo.results import reopen

    monkeypatch.setenv("SCPO_CACHE_DIR", env["SCPO_CACHE_DIR"])  # what the page computed
    run = reopen(results)
    assert run.cfg.method.tau == 0.6 != load_preset("tiny").method.tau
    assert run.cfg.run.variants == ["global", "baseline", "filtered", "scpo_fw"]
    cond = run_conditioned(run.prep, run.countries, seeds=[0])  # the conditioned chapter's
    assert set(cond.results["tau"]) == {0.6}


HF_PRESET = """[data.sim]
n_prompts = 6
responses_per_prompt = 40
majority_users = 200
users_per_country = 40
[method]
tau = 0.8
[model]
backend = "hf"
max_length = 64
[train]
max_steps = 3
batch_size = 4
lr = 1e-3
global_steps = 5  # the partial tier's own global RM
global_batch_size = 8
global_lr = 1e-3
[run]
seeds = [0]
n_boot = 50
"""


# partial: the same notebook path (its tier runs in test_partial); left out for the suite's time
@pytest.mark.parametrize("backend", ["hf"])
def test_country_notebook_on_the_hf_tiers_then_export(tmp_path, env, tiny_bert, backend):
    """The GPU reader's path (book/gpu.md) on a tiny BERT: the country notebook with a hf
    preset saves only the asked models, and `scpo export` turns one into a checkpoint; the
    same with `-p backend partial` (its global RM trained from the backbone)."""
    subprocess.run([sys.executable, str(ROOT / "book" / "build.py"), "convert", "--out",
                    str(tmp_path / "nb")], check=True, env=env, capture_output=True)
    (tmp_path / "hf.toml").write_text(HF_PRESET)
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "papermill", str(tmp_path / "nb" / "country.ipynb"),
           str(tmp_path / "Chile.ipynb"), "-p", "preset", str(tmp_path / "hf.toml"),
           "-p", "backbone", str(tiny_bert), "-p", "country", "Chile",
           "-p", "variants", "global,baseline,scpo_fw", "-p", "save_variants", "scpo_fw",
           "-p", "results_dir", str(results), "-p", "backend", backend, "--no-progress-bar"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = pd.read_json(results / "Chile" / "run.json", typ="series")
    assert rec["config"]["model"]["backend"] == backend
    key = "global_model" if backend == "hf" else "encoder"
    assert rec["config"]["model"][key] == str(tiny_bert)
    method = json.loads((results / "Chile" / "run.json").read_text())["config"]["method"]
    assert method["tau"] == 0.8  # no tau given: the preset's, not 0.7
    assert [p.name for p in (results / "Chile" / "models").iterdir()] == ["scpo_fw"]
    proc = subprocess.run([sys.executable, "-m", "scpo.cli", "export", "--results", str(results),
                           "--country", "Chile", "--out", str(tmp_path / "export")],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = (tmp_path / "export" / "README.md").read_text()
    res = pd.read_parquet(results / "Chile" / "results.parquet")
    acc = res.query("variant == 'scpo_fw' and test_set == 'overall'")["accuracy"].item()
    assert set(res.loc[res["variant"] != "global", "tau"]) == {0.8}
    assert f'"overall": {{"accuracy": {acc}' in card


GOQA_CSV = '''question,selections,options,source
{rows}'''


def goqa_fixture(path, n_questions=24):
    """A small GlobalOpinionQA csv in the upstream format, with shares that differ by country."""
    rows = []
    for q in range(n_questions):
        a = 0.2 + 0.6 * ((q * 7) % 10) / 10
        shares = {"Chile": [a, 1 - a, 0.0], "Mexico": [1 - a, a, 0.0],
                  "Britain": [0.5 + 0.01 * q, 0.45 - 0.01 * q, 0.05]}
        sel = "defaultdict(<class 'list'>, " + repr(shares) + ")"
        opts = repr([f"Yes, option {q}", f"No, option {q}", "DK/Refused"])
        rows.append(f'"Question {q}: should the town build project {q}?","{sel}","{opts}",GAS')
    path.write_text(GOQA_CSV.format(rows="\n".join(rows)) + "\n")


@pytest.mark.slow
def test_goqa_notebook_on_a_small_csv(tmp_path, env, monkeypatch):
    """The real-data chapter's notebook, end to end on a 24-question csv in the upstream format."""
    goqa_fixture(tmp_path / "global_opinions.csv")
    out = tmp_path / "goqa.ipynb"
    for key in [*build.KERNEL_ENV, "SCPO_CACHE_DIR"]:
        monkeypatch.setenv(key, env[key])
    papermill.execute_notebook(
        str(convert_one(ROOT / "notebooks" / "goqa.md", tmp_path)), str(out),
        kernel_name="python3",
        parameters={"preset": "tiny", "goqa_data_dir": str(tmp_path), "countries": "Chile",
                    "variants": "global,baseline,scpo_fw", "work_dir": str(tmp_path / "w")},
        progress_bar=False, cwd=str(tmp_path))
    res = pd.read_parquet(tmp_path / "w" / "results.parquet")
    overall = res[res["test_set"] == "overall"].set_index("variant")
    assert set(overall.index) == {"global", "baseline", "scpo_fw"}
    # 1 - JSD recomputed by hand from each model's own option scores: the same run in this
    # process (the notebook's cache: the global RM and its scores are reloaded, not redone;
    # the seeded trainings give the same models), its models kept
    cfg = load_preset("tiny")
    cfg.update({"data": {"dataset": "goqa", "data_dir": str(tmp_path)},
                "run": {"seeds": [0], "variants": ["global", "baseline", "scpo_fw"],
                        "countries": ["Chile"]}})
    prep = scoring.prepare(cfg)
    models = experiment.run_country(prep, "Chile", keep_models=True, progress=False).models
    opts = prep.data.options
    test_q = opts[(opts["country"] == "Chile") & (opts["split"] == "test")]
    assert 0 < len(test_q) < 24  # some of the 24 questions, by the question split
    for variant in overall.index:
        model = models[f"{variant}/0"]
        align = []
        for prompt, options, shares in zip(test_q["prompt"], test_q["options"],
                                           test_q["shares"]):
            r = model.score([prompt] * len(options), list(options))
            p = np.exp(r - r.max()) / np.exp(r - r.max()).sum()  # softmax over the options
            q = np.asarray(shares) / np.sum(shares)
            m = (p + q) / 2
            # KL(a || m) in bits, with 0 log 0 = 0; the Jensen-Shannon distance is the root
            kl = [float(np.sum(a[a > 0] * np.log2(a[a > 0] / m[a > 0]))) for a in (p, q)]
            align.append(1 - np.sqrt(sum(kl) / 2))
        # 1e-6: the head scores in float32, and here one question at a time, not all at once
        assert overall.loc[variant, "jsd_alignment"] == pytest.approx(np.mean(align),
                                                                      abs=1e-6), variant


@pytest.mark.slow
def test_carb_notebook_on_fixture_items(tmp_path, env, monkeypatch):
    """The CARB chapter on the tiny run's saved models and six CARB-format items; its table
    equals the package's best-of-N on the same models."""
    from test_carb import ENGLISH, SPANISH

    from scpo.companion import carb
    from scpo.results import load_model, run_record, save_country

    (tmp_path / "carb").mkdir()
    (tmp_path / "carb" / "items.json").write_text(json.dumps(SPANISH + ENGLISH))
    for key in [*build.KERNEL_ENV, "SCPO_CACHE_DIR"]:
        monkeypatch.setenv(key, env[key])
    cfg = load_preset("tiny")
    cfg.update({"run": {"countries": ["Chile"], "variants": ["global", "scpo_fw"]}})
    prep = scoring.prepare(cfg)
    results = tmp_path / "results"
    save_country(results, experiment.run_country(prep, "Chile", progress=False,
                                                 save_models=results), run_record(prep))
    out = tmp_path / "carb.ipynb"
    papermill.execute_notebook(
        str(convert_one(ROOT / "notebooks" / "carb.md", tmp_path)), str(out),
        kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
        parameters={"preset": "tiny", "results_dir": str(results),
                    "carb_data_dir": str(tmp_path / "carb"), "n_boot": 50})
    nb = nbformat.read(out, as_version=4)
    record = "application/papermill.record/text/plain"
    glued = {o["metadata"]["scrapbook"]["name"]: o["data"][record] for c in nb.cells
             for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})}
    items = carb.load_carb(tmp_path / "carb")
    own = items["prism_countries"].map(lambda cs: "Chile" in cs).to_numpy()
    model = load_model(results, prep.global_rm, "Chile", "scpo_fw", 0)
    change = [100 * (carb.best_of_n(model, items)[m].mean()
                     - carb.best_of_n(prep.global_rm, items)[m].mean()) for m in (~own, own)]
    assert float(glued["mean_change_rest"]) == pytest.approx(change[0])
    assert float(glued["mean_change_own"]) == pytest.approx(change[1])
    assert glued["n_items"] == "6" and glued["n_with_own"] == "1"
