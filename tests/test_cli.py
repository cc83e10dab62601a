"""The command line: every user error exits 2 with one line saying what to change."""

from pathlib import Path

import pytest

from scpo import cli

ERRORS = {
    "unknown preset": (["run", "--preset", "nosuch"], "no preset 'nosuch'; available:"),
    "--set without =": (["run", "--set", "train.max_steps"],
                        "--set expects section.key=value, got 'train.max_steps'"),
    "--set without a section": (["run", "--set", "lr=3"], "--set expects section.key=value"),
    "not an int": (["run", "--set", "train.max_steps=abc"],
                   "--set: train.max_steps expects int, got 'abc'"),
    "not a bool": (["run", "--set", "model.bf16=maybe"], "model.bf16 expects bool, got 'maybe'"),
    "unknown section": (["run", "--set", "trian.lr=1"], "unknown section [trian]"),
    "unknown key": (["run", "--set", "train.lrr=1"], "unknown key train.lrr"),
    "a method, not a section": (["run", "--set", "to_dict.x=1"], "unknown section [to_dict]"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_a_user_error_exits_2_with_one_line(case, tmp_path, capsys):
    argv, says = ERRORS[case]
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.count("\n") == 1 and err.startswith("scpo: error: "), err
    assert says in err


def test_export_without_saved_results_names_the_missing_files(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["export", "--results", str(tmp_path), "--country", "Chile",
                  "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "Chile/results.parquet" in err and "run the country notebook" in err


def test_config_prints_each_setting_with_its_value_and_meaning(capsys):
    cli.main(["config", "--preset", "paper", "--tau", "0.5", "--set", "model.lora_r=8"])
    out = capsys.readouterr().out
    assert "tau = 0.5  # filter: keep training pairs with p_glo < tau" in out
    assert "lora_r = 8  # hf tier: LoRA rank (0 = full fine-tuning)" in out
    assert "global_model = 'OpenAssistant/reward-model-deberta-v3-base'" in out  # the preset's


def test_flag_help_is_the_fields_own(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "keep training pairs with p_glo < tau (the paper: 0.7) (method.tau)" in out


def _users_folder(path, **files):
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def test_simulate_over_a_folder_of_prism_files_is_refused_then_overwrites_on_request(
        tmp_path, capsys):
    """Issue 27: `scpo simulate --out DIR` replaced a user's utterances.jsonl and survey.jsonl."""
    prism = _users_folder(tmp_path / "prism", **{"utterances.jsonl": "real", "notes.txt": "mine"})
    with pytest.raises(SystemExit) as e:
        cli.main(["simulate", "--preset", "tiny", "--out", str(prism)])
    assert e.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert (prism / "utterances.jsonl").read_text() == "real"
    assert sorted(p.name for p in prism.iterdir()) == ["notes.txt", "utterances.jsonl"]
    cli.main(["simulate", "--preset", "tiny", "--out", str(prism), "--overwrite"])
    assert (prism / "utterances.jsonl").read_text() != "real"
    assert (prism / "notes.txt").read_text() == "mine" and (prism / "survey.jsonl").exists()
    fresh = tmp_path / "sim"
    cli.main(["simulate", "--preset", "tiny", "--out", str(fresh)])
    cli.main(["simulate", "--preset", "tiny", "--out", str(fresh)])  # its own: replaced whole
    assert (fresh / ".scpo").is_file() and (fresh / "world.json").is_file()


def test_export_over_a_model_directory_is_refused_before_loading_anything(tmp_path, capsys):
    model = _users_folder(tmp_path / "model", **{"config.json": "{}", "model.safetensors": "w"})
    with pytest.raises(SystemExit) as e:
        cli.main(["export", "--results", str(tmp_path / "none"), "--country", "Chile",
                  "--out", str(model)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "not empty and scpo did not make it" in err
    assert (model / "config.json").read_text() == "{}"


@pytest.mark.parametrize("command", ["run", "conditioned"])
def test_run_into_a_users_folder_is_refused_before_any_work(command, tmp_path, capsys,
                                                           monkeypatch):
    from scpo import experiment

    monkeypatch.setattr(experiment, "prepare", lambda cfg: pytest.fail("work started"))
    home = _users_folder(tmp_path / "home", **{"results.csv": "my own table"})
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--preset", "tiny", "--out", str(home)])
    assert e.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert (home / "results.csv").read_text() == "my own table"


@pytest.mark.slow
def test_files_added_to_scpos_folder_survive_every_command(tmp_path, capsys):
    """Issue 35, as reproduced: a `.scpo` made the whole folder scpo's, so `scpo simulate` into
    a run's folder deleted the run's results and a user's notes.md and figures/, and a `.scpo`
    symlinked into a folder of the user's made it scpo's (thesis.tex deleted)."""
    x = tmp_path / "X"
    run = ["run", "--preset", "tiny", "--countries", "Chile", "--variants", "global",
           "--seeds", "0", "--out", str(x)]
    cli.main(run)
    (x / "notes.md").write_text("mine")
    (x / "figures").mkdir()
    (x / "figures" / "fig1.png").write_text("png")
    results = (x / "results.csv").read_text()
    with pytest.raises(SystemExit) as e:
        cli.main(["simulate", "--preset", "tiny", "--out", str(x)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "holds scpo's run's results" in err and "--overwrite" in err
    assert (x / "results.csv").read_text() == results
    cli.main(run)  # the same kind of output: its files replaced, the user's kept
    assert (x / "notes.md").read_text() == "mine"
    assert (x / "figures" / "fig1.png").read_text() == "png"
    users = _users_folder(tmp_path / "U", **{"thesis.tex": "thesis"})
    (users / ".scpo").symlink_to(x / ".scpo")
    with pytest.raises(SystemExit) as e:
        cli.main(["simulate", "--preset", "tiny", "--out", str(users)])
    assert e.value.code == 2 and "scpo did not make it" in capsys.readouterr().err
    assert sorted(p.name for p in users.iterdir()) == [".scpo", "thesis.tex"]


def test_repeated_seeds_are_refused_before_any_work(tmp_path, capsys):
    """Issue 35: `--seeds 0 0` wrote the whole run, run.json included, then exited 2, and
    every later reader of the folder failed the same way."""
    out = tmp_path / "X"
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--preset", "tiny", "--seeds", "0", "0", "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "run.seeds: [0, 0] repeats seed(s) [0]" in err
    assert not out.exists()
    from scpo.config import load_preset

    cfg = load_preset("tiny")
    cfg.run.seeds = [1, 2, 1]  # set directly, not through update: refused by the run itself
    from scpo.experiment import run

    with pytest.raises(ValueError, match=r"repeats seed\(s\) \[1\]"):
        run(cfg, out)
    assert not out.exists()


@pytest.mark.parametrize("command", ["carb", "bon"])
def test_a_table_is_never_written_over_an_existing_file_unasked(command, tmp_path, capsys):
    """Issue 35: `scpo carb --out FILE` and `scpo bon --out FILE` overwrote FILE silently."""
    table = tmp_path / "mine.csv"
    table.write_text("my table")
    with pytest.raises(SystemExit) as e:  # refused before any work (no such model or data)
        cli.main([command, "--model", str(tmp_path / "none"), "--data-dir",
                  str(tmp_path / "none"), "--out", str(table)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"--out {table} exists; pass --overwrite" in err
    assert table.read_text() == "my table"
    with pytest.raises(SystemExit):
        cli.main([command, "--model", "x", "--data-dir", "x", "--out", str(tmp_path)])
    assert "is a folder; give a file name" in capsys.readouterr().err


def test_outputs_get_the_umasks_mode_and_odd_paths_clear_errors(tmp_path, capsys,
                                                               monkeypatch):
    """Issue 35: outputs made through replace_dir were drwx------ whatever the umask; `--out .`
    gave `[Errno 16] Device or resource busy`; a dangling symlink `[Errno 17] File exists`."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        cli.main(["simulate", "--preset", "tiny", "--out", str(tmp_path / "sim")])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "sim").stat().st_mode) == 0o755
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    cli.main(["simulate", "--preset", "tiny", "--out", "."])
    cli.main(["simulate", "--preset", "tiny", "--out", "."])  # its own: replaced, cwd kept
    assert Path.cwd() == here and (here / "world.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here", "sim"]
    dangling = tmp_path / "link"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(SystemExit) as e:
        cli.main(["simulate", "--preset", "tiny", "--out", str(dangling)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "is a symlink to" in err and "which does not exist" in err
