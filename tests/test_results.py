"""scpo.results: the record of a run states the versions and the scpo commit it ran with."""

import json
import subprocess
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scpo
from scpo import results


def test_the_versions_are_read_from_the_running_environment(monkeypatch):
    env = results.environment()
    assert set(env) == {"python", *results.VERSIONED, "scpo", "scpo_commit", "scpo_source"}
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


def test_reopen_reads_the_runs_back_as_they_ran_and_refuses_a_mix(tmp_path):
    """A country page run at tau 0.5 (not the preset's 0.7) is reopened at tau 0.5: its config,
    its inputs, its saved models and a sweep's own point; pages run otherwise are refused."""
    from scpo.config import load_preset
    from scpo.experiment import run_country, sweep
    from scpo.results import reopen, run_record, save_country
    from scpo.scoring import prepare

    def page(country, tau):
        cfg = load_preset("tiny").update({
            "method": {"tau": tau}, "train": {"max_steps": 20},
            "run": {"countries": [country], "variants": ["global", "scpo_fw"], "seeds": [0]}})
        prep = prepare(cfg)
        done = run_country(prep, country, progress=False, save_models=tmp_path / "results")
        save_country(tmp_path / "results", done, run_record(prep))
        return cfg, prep, done

    assert load_preset("tiny").method.tau != 0.5
    cfg, prep, done = page("Chile", 0.5)
    run = reopen(tmp_path / "results")
    assert run.cfg.method.tau == 0.5 and run.cfg.to_dict() == cfg.to_dict()
    assert run.countries == ["Chile"] and run.seeds == [0]
    pd.testing.assert_frame_equal(run.results, done.results)
    assert run.prep.global_rm.fingerprint() == prep.global_rm.fingerprint()
    pd.testing.assert_frame_equal(run.prep.pairs, prep.pairs)
    test = prep.pairs[(prep.pairs["country"] == "Chile") & (prep.pairs["split"] == "test")]
    saved = run.model("Chile", "scpo_fw", 0)
    fw = done.results.query("variant == 'scpo_fw' and test_set == 'overall'")["accuracy"].item()
    assert np.mean(np.greater(*saved.score_pairs(test))) == pytest.approx(fw)
    points = list(sweep(run, {"tau": [0.5, 0.6]}))
    assert [(p.value, p.trained) for p in points] == [(0.5, False), (0.6, True)]
    assert set(points[0].results["tau"]) == {0.5} and set(points[1].results["tau"]) == {0.6}
    assert set(points[1].results["beta"]) == {cfg.method.beta}
    assert run.cfg.method.tau == 0.5  # the sweep trained at 0.6 without changing the runs' config
    page("Mexico", 0.7)
    with pytest.raises(ValueError, match=r"method\.tau: 0\.5 \(Chile\), 0\.7 \(Mexico\)"):
        reopen(tmp_path / "results")
    assert reopen(tmp_path / "results", ["Mexico"]).cfg.method.tau == 0.7


def _page(root, country, seed=0):
    from scpo.config import load_preset
    from scpo.experiment import run_country
    from scpo.results import run_record, save_country
    from scpo.scoring import prepare

    cfg = load_preset("tiny").update({
        "train": {"max_steps": 20},
        "run": {"countries": [country], "variants": ["global", "scpo_fw"], "seeds": [seed]}})
    prep = prepare(cfg)
    save_country(root, run_country(prep, country, progress=False), run_record(prep))
    return prep


def _edit(path, change):
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def test_reopen_refuses_pages_of_other_data_another_global_rm_or_other_code(tmp_path):
    """Issue 36: the config alone was compared, so a page of other data, another global RM
    or older code was read back beside the others. Each is refused, naming page and field;
    what is prepared again must match the records too."""
    from scpo.results import reopen, source_hash

    root = tmp_path / "results"
    for country in ("Chile", "Mexico"):
        _page(root, country)
    run = reopen(root)
    assert run.records["Chile"]["environment"]["scpo_source"] == source_hash()
    assert set(run.predictions["country"]) == {"Chile", "Mexico"}
    mexico = root / "Mexico" / "run.json"
    fields = {
        "data fingerprint": lambda r: r["data"].update(fingerprint="sim:other-data"),
        "global RM \\(its score-cache key\\)": lambda r: r.update(global_rm="other-head"),
        "global RM commit": lambda r: r.update(global_rm_commit="0" * 40),
        "code \\(scpo's source, sha256\\)": lambda r: r["environment"].update(
            scpo_source="older"),
    }
    original = mexico.read_text()
    for field, change in fields.items():
        _edit(mexico, change)
        with pytest.raises(ValueError, match=rf"{field}: .*\(Chile\), .*\(Mexico\)"):
            reopen(root)
        mexico.write_text(original)
    # both pages of older code: alike, but not this code's numbers
    for country in ("Chile", "Mexico"):
        _edit(root / country / "run.json", fields["code \\(scpo's source, sha256\\)"])
    with pytest.raises(ValueError, match="made by other code"):
        reopen(root)
    # both pages of other data: alike, but not what is prepared now
    for country in ("Chile", "Mexico"):
        (root / country / "run.json").write_text(original.replace("Mexico", country))
        _edit(root / country / "run.json", fields["data fingerprint"])
    run = reopen(root)
    with pytest.raises(ValueError, match=r"Chile/run.json records data fingerprint "
                                         r"'sim:other-data', but what is prepared now"):
        assert run.prep is None  # raises before


def test_the_chapters_read_the_countries_they_are_given_from_pages_or_one_run(tmp_path):
    """A stale page of a country no longer in the plan is not read when the countries are
    given; a run directory of several countries (scpo run --out) reads as the pages do."""
    from scpo.config import load_preset
    from scpo.experiment import run
    from scpo.results import load_predictions, reopen

    root = tmp_path / "results"
    _page(root, "Chile")
    _page(root, "Mexico")
    assert reopen(root, ["Chile"]).countries == ["Chile"]
    cfg = load_preset("tiny").update({"train": {"max_steps": 20},
                                      "run": {"variants": ["global", "scpo_fw"]}})
    res, _, _ = run(cfg, tmp_path / "one", progress=False)
    one = reopen(tmp_path / "one", ["Mexico"])
    assert one.countries == ["Mexico"] and set(one.predictions["country"]) == {"Mexico"}
    assert one.record_path("Mexico") == tmp_path / "one" / "run.json"
    pd.testing.assert_frame_equal(one.results, res[res["country"] == "Mexico"]
                                  .reset_index(drop=True))
    both = load_predictions(tmp_path / "one", ["Chile", "Mexico"])
    assert set(both["country"]) == {"Chile", "Mexico"}
    assert len(both[both["country"] == "Mexico"]) == len(one.predictions)
    with pytest.raises(FileNotFoundError, match=r"holds no results of \['Israel'\]"):
        reopen(tmp_path / "one", ["Israel"])
