"""A user's files are safe: scpo writes into new folders or its own, and never deletes yours."""

import os

import pytest

from scpo.outdir import (
    MARKER,
    check_writable,
    claim,
    made_by_scpo,
    replace_dir,
    safe_name,
    swap_in,
)


def _write(files):
    def write(tmp):
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
    return write


def test_a_new_directory_is_written_whole_and_marked(tmp_path):
    out = replace_dir(tmp_path / "sim", _write({"a.jsonl": "1", "sub/b.json": "2"}))
    assert (out / "a.jsonl").read_text() == "1" and (out / "sub" / "b.json").read_text() == "2"
    assert made_by_scpo(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]  # no temporary left


def test_scpos_own_directory_is_replaced_whole(tmp_path):
    out = replace_dir(tmp_path / "sim", _write({"old.txt": "x", "a.txt": "1"}))
    replace_dir(out, _write({"a.txt": "2"}))
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.txt"]
    assert (out / "a.txt").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim"]


def test_a_users_folder_is_refused_and_left_untouched(tmp_path):
    users = tmp_path / "prism"
    users.mkdir()
    (users / "utterances.jsonl").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        replace_dir(users, _write({"utterances.jsonl": "simulated"}))
    with pytest.raises(FileExistsError, match="not empty and scpo did not make it"):
        claim(users)
    assert (users / "utterances.jsonl").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prism"]
    assert not made_by_scpo(users)


def test_overwrite_replaces_only_the_outputs_files_and_keeps_the_folder_the_users(tmp_path):
    users = tmp_path / "data"
    users.mkdir()
    (users / "notes.txt").write_text("keep me")
    (users / "a.txt").write_text("old")
    replace_dir(users, _write({"a.txt": "new"}), overwrite=True)
    assert (users / "notes.txt").read_text() == "keep me"
    assert (users / "a.txt").read_text() == "new"
    assert not made_by_scpo(users)  # still the user's: the next write needs --overwrite again
    with pytest.raises(FileExistsError):
        check_writable(users)


def test_a_failed_write_leaves_the_old_directory(tmp_path):
    out = replace_dir(tmp_path / "book", _write({"index.html": "v1"}))

    def broken(tmp):
        (tmp / "index.html").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        replace_dir(out, broken)
    assert (out / "index.html").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book"]


def test_a_failed_swap_puts_the_old_directory_back(tmp_path, monkeypatch):
    final = replace_dir(tmp_path / "book", _write({"index.html": "v1"}))
    new = tmp_path / "new"
    new.mkdir()
    real = os.rename

    def rename(src, dst):
        if str(src) == str(new):
            raise OSError("disk gone")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        swap_in(new, final)
    assert (final / "index.html").read_text() == "v1"


def test_a_file_is_never_taken_for_a_directory(tmp_path):
    f = tmp_path / "out"
    f.write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        claim(f, overwrite=True)


def test_an_empty_folder_or_an_older_output_is_claimed_and_marked(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim(empty) and made_by_scpo(empty)
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text("{}")
    assert claim(old, ours=lambda p: (p / "run.json").exists()) and made_by_scpo(old)


@pytest.mark.parametrize("bad", ["../../x", "a/b", "..", ".hidden", "", "a\\b", "x\ny", "a\0b"])
def test_names_from_data_that_would_leave_their_folder_are_refused(bad):
    with pytest.raises(ValueError, match="cannot name a file or folder"):
        safe_name(bad, "country")


@pytest.mark.parametrize("good", ["South Africa", "Côte d'Ivoire", "S. Africa", "Bosnia-Herz."])
def test_real_country_names_pass(good):
    assert safe_name(good) == good
