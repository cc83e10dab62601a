"""The whole pipeline on the tiny simulation: variants, bad input, determinism, the CLI."""

import json

import numpy as np
import pandas as pd
import pytest

from scpo import cli
from scpo.config import load_preset
from scpo.experiment import country_splits, run, run_country
from scpo.outdir import made_by_scpo
from scpo.results import load_model, load_results, run_record, save_country
from scpo.scoring import prepare


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
        with pytest.raises(ValueError, match=r"Chile: the filter at tau=1e-09 keeps 0 of \d+ "
                                             r"training pairs \(raise tau\)"):
            run_country(prep, "Chile", progress=False)
    finally:
        prep.cfg.method.tau = 0.7
        prep.cfg.run.variants = ["global", "baseline", "scpo_fw"]


def test_a_tuning_grid_that_keeps_nothing_fails_before_training(prep):
    grid = prep.cfg.run.tune_grid
    prep.cfg.run.tune_grid = {"tau": [1e-9], "beta": [1.1], "lr_scale": [1.0]}
    prep.cfg.run.variants = ["scpo_fw_tuned", "random_subset"]  # random_subset: tau 0.7 keeps
    try:
        with pytest.raises(ValueError, match=r"Chile: no tau of the tuning grid \[1e-09\] keeps "
                                             r"a fitting pair"):
            run_country(prep, "Chile", progress=False)
    finally:
        prep.cfg.run.tune_grid = grid
        prep.cfg.run.variants = ["global", "baseline", "scpo_fw"]


def test_unknown_country_lists_available(prep):
    with pytest.raises(KeyError, match=r"unknown country 'Atlantis'.*Chile \(\d+\)"):
        run_country(prep, "Atlantis", progress=False)


def test_country_without_test_pairs_is_an_error(prep):
    p = prep.pairs
    prep.pairs = p[~((p.country == "Chile") & (p.split == "test"))]
    try:
        with pytest.raises(ValueError, match=r"Chile: no test pairs"):
            run_country(prep, "Chile", progress=False)
    finally:
        prep.pairs = p


def test_save_and_load_results(prep, tmp_path):
    cr = run_country(prep, "Chile", keep_models=True, progress=False)
    save_country(tmp_path, cr, run_record(prep))
    back = load_results(tmp_path)
    pd.testing.assert_frame_equal(back, cr.results)
    assert (tmp_path / "Chile" / "models" / "scpo_fw" / "seed0").exists()
    rec = json.loads((tmp_path / "Chile" / "run.json").read_text())
    assert rec["data"]["fingerprint"] and rec["config"]["method"]["tau"] == 0.7


def test_results_of_a_renamed_variant_load_under_its_name_of_today(tmp_path):
    old = pd.DataFrame({"country": "Chile", "variant": ["scpo_fw", "random_weighted"],
                        "accuracy": [0.7, 0.6]})
    (tmp_path / "Chile").mkdir()
    old.to_parquet(tmp_path / "Chile" / "results.parquet")
    (tmp_path / "Chile" / "run.json").write_text('{"scpo_version": "0.1.0"}')  # a finished run
    with pytest.warns(UserWarning, match=r"'random_weighted'\].*'random_own_weights'"):
        back = load_results(tmp_path)
    assert back["variant"].tolist() == ["scpo_fw", "random_own_weights"]


def test_models_saved_as_they_are_trained_not_kept(prep, tmp_path):
    """The country notebook's path: each model on disk once evaluated, none held in memory."""
    cr = run_country(prep, "Chile", progress=False, save_models=tmp_path,
                     save_variants=["scpo_fw"])
    assert cr.models == {}
    assert sorted(p.name for p in (tmp_path / "Chile" / "models").iterdir()) == ["scpo_fw"]
    back = load_model(tmp_path, prep.global_rm, "Chile", "scpo_fw", 0)
    test = country_splits(prep, "Chile")["test"]
    correct = np.greater(*back.score_pairs(test))
    row = cr.results.query("variant == 'scpo_fw' and test_set == 'overall'").iloc[0]
    assert correct.mean() == row["accuracy"]
    with pytest.raises(FileNotFoundError, match="'baseline' in its save_variants"):
        load_model(tmp_path, prep.global_rm, "Chile", "baseline", 0)


