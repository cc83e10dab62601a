"""scpo fetch: the pinned real inputs from a hub (here a stand-in cache) into a data directory."""

from __future__ import annotations

import hashlib
import json

import pytest
from hubcache import AUTHORS_MAIN, goqa_csv, stand_in_hub

from scpo import cli, fetch
from scpo.fetch import MANIFEST, FetchError, load_pins
from scpo.published import AUTHORS_MODELS


@pytest.fixture(scope="module")
def hub(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("hub")
    pins = stand_in_hub(root / "cache", tiny_bert, root)
    return root / "cache", pins


@pytest.fixture
def offline_hub(hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub[0]))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub[1]


def test_the_pins_name_the_papers_inputs_and_the_authors_models():
    pins = load_pins()
    assert pins["global_rm"].revision == "4ed92a8acef9f134280c274a47135472ba6e2379"
    assert pins["global_rm"].sha256["model.safetensors"] == \
        "92427a6acd85bf015fc651f7f89618cdafcb3a1ef4b075b955610a74eac4cc4c"
    assert {p.repo for n, p in pins.items() if n.startswith("authors-")} == \
        set(AUTHORS_MODELS.values())  # the ids the preset "published" scores
    assert all(not any(g.endswith((".bin", ".pt", ".pth")) for g in p.files)
               for p in pins.values())  # weights only as safetensors


def test_fetch_lays_out_the_data_directory_and_records_every_file(offline_hub, tmp_path):
    data = tmp_path / "data"
    manifest = fetch.fetch(data, pins=offline_hub, log=lambda s: None)
    assert sorted(p.name for p in (data / "models").iterdir()) == sorted(
        ["reward-model-deberta-v3-base",
         *[i.split("/")[1] for i in AUTHORS_MODELS.values()]])
    assert (data / "globalopinionqa" / "global_opinions.csv").is_file()
    assert sorted(p.name for p in (data / "prism").iterdir()) == [
        ".scpo", "survey.jsonl", "utterances.jsonl"]  # README.md not asked for
    rm = data / "models" / "reward-model-deberta-v3-base"
    assert (rm / "model.safetensors").is_file() and not (rm / "optimizer.pt").exists()
    assert not (rm / "pytorch_model.bin").exists()
    on_disk = json.loads((data / MANIFEST).read_text())
    assert on_disk == manifest
    rec = manifest["inputs"]
    assert rec["global_rm"]["commit"] == "4ed92a8acef9f134280c274a47135472ba6e2379"
    assert rec["authors-chile"]["commit"] == AUTHORS_MAIN  # "main", resolved once
    assert rec["authors-chile"]["pinned"].endswith("@main")
    utt = data / "prism" / "utterances.jsonl"
    assert rec["prism"]["files"]["utterances.jsonl"] == {
        "size": utt.stat().st_size, "sha256": hashlib.sha256(utt.read_bytes()).hexdigest()}
    rows = fetch.revisions(data)
    assert {r["input"]: r["commit"] for r in rows}["prism"] == load_pins()["prism"].revision


def test_a_second_fetch_does_nothing(offline_hub, tmp_path, monkeypatch):
    data = tmp_path / "data"
    fetch.fetch(data, only=["prism", "goqa"], pins=offline_hub, log=lambda s: None)
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*")}
    monkeypatch.setattr(fetch, "download", lambda inp: pytest.fail("downloaded again"))
    said = []
    fetch.fetch(data, only=["prism", "goqa"], pins=offline_hub, log=said.append)
    assert all(s.strip().startswith("present") for s in said) and len(said) == 2
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*")} == before


def test_an_interrupted_fetch_resumes_where_it_stopped(offline_hub, tmp_path, monkeypatch):
    data = tmp_path / "data"
    real = fetch.download
    calls = []

    def killed(inp):
        calls.append(inp.name)
        if inp.name == "global_rm":
            raise KeyboardInterrupt
        return real(inp)

    monkeypatch.setattr(fetch, "download", killed)
    with pytest.raises(KeyboardInterrupt):
        fetch.fetch(data, only=["prism", "goqa", "global_rm"], pins=offline_hub,
                    log=lambda s: None)
    assert sorted(json.loads((data / MANIFEST).read_text())["inputs"]) == ["goqa", "prism"]
    assert not (data / "models").exists() or not any((data / "models").iterdir())
    calls.clear()
    monkeypatch.setattr(fetch, "download", lambda inp: calls.append(inp.name) or real(inp))
    fetch.fetch(data, only=["prism", "goqa", "global_rm"], pins=offline_hub, log=lambda s: None)
    assert calls == ["global_rm"]  # what was done stays done
    assert (data / "models" / "reward-model-deberta-v3-base" / "model.safetensors").is_file()


