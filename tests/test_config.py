import pytest

from scpo.config import Config, list_presets, load_preset


def test_presets_load_and_only_override_what_they_say():
    assert {"default", "tiny", "goqa"} <= set(list_presets())
    tiny = load_preset("tiny")
    assert tiny.data.sim["n_prompts"] == 6 and tiny.run.seeds == [0]
    assert tiny.method.tau == Config().method.tau  # not in the file: the default


def test_unknown_key_and_section_fail_loudly(tmp_path):
    with pytest.raises(KeyError, match=r"unknown key method\.tua.*'beta'"):
        Config().update({"method": {"tua": 0.5}})
    with pytest.raises(KeyError, match=r"unknown section \[methods\]"):
        Config().update({"methods": {"tau": 0.5}})
    with pytest.raises(KeyError, match=r"unknown section \[to_dict\]; valid: \['data'"):
        Config().update({"to_dict": {"x": 1}})  # a method's name is no section
    with pytest.raises(TypeError, match=r"section \[method\] needs key = value pairs, got 0.5"):
        Config().update({"method": 0.5})
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlearning_rate = 1e-3\n")
    with pytest.raises(KeyError, match="bad.toml: unknown key train.learning_rate"):
        load_preset(str(bad))


def test_missing_preset_lists_available():
    with pytest.raises(FileNotFoundError, match="no preset 'nope'; available: .*tiny"):
        load_preset("nope")


def cli_config(*sets):
    import argparse

    from scpo.cli import build_config

    return build_config(argparse.Namespace(preset="tiny", set=list(sets)))


def test_set_values_take_their_field_type():
    """`--set` text becomes the field's type: the FSDP recipe's `=false` is False, not 'false'."""
    cfg = cli_config("model.gradient_checkpointing=false", "model.bf16=True", "model.lora_r=16",
                     "train.lr=1e-6", "method.tau=1", "data.data_dir=/data/prism",
                     "model.global_model=None", "run.seeds=[0, 1]", "run.countries=Chile,Mexico",
                     "run.tune_grid={'tau': [0.5, 1], 'beta': [1.1], 'lr_scale': [1]}",
                     "model.minority_models={'Chile': 'some/id'}", "data.revision='abc'")
    assert cfg.model.gradient_checkpointing is False and cfg.model.bf16 is True
    assert cfg.model.lora_r == 16 and type(cfg.model.lora_r) is int
    assert cfg.train.lr == 1e-6 and cfg.method.tau == 1.0 and type(cfg.method.tau) is float
    assert cfg.data.data_dir == "/data/prism" and cfg.model.global_model is None
    assert cfg.run.seeds == [0, 1] and cfg.run.countries == ["Chile", "Mexico"]
    assert cfg.run.tune_grid == {"tau": [0.5, 1.0], "beta": [1.1], "lr_scale": [1.0]}
    assert cfg.model.minority_models == {"Chile": "some/id"} and cfg.data.revision == "abc"


@pytest.mark.parametrize("item,message", [
    ("model.bf16=maybe", r"--set: model.bf16 expects bool, got 'maybe'"),
    ("model.lora_r=1.5", r"--set: model.lora_r expects int, got '1.5'"),
    ("train.lr=fast", r"--set: train.lr expects float, got 'fast'"),
    ("run.seeds=[0, 'a']", r"--set: run.seeds\[1\] expects int, got 'a'"),
    ("model.minority_models=Chile", r"--set: model.minority_models expects dict\[str, str\]"),
])
def test_a_set_value_that_does_not_fit_is_a_one_line_error(item, message):
    with pytest.raises(ValueError, match=message) as e:
        cli_config(item)
    assert "\n" not in str(e.value)


