"""The whole pipeline on the tiny simulation: variants, bad input, determinism, the CLI."""

import json

import numpy as np
import pandas as pd
import pytest

from scpo import cli
from scpo.config import load_preset
from scpo.experiment import (
    EmptyFilterError,
    country_splits,
    load_model,
    load_results,
    prepare,
    run,
    run_country,
    save_country,
)


def tiny(**over):
    cfg = load_preset("tiny")
    cfg.update({"run": {"countries": ["Chile"], "variants": ["global", "baseline", "scpo_fw"]},
                "train": {"max_steps": 60}, **over})
    return cfg


@pytest.fixture(scope="module")
def prep():
    return prepare(tiny())


def test_rows_are_tidy_and_global_scores_zero_on_pure_minority(prep):
    r = run_country(prep, "Chile", progress=False).results
    assert len(r) == 3 * 2  # variants x test sets, one seed
    assert set(r["test_set"]) == {"overall", "pure_minority"}
    g = r[(r.variant == "global") & (r.test_set == "pure_minority")].iloc[0]
    assert g["accuracy"] == 0.0 and g["n_pairs"] > 0  # by construction
    b = r[(r.variant == "baseline") & (r.test_set == "overall")].iloc[0]
    assert b["n_kept"] == b["n_train"] and b["kept_ratio"] == 1.0
    f = r[(r.variant == "scpo_fw") & (r.test_set == "overall")].iloc[0]
    assert 0 < f["n_kept"] < f["n_train"]
    assert 0 < f["weight_sum"] <= f["n_kept"]  # SCPO weights are <= 1
    assert f["ci_low"] <= f["accuracy"] <= f["ci_high"]
    assert {"country_truth_accuracy", "global_truth_accuracy"} <= set(r.columns)


def test_same_seed_same_numbers_different_seed_differs(prep):
    a = run_country(prep, "Chile", keep_models=True, progress=False)
    b = run_country(prep, "Chile", keep_models=True, progress=False)
    pd.testing.assert_frame_equal(a.results, b.results)
    assert a.models["scpo_fw/0"].fingerprint() == b.models["scpo_fw/0"].fingerprint()
    prep.cfg.run.seeds = [1]
    try:
        c = run_country(prep, "Chile", keep_models=True, progress=False)
    finally:
        prep.cfg.run.seeds = [0]
    assert a.models["scpo_fw/0"].fingerprint() != c.models["scpo_fw/1"].fingerprint()
    # the global RM is the fixed reference frame: the same whatever the seed
    assert a.models["global/0"] is c.models["global/1"]


def test_filter_that_keeps_nothing_names_country_and_tau(prep):
    prep.cfg.method.tau = 1e-9
    prep.cfg.run.variants = ["filtered"]
    try:
        with pytest.raises(EmptyFilterError, match=r"Chile: variant 'filtered' with tau=1e-09 "
                                                   r"keeps no training pair \(0 of \d+"):
            run_country(prep, "Chile", progress=False)
    finally:
        prep.cfg.method.tau = 0.7
        prep.cfg.run.variants = ["global", "baseline", "scpo_fw"]


def test_unknown_country_lists_available(prep):
    with pytest.raises(KeyError, match=r"unknown country 'Atlantis'.*Chile \(\d+\)"):
        run_country(prep, "Atlantis", progress=False)


def test_country_without_test_pairs_is_an_error(prep):
    p = prep.pairs
    prep.pairs = p[~((p.country == "Chile") & (p.split == "test"))]
    try:
        with pytest.raises(ValueError, match="'Chile' has no test pairs"):
            run_country(prep, "Chile", progress=False)
    finally:
        prep.pairs = p


def test_save_and_load_results(prep, tmp_path):
    cr = run_country(prep, "Chile", keep_models=True, progress=False)
    save_country(tmp_path, prep, cr)
    back = load_results(tmp_path)
    pd.testing.assert_frame_equal(back, cr.results)
    assert (tmp_path / "Chile" / "models" / "scpo_fw" / "seed0").exists()
    rec = json.loads((tmp_path / "Chile" / "run.json").read_text())
    assert rec["data"]["fingerprint"] and rec["config"]["method"]["tau"] == 0.7


def test_models_saved_as_they_are_trained_not_kept(prep, tmp_path):
    """The country notebook's path: each model on disk once evaluated, none held in memory."""
    cr = run_country(prep, "Chile", progress=False, save_models=tmp_path,
                     save_variants=["scpo_fw"])
    assert cr.models == {}
    assert sorted(p.name for p in (tmp_path / "Chile" / "models").iterdir()) == ["scpo_fw"]
    back = load_model(tmp_path, prep, "Chile", "scpo_fw", 0)
    test = country_splits(prep, "Chile")["test"]
    correct = np.greater(*back.score_pairs(test))
    row = cr.results.query("variant == 'scpo_fw' and test_set == 'overall'").iloc[0]
    assert correct.mean() == row["accuracy"]
    with pytest.raises(FileNotFoundError, match="'baseline' in its save_variants"):
        load_model(tmp_path, prep, "Chile", "baseline", 0)


def test_cli_run_writes_traceable_results_bit_identically(tmp_path, capsys):
    args = ["run", "--preset", "tiny", "--countries", "Chile", "--variants", "global", "scpo_fw",
            "--set", "train.max_steps=60"]
    cli.main(args + ["--out", str(tmp_path / "a")])
    cli.main(args + ["--out", str(tmp_path / "b")])
    assert "scpo_fw" in capsys.readouterr().out
    for f in ("results.parquet", "results.csv", "run.json", "histories.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_cli_bad_input_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--preset", "tiny", "--tau", "1.5", "--out", "/tmp/x"])
    assert "tau must be in (0, 1]" in capsys.readouterr().err


def test_run_writes_one_table(tmp_path):
    res, _, _ = run(tiny(), tmp_path, progress=False)
    assert (tmp_path / "results.csv").exists() and len(res) == 6
