import pytest

from scpo.config import Config, list_presets, load_preset


def test_presets_load_and_only_override_what_they_say():
    assert {"default", "tiny", "goqa"} <= set(list_presets())
    tiny = load_preset("tiny")
    assert tiny.data.sim_preset == "tiny" and tiny.run.seeds == [0]
    assert tiny.method.tau == Config().method.tau  # not in the file: the default


def test_unknown_key_and_section_fail_loudly(tmp_path):
    with pytest.raises(KeyError, match=r"unknown key method\.tua.*'beta'"):
        Config().update({"method": {"tua": 0.5}})
    with pytest.raises(KeyError, match=r"unknown section \[methods\]"):
        Config().update({"methods": {"tau": 0.5}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nlearning_rate = 1e-3\n")
    with pytest.raises(KeyError, match="bad.toml: unknown key train.learning_rate"):
        load_preset(str(bad))


def test_missing_preset_lists_available():
    with pytest.raises(FileNotFoundError, match="no preset 'nope'; available: .*tiny"):
        load_preset("nope")
