"""scpo fetch: the pinned real inputs from a hub (here a stand-in cache) into a data directory."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from hubcache import AUTHORS_MAIN, goqa_csv, put_repo, stand_in_hub

from scpo import cli
from scpo.companion import fetch
from scpo.companion.fetch import MANIFEST, FetchError, load_pins
from scpo.companion.published import AUTHORS_MODELS


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


# ---- issue 35: what scpo fetch records is what the pins say ----

@pytest.fixture
def own_hub(hub, tmp_path, monkeypatch):
    """A copy of the stand-in hub's cache this test may change, offline; its pins file."""
    from huggingface_hub import constants

    cache = tmp_path / "cache"
    shutil.copytree(hub[0], cache, symlinks=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache, hub[1]


def _pins_with(pins_file, tmp_path, old, new):
    text = pins_file.read_text()
    assert old in text
    (tmp_path / "pins.toml").write_text(text.replace(old, new))
    return tmp_path / "pins.toml"


def test_every_hash_the_hub_publishes_is_pinned():
    """PRISM's utterances.jsonl has a published sha256 (its LFS hash on the hub's page)."""
    pins = load_pins()
    assert pins["prism"].sha256 == {
        "utterances.jsonl": "7829679350031d6678fa42b8106b2d05051bf9feea348a294400347af4a6deb4"}


def test_a_same_size_edit_is_found_and_no_page_cites_the_pin_for_it(offline_hub, tmp_path):
    """Issue 35: is_present compared sizes: after a same-size edit fetch said `present`, and
    every page still cited the pinned commit."""
    data = tmp_path / "data"
    fetch.fetch(data, only=["prism", "goqa"], pins=offline_hub, log=lambda s: None)
    survey = data / "prism" / "survey.jsonl"
    text = survey.read_bytes()
    edited = text.replace(b"false", b"fals_", 1)
    assert len(edited) == len(text) and edited != text
    survey.write_bytes(edited)
    with pytest.raises(FetchError, match=r"\['survey.jsonl'\] in .* changed since scpo fetch"):
        fetch.fetch(data, only=["prism"], pins=offline_hub, log=lambda s: None)
    assert survey.read_bytes() == edited  # named, never replaced
    said = fetch.provenance(data / "prism", "prism", "abc123")
    assert said == ("local files abc123 (survey.jsonl changed since scpo fetch recorded them "
                    "from HannahRoseKirk/prism-alignment)")
    survey.unlink()  # moved away: the pinned file comes back
    fetch.fetch(data, only=["prism"], pins=offline_hub, log=lambda s: None)
    assert survey.read_bytes() == text


def test_an_edit_in_the_data_directory_leaves_the_hub_cache_alone(own_hub, tmp_path):
    """Issue 35: data files were hard links into the hub cache, so an edit in DIR edited the
    cache, and a later fetch recorded the edited bytes as the hub's."""
    cache, pins = own_hub
    data = tmp_path / "data"
    fetch.fetch(data, only=["goqa"], pins=pins, log=lambda s: None)
    csv = data / "globalopinionqa" / "global_opinions.csv"
    [blob] = (cache / "datasets--Anthropic--llm_global_opinions" / "blobs").iterdir()
    before = blob.read_bytes()
    with open(csv, "ab") as f:  # in place, as an editor that keeps the file would
        f.write(b"edited\n")
    assert blob.read_bytes() == before
    fetch.fetch(tmp_path / "other", only=["goqa"], pins=pins, log=lambda s: None)
    rec = fetch.read_manifest(tmp_path / "other")["inputs"]["goqa"]
    assert rec["files"]["global_opinions.csv"]["sha256"] == hashlib.sha256(before).hexdigest()


def test_a_hub_cache_edited_behind_its_back_is_refused(own_hub, tmp_path):
    """A cache edited through a link an older fetch made: its bytes no longer match the name
    of their blob, and are never recorded as the hub's."""
    cache, pins = own_hub
    [blob] = (cache / "datasets--Anthropic--llm_global_opinions" / "blobs").iterdir()
    blob.chmod(0o644)
    with open(blob, "ab") as f:
        f.write(b"edited\n")
    with pytest.raises(FetchError, match="no longer holds the bytes its name says"):
        fetch.fetch(tmp_path / "data", only=["goqa"], pins=pins, log=lambda s: None)
    assert not (tmp_path / "data" / "globalopinionqa").exists()


def test_a_file_that_changed_under_a_recorded_commit_is_refused(own_hub, tmp_path):
    """A file without a published hash is recorded at its first fetch and checked against that
    record after; an input pinned to a branch (main) is fetched again at the commit recorded."""
    cache, pins = own_hub
    data = tmp_path / "data"
    fetch.fetch(data, only=["authors-chile"], pins=pins, log=lambda s: None)
    rm = data / "models" / "scpo-reward-model-chile"
    repo = load_pins(pins)["authors-chile"].repo
    put_repo(cache, repo, "model", "c" * 40, {"config.json": b"{}", "model.safetensors": b"w"},
             refs=("main",))  # main moved on: a fetch now asks for the commit it recorded
    (rm / "config.json").unlink()
    fetch.fetch(data, only=["authors-chile"], pins=pins, log=lambda s: None)
    assert fetch.read_manifest(data)["inputs"]["authors-chile"]["commit"] == AUTHORS_MAIN
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / AUTHORS_MAIN
    (snapshot / "config.json").unlink()  # the repository changed under its commit
    put_repo(cache, repo, "model", AUTHORS_MAIN, {"config.json": b'{"changed": 1}'})
    (rm / "config.json").unlink()
    with pytest.raises(FetchError, match="config.json has sha256 .* not the .* recorded when it "
                       "was first fetched"):
        fetch.fetch(data, only=["authors-chile"], pins=pins, log=lambda s: None)


def test_a_manifest_path_outside_the_data_directory_is_refused(tmp_path):
    """Issue 35: a MANIFEST.json listing an absolute path (/etc/hostname) was joined to DIR and
    believed."""
    elsewhere = tmp_path / "hostname"
    elsewhere.write_text("host\n")
    data = tmp_path / "data"
    data.mkdir()
    rec = {"repo": "Anthropic/llm_global_opinions", "repo_type": "dataset",
           "pinned": load_pins()["goqa"].pinned, "commit": "f" * 40, "source": "hub",
           "dest": "globalopinionqa", "licence": "", "files": {str(elsewhere): {
               "size": 5, "sha256": hashlib.sha256(b"host\n").hexdigest()}}}
    (data / MANIFEST).write_text(json.dumps({"format": "scpo-manifest-1",
                                             "inputs": {"goqa": rec}}))
    with pytest.raises(ValueError, match=r"lists '/.*hostname', not a path inside the data"):
        fetch.fetch(data, only=["goqa"], log=lambda s: None)


def test_a_file_put_in_by_hand_that_fails_its_pin_is_refused(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    mine = tmp_path / "data" / "prism"
    mine.mkdir(parents=True)
    (mine / "utterances.jsonl").write_text('{"not": "PRISM"}\n')
    (mine / "survey.jsonl").write_text("{}\n")
    with pytest.raises(FetchError, match="utterances.jsonl .put there by hand. has sha256 .* "
                       "the pin says 7829679350031d66"):
        fetch.fetch(tmp_path / "data", only=["prism"], log=lambda s: None)
    assert not (tmp_path / "data" / MANIFEST).exists()


def test_a_users_file_beside_an_input_survives_a_new_pin(own_hub, tmp_path):
    """Issue 35: globalopinionqa/my_codebook.xlsx was deleted when the pin changed."""
    cache, pins = own_hub
    data = tmp_path / "data"
    fetch.fetch(data, only=["goqa"], pins=pins, log=lambda s: None)
    (data / "globalopinionqa" / "my_codebook.xlsx").write_bytes(b"the user's")
    goqa = load_pins(pins)["goqa"]
    put_repo(cache, goqa.repo, "dataset", "b" * 40,
             {"data/global_opinions.csv": goqa_csv(tmp_path / "new.csv", n_questions=12)})
    newer = _pins_with(pins, tmp_path, goqa.revision, "b" * 40)
    fetch.fetch(data, only=["goqa"], pins=newer, log=lambda s: None)
    assert (data / "globalopinionqa" / "my_codebook.xlsx").read_bytes() == b"the user's"
    assert (data / "globalopinionqa" / "global_opinions.csv").read_bytes() == \
        (tmp_path / "new.csv").read_bytes()


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