def test_cli_run_writes_traceable_results_bit_identically(tmp_path, capsys):
    args = ["run", "--preset", "tiny", "--countries", "Chile", "--variants", "global", "scpo_fw",
            "--set", "train.max_steps=60"]
    cli.main(args + ["--out", str(tmp_path / "a")])
    cli.main(args + ["--out", str(tmp_path / "b")])
    assert "scpo_fw" in capsys.readouterr().out
    for f in ("results.parquet", "results.csv", "run.json", "histories.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_cli_bad_input_is_a_clear_error(capsys, tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["run", "--preset", "tiny", "--tau", "1.5", "--out", str(tmp_path)])
    assert "tau must be in (0, 1]" in capsys.readouterr().err


def test_run_writes_one_table(tmp_path):
    res, _, _ = run(tiny(), tmp_path, progress=False)
    assert (tmp_path / "results.csv").exists() and len(res) == 6


def test_every_variant_trains_on_every_training_pair(prep, tmp_path):
    """The paper trains on all training users; only tuning holds some out, and not for good."""
    prep.cfg.run.variants = ["baseline", "scpo_fw_tuned"]
    try:
        cr = run_country(prep, "Chile", progress=False)
    finally:
        prep.cfg.run.variants = ["global", "baseline", "scpo_fw"]
    chile = prep.pairs[(prep.pairs.country == "Chile") & (prep.pairs.split == "train")]
    assert chile["tune_val"].any()  # some training users are tuning's validation users...
    r = cr.results[cr.results.test_set == "overall"].set_index("variant")
    assert r.loc["baseline", "n_kept"] == r.loc["baseline", "n_train"] == len(chile)
    assert r.loc["baseline", "n_users_trained"] == chile["user_id"].nunique()
    # ... and the tuned variant, once tuned, retrains on all of them with its choice
    from scpo import method

    tau = cr.tuned["scpo_fw_tuned/0"]["tau"]
    kept = method.filter_mask(method.p_glo(chile["rg_chosen"], chile["rg_rejected"]), tau)
    assert r.loc["scpo_fw_tuned", "n_kept"] == kept.sum() and r.loc["scpo_fw_tuned", "tau"] == tau
    assert (cr.tuned["scpo_fw_tuned/0"]["n_fit_pairs"]
            + cr.tuned["scpo_fw_tuned/0"]["n_val_pairs"]) == len(chile)
    save_country(tmp_path, cr, run_record(prep))
    rec = json.loads((tmp_path / "Chile" / "run.json").read_text())["trained_on"]["Chile"]
    n_users = chile["user_id"].nunique()
    assert rec["baseline"] == {"train_users": n_users, "train_pairs": len(chile),
                               "users_trained": n_users, "pairs_trained": len(chile)}


def test_tuning_never_reads_test_pairs_and_later_seeds_reuse_the_choice(prep, monkeypatch):
    import scpo.experiment as E

    seen = []
    real_train, real_val = E._train, E._val_accuracy

    def spy_train(prep_, pairs, *a, **k):
        seen.append(("train", set(pairs["user_id"])))
        return real_train(prep_, pairs, *a, **k)

    def spy_val(model, pairs):
        seen.append(("val", set(pairs["user_id"])))
        return real_val(model, pairs)

    monkeypatch.setattr(E, "_train", spy_train)
    monkeypatch.setattr(E, "_val_accuracy", spy_val)
    prep.cfg.run.variants, prep.cfg.run.seeds = ["scpo_fw_tuned"], [0, 1]
    try:
        cr = run_country(prep, "Chile", progress=False)
    finally:
        prep.cfg.run.variants, prep.cfg.run.seeds = ["global", "baseline", "scpo_fw"], [0]
    splits = country_splits(prep, "Chile")
    test_users = set(splits["test"]["user_id"])
    grid = prep.cfg.run.tune_grid
    n_grid = len(grid["tau"]) * len(grid["beta"]) * len(grid["lr_scale"])
    assert all(not users & test_users for _, users in seen)
    # the grid: fit on the "fit" users, scored on the "val" users, once (first seed only) ...
    tuning = seen[:2 * n_grid]
    assert [k for k, _ in tuning] == ["train", "val"] * n_grid
    assert all(u == set(splits["fit"]["user_id"]) for k, u in tuning if k == "train")
    assert all(u == set(splits["val"]["user_id"]) for k, u in tuning if k == "val")
    # ... then each seed trains once, with the first seed's choice, on all training users
    assert [k for k, _ in seen[2 * n_grid:]] == ["train", "train"]
    assert list(cr.tuned) == ["scpo_fw_tuned/0"]
    rows = cr.results[cr.results.test_set == "overall"]
    assert rows["tau"].nunique() == rows["beta"].nunique() == rows["lr"].nunique() == 1
    assert rows["tau"].iloc[0] == cr.tuned["scpo_fw_tuned/0"]["tau"]


def test_run_checks_every_country_before_training(monkeypatch, tmp_path):
    """Two countries that cannot run are both named, and nothing is trained before."""
    import scpo.experiment as E

    real_prepare = E.prepare

    def broken_prepare(cfg, *args):
        prep = real_prepare(cfg, *args)
        p = prep.pairs
        prep.pairs = p[~((p.country == "Mexico") & (p.split == "test"))]
        return prep

    trained = []
    monkeypatch.setattr(E, "prepare", broken_prepare)
    monkeypatch.setattr(E, "_train", lambda *a, **k: trained.append(a) or (None, []))
    cfg = tiny()
    cfg.update({"run": {"countries": ["Chile", "Mexico"], "variants": ["scpo_fw"]},
                "method": {"tau": 1e-9}})
    with pytest.raises(ValueError, match=r"2 of 2 countries cannot be run, nothing was trained"
                                         r"(.|\n)*Chile: the filter at tau=1e-09 keeps 0"
                                         r"(.|\n)*Mexico: no test pairs"):
        E.run(cfg, tmp_path, progress=False)
    assert trained == [] and not (tmp_path / "results.csv").exists()


def test_a_run_resolves_its_variants_once_and_checks_once(monkeypatch, tmp_path):
    """Every country of a run trains the variants ``run`` resolved, after one check of every
    country; a country run alone (a notebook) still resolves and checks its own."""
    import scpo.experiment as E
    import scpo.results
    import scpo.scoring
    import scpo.variants

    calls = {"resolve": 0, "check_runnable": [], "export_variants": 0}

    def counted_resolve(names):
        calls["resolve"] += 1
        return scpo.variants.resolve(names)

    def counted_check(prep, countries, *variants):
        calls["check_runnable"].append(list(countries))
        return real_check(prep, countries, *variants)

    def counted_export(*args, **kw):
        calls["export_variants"] += 1
        return real_export(*args, **kw)

    real_check, real_export = E.check_runnable, E.export_variants
    for module in (E, scpo.scoring, scpo.results):
        monkeypatch.setattr(module, "resolve", counted_resolve)
    monkeypatch.setattr(E, "check_runnable", counted_check)
    monkeypatch.setattr(E, "export_variants", counted_export)
    cfg = tiny()
    cfg.update({"run": {"countries": ["Chile", "Mexico"], "variants": ["global", "filtered"]},
                "train": {"max_steps": 5}})
    res, prep, _ = E.run(cfg, tmp_path, progress=False)
    assert calls == {"resolve": 1, "check_runnable": [["Chile", "Mexico"]], "export_variants": 1}
    assert sorted(set(zip(res["country"], res["variant"]))) == [
        ("Chile", "filtered"), ("Chile", "global"), ("Mexico", "filtered"), ("Mexico", "global")]
    alone = E.run_country(prep, "Mexico", progress=False)
    assert calls == {"resolve": 2, "check_runnable": [["Chile", "Mexico"], ["Mexico"]],
                     "export_variants": 2}
    pd.testing.assert_frame_equal(alone.results, res[res["country"] == "Mexico"]
                                  .reset_index(drop=True))


def test_one_minority_model_in_memory_at_a_time(prep, monkeypatch):
    """Each trained model is freed before the next copy of the global RM is made, in the
    variant loop and in tuning's grid (on a GPU, two copies of an 8B model do not fit)."""
    import weakref

    made: list[weakref.ref] = []
    alive_at_copy: list[int] = []
    real_copy = type(prep.global_rm).copy

    def counting_copy(self):
        alive_at_copy.append(sum(r() is not None for r in made))
        new = real_copy(self)
        made.append(weakref.ref(new))
        return new

    monkeypatch.setattr(type(prep.global_rm), "copy", counting_copy)
    prep.cfg.run.variants = ["global", "baseline", "scpo_fw", "scpo_fw_tuned"]
    try:
        run_country(prep, "Chile", progress=False)
    finally:
        prep.cfg.run.variants = ["global", "baseline", "scpo_fw"]
    assert len(made) > 4 and alive_at_copy == [0] * len(made)


def test_save_country_saves_only_what_the_run_trained(tmp_path):
    """Given RMs (the published variants) and the global RM are not this run's to save."""
    from scpo.results import CountryRun

    class Recording:
        def __init__(self):
            self.saved = []

        def save(self, path):
            self.saved.append(path)

    trained, given, glob = Recording(), Recording(), Recording()
    rows = pd.DataFrame({"country": ["Chile"], "variant": ["scpo_fw"], "n_train_users": [1],
                         "n_train": [1], "n_users_trained": [1], "n_kept": [1]})
    run_ = CountryRun("Chile", rows, models={"scpo_fw/0": trained, "published/0": given,
                                             "global/0": glob})
    save_country(tmp_path, run_, {"config": {}})
    # written beside its place, then put there as one directory of scpo's (scpo.outdir)
    [written] = trained.saved
    assert written.parent == tmp_path / "Chile" / "models" / "scpo_fw"
    assert written.name.startswith(".seed0-new-")
    assert made_by_scpo(written.parent / "seed0", "saved model")
    assert given.saved == [] and glob.saved == []


def _country_run(country="Chile", variant="baseline"):
    from scpo.results import CountryRun

    rows = pd.DataFrame({"country": [country], "variant": [variant], "seed": [0],
                         "test_set": ["overall"], "accuracy": [0.5], "n_train_users": [2],
                         "n_train": [4], "n_users_trained": [2], "n_kept": [4]})
    return CountryRun(country, rows)


def test_a_runs_files_are_one_set(tmp_path, monkeypatch):
    """Issue 27: results were rewritten in place one file after another, so a crash left new
    results beside an old record, and an earlier run's exported.json / timing.json stayed."""
    from scpo.results import write_results

    out = tmp_path / "run"
    first = _country_run()
    first.exported = {"scpo_fw/0": "models/Chile/scpo_fw/seed0"}
    write_results(out, {"Chile": first}, first.results, {"scpo_version": "old"},
                  timing={"total_s": 1.0})
    assert {"exported.json", "timing.json", "run.json"} <= {p.name for p in out.iterdir()}

    second = _country_run(variant="scpo_fw")
    real = pd.DataFrame.to_csv

    def crash(self, path, *a, **k):
        raise OSError("killed while writing")

    monkeypatch.setattr(pd.DataFrame, "to_csv", crash)
    with pytest.raises(OSError, match="killed"):
        write_results(out, {"Chile": second}, second.results, {"scpo_version": "new"})
    assert not (out / "run.json").exists()  # no record stands beside a half-written set
    with pytest.raises(FileNotFoundError, match="did not finish"):
        load_results(tmp_path)
    monkeypatch.setattr(pd.DataFrame, "to_csv", real)
    write_results(out, {"Chile": second}, second.results, {"scpo_version": "new"})
    names = {p.name for p in out.iterdir()}
    assert "exported.json" not in names and "timing.json" not in names  # not this run's
    assert not [n for n in names if n.endswith(".part")]
    assert json.loads((out / "run.json").read_text())["scpo_version"] == "new"
    assert list(load_results(tmp_path)["variant"]) == ["scpo_fw"]


def test_overwrite_into_a_users_folder_deletes_none_of_its_files(tmp_path):
    """With --overwrite into a folder scpo did not make, the run replaces its own files only:
    a file of the user's named as an optional run file (here counts.csv, timing.json) is kept,
    and named in a warning, never deleted."""
    from scpo.results import write_results

    out = tmp_path / "mine"
    out.mkdir()
    for name in ("counts.csv", "timing.json", "notes.txt"):
        (out / name).write_text(f"the user's {name}")
    run = _country_run()
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_results(out, {"Chile": run}, run.results, {"scpo_version": "x"})
    with pytest.warns(UserWarning, match=r"\['timing.json', 'counts.csv'\].*kept"):
        write_results(out, {"Chile": run}, run.results, {"scpo_version": "x"}, overwrite=True)
    for name in ("counts.csv", "timing.json", "notes.txt"):
        assert (out / name).read_text() == f"the user's {name}"
    assert (out / "run.json").is_file() and not (out / ".scpo").exists()  # still the user's


def test_training_counts_and_the_one_row_schema_by_hand():
    from scpo.experiment import result_rows, training_counts

    train = pd.DataFrame({"user_id": ["a", "a", "b", "c", "c"]})
    kept = np.array([True, False, False, True, True])
    counts = training_counts(train, kept, 2.5)
    assert counts == {"n_train": 5, "n_kept": 3, "kept_ratio": 0.6, "n_train_users": 3,
                      "n_users_trained": 2, "weight_sum": 2.5}  # users a and c trained
    assert np.isnan(training_counts(train.iloc[:0], kept[:0], 0.0)["kept_ratio"])
    rows = result_rows([{"test_set": "overall", "accuracy": 0.7},
                        {"test_set": "pure_minority", "accuracy": 0.2}], country="Chile",
                       variant="scpo_fw", seed=1, counts=counts, tau=0.7, beta=1.1, lr=1e-3)
    assert [list(r) for r in rows] == [["country", "variant", "seed", "test_set", "accuracy",
                                        *counts, "tau", "beta", "lr"]] * 2
    assert rows[1]["accuracy"] == 0.2 and rows[1]["n_users_trained"] == 2


class FixedPairScores:
    """A model whose score of the test table's pairs is given: (r+, r-) per row."""

    def __init__(self, rc, rr):
        self.rc, self.rr = np.asarray(rc, float), np.asarray(rr, float)

    def score_pairs(self, pairs):
        return self.rc, self.rr


def test_cross_country_by_hand():
    from scpo.experiment import cross_country

    # A's pairs 0-2, B's 3-4; the global RM gets pairs 0 and 3 wrong (pure minority of A, B)
    test = pd.DataFrame({"country": ["A", "A", "A", "B", "B"],
                         "rg_chosen": [0, 1, 1, 0, 1], "rg_rejected": [1, 0, 0, 1, 0]})
    models = {"A": FixedPairScores([1, 1, 0, 0, 1], [0, 0, 1, 1, 0]),  # right: 0, 1, 4
              "B": FixedPairScores([0, 1, 1, 1, 1], [1, 0, 0, 0, 1])}  # right: 1, 2, 3 (4 ties)
    got = cross_country(models, test).set_index(["trained_on", "tested_on"])
    assert got.loc[("A", "A"), "overall"] == pytest.approx(2 / 3)
    assert got.loc[("A", "B"), "overall"] == 0.5
    assert got.loc[("B", "A"), "overall"] == pytest.approx(2 / 3)
    assert got.loc[("B", "B"), "overall"] == 0.5  # a tie counts as wrong
    assert got["pure_minority"].tolist() == [1.0, 0.0, 0.0, 1.0]  # pairs 0 and 3 alone
    no_pure = test.assign(rg_chosen=1, rg_rejected=0)
    assert cross_country(models, no_pure)["pure_minority"].isna().all()


def test_a_run_replaces_only_the_files_its_folders_marker_lists(tmp_path):
    """Issue 35: in scpo's own results folder every run-file name was scpo's: a counts.csv of
    the user's was deleted as the stale file of an earlier run. Only listed files are."""
    from scpo.results import check_results_dir, write_results

    out = tmp_path / "run"
    first = _country_run()
    write_results(out, {"Chile": first}, first.results, {"scpo_version": "x"},
                  timing={"total_s": 1.0})
    (out / "counts.csv").write_text("the user's counts")
    (out / "notes.md").write_text("the user's notes")
    with pytest.warns(UserWarning, match=r"\['counts.csv'\].*are kept"):
        write_results(out, {"Chile": first}, first.results, {"scpo_version": "x"})
    assert not (out / "timing.json").exists()  # listed, and not written by this run: removed
    assert (out / "counts.csv").read_text() == "the user's counts"
    assert (out / "notes.md").read_text() == "the user's notes"
    (out / "exported.json").write_text("the user's list")
    with pytest.raises(FileExistsError, match="exported.json is not among the files scpo"):
        check_results_dir(out, names=("exported.json",))  # a run that will export: refused
    first.exported = {"scpo_fw/0": "models/Chile/scpo_fw/seed0"}
    with pytest.raises(FileExistsError, match="exported.json is not among the files scpo"):
        write_results(out, {"Chile": first}, first.results, {"scpo_version": "x"})
    assert (out / "exported.json").read_text() == "the user's list"
    check_results_dir(out)  # a run that writes no exported.json goes ahead


def test_a_run_keeps_each_models_outcome_on_each_test_pair(prep, tmp_path):
    """The per-pair outcomes a run writes (predictions.parquet) are its accuracies, pair by
    pair: their means are the result rows' accuracies, overall, pure minority and truth."""
    from scpo.results import PREDICTIONS, load_predictions

    cr = run_country(prep, "Chile", progress=False)
    pred = cr.predictions
    test = country_splits(prep, "Chile")["test"]
    assert len(pred) == 3 * len(test)  # variants x test pairs, one seed
    for (variant, ts), row in cr.results.set_index(["variant", "test_set"]).iterrows():
        mine = pred[pred["variant"] == variant]
        if ts == "pure_minority":
            mine = mine[mine["pure_minority"]]
        assert mine["correct"].mean() == pytest.approx(row["accuracy"]), (variant, ts)
        assert mine["country_truth_correct"].mean() == pytest.approx(
            row["country_truth_accuracy"])
    assert (pred["user_id"].to_numpy().reshape(3, -1) == test["user_id"].to_numpy()).all()
    save_country(tmp_path, cr, run_record(prep))
    assert (tmp_path / "Chile" / PREDICTIONS).is_file()
    back = load_predictions(tmp_path, ["Chile"])
    pd.testing.assert_frame_equal(back[pred.columns].astype(pred.dtypes.to_dict()), pred,
                                  check_categorical=False)


def test_the_tuned_baseline_searches_the_learning_rate_alone(prep):
    """Like for like (issue 36): the baseline gets the tuned variant's search of the learning
    rate on the same held-out users; tau and beta do not apply to it, so it is not trained
    nine times over the same point."""
    from scpo.experiment import tune_points
    from scpo.variants import CONTROLS, VARIANTS

    grid = prep.cfg.run.tune_grid
    prep.cfg.run.tune_grid = {**grid, "lr_scale": [0.5, 1.0]}
    prep.cfg.run.variants = ["baseline", "baseline_tuned", "scpo_fw_tuned"]
    try:
        base = tune_points(VARIANTS["baseline_tuned"], prep.cfg)
        full = tune_points(VARIANTS["scpo_fw_tuned"], prep.cfg)
        cr = run_country(prep, "Chile", progress=False)
    finally:
        prep.cfg.run.tune_grid = grid
        prep.cfg.run.variants = ["global", "baseline", "scpo_fw"]
    assert base == [{"tau": prep.cfg.method.tau, "beta": prep.cfg.method.beta, "lr_scale": s}
                    for s in (0.5, 1.0)]
    assert len(full) == len(grid["tau"]) * len(grid["beta"]) * 2
    assert CONTROLS["baseline_tuned"] == "scpo_fw_tuned"
    assert set(cr.tuned) == {"baseline_tuned/0", "scpo_fw_tuned/0"}
    assert len(cr.tuned["baseline_tuned/0"]["grid"]) == 2
    r = cr.results[cr.results.test_set == "overall"].set_index("variant")
    assert r.loc["baseline_tuned", "n_kept"] == r.loc["baseline", "n_kept"]  # every pair
    assert r.loc["baseline_tuned", "lr"] == cr.tuned["baseline_tuned/0"]["lr"]
    assert r.loc["scpo_fw_tuned", "tau"] == cr.tuned["scpo_fw_tuned/0"]["tau"]