def test_without_the_hub_one_line_names_what_is_missing(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit) as e:
        cli.main(["fetch", str(tmp_path / "data"), "--only", "prism", "global_rm"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "could not fetch 2 of 2 inputs (HF_HUB_OFFLINE=1 and not in the hub cache)" in err
    assert "prism (HannahRoseKirk/prism-alignment@18ab5cfb37456f4ec8cbc00212ce54cf7b1239f6: " \
           "utterances.jsonl, survey.jsonl -> prism/)" in err
    assert "hf download <repo> --revision <revision>" in err


def test_files_provided_by_hand_are_recorded_not_replaced(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    csv = goqa_csv(tmp_path / "global_opinions.csv")
    mine = tmp_path / "data" / "globalopinionqa"
    mine.mkdir(parents=True)
    (mine / "global_opinions.csv").write_bytes(csv.read_bytes())
    (mine / "README.md").write_text("where I got it")  # beside the input, not part of it
    [unrecorded] = fetch.revisions(tmp_path / "data", ["goqa"])
    sha = hashlib.sha256(csv.read_bytes()).hexdigest()
    assert unrecorded["commit"] == f"not recorded (no scpo fetch): sha256 global_opinions.csv " \
        f"{sha[:12]}" and unrecorded["files"] == 1
    manifest = fetch.fetch(tmp_path / "data", only=["goqa"], log=lambda s: None)
    rec = manifest["inputs"]["goqa"]
    assert rec["source"] == "by hand" and rec["commit"] is None
    assert list(rec["files"]) == ["global_opinions.csv"]
    assert fetch.revisions(tmp_path / "data", ["goqa"])[0]["commit"] == "(by hand)"
    assert rec["files"]["global_opinions.csv"]["sha256"] == \
        hashlib.sha256(csv.read_bytes()).hexdigest()
    assert not (mine / ".scpo").exists()  # still the user's folder


def test_a_file_that_is_not_the_pinned_one_is_refused(hub, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub[0]))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FetchError, match="model.safetensors has sha256 .* the pin says 92427a6a"):
        fetch.fetch(tmp_path / "data", only=["global_rm"], log=lambda s: None)  # the real pins
    assert not (tmp_path / "data" / "models").exists()


def test_the_presets_pinned_global_rm_loads_from_the_hub_cache_offline(hub):
    """paper, goqa-paper and published pin the global RM's safetensors commit: once in the hub
    cache, it loads with HF_HUB_OFFLINE=1 (its main holds pickle weights only, refused)."""
    import os
    import subprocess
    import sys

    from scpo.config import load_preset

    pin = load_pins()["global_rm"].revision
    assert {load_preset(p).model.revision for p in ("paper", "goqa-paper", "published")} == {pin}
    code = ("from scpo.config import load_preset; from scpo.models.hf import HFRewardModel; "
            "rm = HFRewardModel.from_config(load_preset('paper').model); "
            "print(rm.commit, rm.score(['Hi?'], ['Hello.']).shape)")
    env = {**os.environ, "HF_HUB_CACHE": str(hub[0]), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [pin, "(1,)"]


def test_a_broken_manifest_stops_a_fetch_but_not_a_page(tmp_path):
    data = tmp_path / "data"
    (data / "globalopinionqa").mkdir(parents=True)
    goqa_csv(data / "globalopinionqa" / "global_opinions.csv")
    (data / MANIFEST).write_text('{"format": "scpo-manifest-1", "inputs": {')  # cut short
    with pytest.raises(ValueError, match="MANIFEST.json is not valid JSON .* delete it"):
        fetch.fetch(data, only=["goqa"], log=lambda s: None)
    [row] = fetch.revisions(data, ["goqa"])
    assert row["commit"].startswith("not recorded (no scpo fetch (MANIFEST.json unreadable: ")
    assert "global_opinions.csv" in row["commit"] and row["files"] == 1


def test_a_run_names_where_its_data_came_from(offline_hub, tmp_path):
    data = tmp_path / "data"
    fetch.fetch(data, only=["prism"], pins=offline_hub, log=lambda s: None)
    said = fetch.provenance(data / "prism", "prism", "abc123")
    assert said == ("HannahRoseKirk/prism-alignment@18ab5cfb37456f4ec8cbc00212ce54cf7b1239f6 "
                    "(recorded by scpo fetch), files abc123")
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    assert fetch.provenance(elsewhere, "prism", "abc123") == \
        "local files abc123 (not recorded by scpo fetch)"
    assert fetch.provenance(None, "prism", "Org/x@c0ffee") == \
        "Org/x@c0ffee (read from the Hugging Face hub)"
    assert fetch.provenance(data / "prism", "sim", "x") == "the simulator (scpo.simulate)"


def test_the_revision_table_shows_each_commit_once_beside_its_pin():
    """Issue 36, item 8: the pinned revision and the commit were two 40-digit columns, and the
    table ran past the text column at 1280 px. One column: the commit once where the pin is
    that commit, "pin → commit" where it names a branch."""
    rows = [{"input": "prism", "repository": "o/prism", "pinned": "a" * 40, "commit": "a" * 40,
             "files": 2, "MB": 5.3},
            {"input": "authors-chile", "repository": "o/rm-chile", "pinned": "main",
             "commit": "b" * 40, "files": 4, "MB": 4.8},
            {"input": "goqa", "repository": "o/goqa", "pinned": "",
             "commit": "not recorded (no scpo fetch): sha256 x.csv 0123456789ab", "files": 1,
             "MB": 0.1}]
    t = fetch.revision_table(rows)
    assert list(t.index) == ["prism", "authors-chile", "goqa"]
    assert list(t.columns) == ["repository", "revision (pinned → commit)", "size"]
    assert t["size"].tolist() == ["2 files, 5.3 MB", "4 files, 4.8 MB", "1 file, 0.1 MB"]
    assert t["revision (pinned → commit)"].tolist() == [
        "a" * 40, f"main → {'b' * 40}", "not recorded (no scpo fetch): sha256 x.csv 0123456789ab"]
    assert fetch.revision_table([]).empty