def test_typed_values_are_checked_too(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nbf16 = "false"\n')  # a string in a preset is no bool either
    with pytest.raises(ValueError, match=r"bad.toml: model.bf16 expects bool, got 'false'"):
        load_preset(str(bad))
    with pytest.raises(ValueError, match=r"method.tau expects float, got True"):
        Config().update({"method": {"tau": True}})
    assert Config().update({"train": {"max_steps": 10.0}}).train.max_steps == 10


def test_a_backend_brings_its_tiers_training_knobs():
    """Issue 27: `--preset tiny --backend partial` trained a transformer's top layers with the
    embedding tier's global recipe (300 steps of 64 pairs at lr 1e-2); a tier now brings its own
    values of the knobs whose sense depends on it, unless they are set with it or after it."""
    from scpo.config import TIER_TRAIN, TrainConfig

    assert {k: getattr(TrainConfig(), k) for k in TIER_TRAIN["embedding"]} == \
        TIER_TRAIN["embedding"]  # the dataclass defaults are the embedding tier's
    cfg = load_preset("tiny").update({"model": {"backend": "partial"}})
    assert {k: getattr(cfg.train, k) for k in TIER_TRAIN["partial"]} == TIER_TRAIN["partial"]
    assert cfg.train.global_lr == 2e-4 and cfg.train.global_batch_size == 8
    same_change = load_preset("tiny").update({"model": {"backend": "partial"},
                                              "train": {"global_steps": 10}})
    assert same_change.train.global_steps == 10 and same_change.train.lr == 1e-4
    later = load_preset("tiny").update({"model": {"backend": "partial"}})
    later.update({"train": {"lr": 3e-4}})
    assert later.train.lr == 3e-4
    unchanged = load_preset("tiny").update({"model": {"backend": "embedding"}})
    assert unchanged.train.global_steps == 300  # the same tier: tiny's own value stays
    hf = load_preset("default").update({"model": {"backend": "hf"}}, text=True)
    assert hf.train.lr == 1e-6 and hf.train.global_lr == 1e-2  # hf's global RM is given
    assert load_preset("partial").train == cfg.train  # the preset is the tier's values


def test_scpo_config_shows_the_tiers_values(capsys):
    from scpo import cli

    cli.main(["config", "--preset", "tiny", "--backend", "partial"])
    out = capsys.readouterr().out
    assert "global_lr = 0.0002" in out and "global_batch_size = 8" in out


def test_a_notebooks_text_parameters_become_the_fields_types():
    """papermill hands a notebook its parameters as text ("0,1", "0.5", "" for the preset's)."""
    from scpo.config import from_params

    cfg = from_params("tiny", dataset="sim", data_dir="", countries="Chile, New Zealand",
                      variants="global,scpo_fw", seeds="0,1", tau="0.5", beta="")
    tiny = load_preset("tiny")
    assert cfg.run.countries == ["Chile", "New Zealand"] and cfg.run.variants == [
        "global", "scpo_fw"]
    assert cfg.run.seeds == [0, 1] and cfg.method.tau == 0.5 and type(cfg.method.tau) is float
    assert cfg.method.beta == tiny.method.beta and cfg.data.data_dir is None
    assert from_params("tiny", seeds="3").run.seeds == [3]
    assert from_params("tiny", seeds=0).run.seeds == [0]  # a number papermill passed as such
    assert from_params("tiny", data_dir="none").data.data_dir == "none"  # a path, as written
    assert from_params(None) == Config()
    with pytest.raises(ValueError, match=r"parameters: tau expects float, got 'fast'"):
        from_params("tiny", tau="fast")
    with pytest.raises(ValueError, match=r"parameters: seeds\[1\] expects int, got 'b'"):
        from_params("tiny", seeds="1,b")
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) \['lr'\]; valid: .*'tau'"):
        from_params("tiny", lr="0.1")


def test_the_backbone_is_the_tiers_model():
    from scpo.config import from_params

    assert from_params("tiny", backbone="/m/enc").model.encoder == "/m/enc"
    hf = from_params("tiny", backend="hf", backbone="org/rm")
    assert hf.model.global_model == "org/rm"
    assert hf.model.encoder == load_preset("tiny").model.encoder
    assert hf.train.lr == 1e-6  # the tier's knobs came with it


def test_the_command_line_and_a_notebook_build_one_config(capsys):
    """`scpo` flags and a country notebook's parameters go through one function: `scpo config`
    prints the very config the notebook's text parameters give."""
    from scpo import cli
    from scpo.config import describe, from_params

    cli.main(["config", "--preset", "tiny", "--countries", "Chile", "Mexico", "--seeds", "0",
              "1", "--tau", "0.5", "--backend", "partial", "--set", "train.max_steps=7"])
    notebook = from_params("tiny", countries="Chile,Mexico", seeds="0,1", tau="0.5",
                           backend="partial", sets=["train.max_steps=7"])
    assert capsys.readouterr().out == describe(notebook) + "\n"
    assert notebook.train.max_steps == 7 and notebook.train.lr == 1e-4  # partial's, then --set
    assert notebook != load_preset("tiny")
