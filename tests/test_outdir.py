"""A user's files are safe: scpo writes into new folders or its own, and never deletes yours."""

import json

import pytest

from scpo import outdir
from scpo.outdir import (
    MARKER,
    check_writable,
    claim,
    made_by_scpo,
    read_marker,
    replace_dir,
    safe_name,
)


def _write(files):
    def write(tmp):
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
    return write


def test_a_new_directory_is_written_whole_and_marked(tmp_path):
    out = replace_dir(tmp_path / "sim", _write({"a.jsonl": "1", "sub/b.json": "2"}),
                      what="simulation")
    assert (out / "a.jsonl").read_text() == "1" and (out / "sub" / "b.json").read_text() == "2"
    assert made_by_scpo(out, "simulation")
    assert json.loads((out / MARKER).read_text())["files"] == ["a.jsonl", "sub/b.json"]
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
    real = outdir.rename_noreplace

    def rename(src, dst):
        if str(src) == str(new):
            raise OSError("disk gone")
        return real(src, dst)

    monkeypatch.setattr(outdir, "rename_noreplace", rename)
    with pytest.raises(OSError, match="disk gone"):
        outdir._swap(new, final, read_marker(final).files)
    assert (final / "index.html").read_text() == "v1"


def test_a_file_is_never_taken_for_a_directory(tmp_path):
    f = tmp_path / "out"
    f.write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        claim(f, overwrite=True)


def test_an_empty_folder_or_an_older_output_is_claimed_and_marked(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim(empty).own and made_by_scpo(empty)
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text("{}")
    (old / "notes.txt").write_text("mine")
    assert claim(old, ours=lambda p: (p / "run.json").exists(), legacy=["run.json"]).own
    assert read_marker(old).files == {"run.json"}  # the older output's file, never notes.txt


@pytest.mark.parametrize("bad", ["../../x", "a/b", "..", ".hidden", "", "a\\b", "x\ny", "a\0b"])
def test_names_from_data_that_would_leave_their_folder_are_refused(bad):
    with pytest.raises(ValueError, match="cannot name a file or folder"):
        safe_name(bad, "country")


@pytest.mark.parametrize("good", ["South Africa", "Côte d'Ivoire", "S. Africa", "Bosnia-Herz."])
def test_real_country_names_pass(good):
    assert safe_name(good) == good


# ---- issue 35: a marker owns the files it lists, not the folder ----

def test_files_a_user_adds_to_scpos_folder_are_kept(tmp_path):
    """Issue 35: a `.scpo` made the whole folder scpo's: the next write replaced the folder,
    and notes.md and figures/ a user had put beside the output were gone."""
    out = replace_dir(tmp_path / "X", _write({"a.txt": "1", "old.txt": "x"}), what="simulation")
    (out / "notes.md").write_text("mine")
    (out / "figures").mkdir()
    (out / "figures" / "fig1.png").write_text("png")
    replace_dir(out, _write({"a.txt": "2"}), what="simulation")
    assert (out / "notes.md").read_text() == "mine"
    assert (out / "figures" / "fig1.png").read_text() == "png"
    assert (out / "a.txt").read_text() == "2" and not (out / "old.txt").exists()
    assert read_marker(out).files == {"a.txt"}  # the user's files never become scpo's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X"]


def test_an_output_of_another_kind_is_refused_unless_told(tmp_path):
    out = replace_dir(tmp_path / "X", _write({"run.json": "{}"}), what="run's results")
    with pytest.raises(FileExistsError, match="holds scpo's run's results .* not the simulation"):
        replace_dir(out, _write({"utterances.jsonl": "sim"}), what="simulation")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "run.json"]
    replace_dir(out, _write({"utterances.jsonl": "sim"}), what="simulation", overwrite=True)
    assert (out / "run.json").read_text() == "{}"  # told: added beside, nothing removed
    assert (out / "utterances.jsonl").read_text() == "sim"
    assert read_marker(out) == outdir.Marker("run's results", frozenset({"run.json"}))


@pytest.mark.parametrize("how", ["symlink", "folder", "not scpo's"])
def test_a_marker_that_is_a_symlink_or_not_a_regular_file_is_no_marker(tmp_path, how):
    """Issue 35: `ln -s X/.scpo U/.scpo` made U scpo's, and its thesis.tex was deleted."""
    x = replace_dir(tmp_path / "X", _write({"a.txt": "1"}), what="simulation")
    users = tmp_path / "U"
    users.mkdir()
    (users / "thesis.tex").write_text("thesis")
    if how == "symlink":
        (users / MARKER).symlink_to(x / MARKER)
    elif how == "folder":
        (users / MARKER).mkdir()
    else:
        (users / MARKER).write_text('{"what": "simulation", "files": ["thesis.tex"]}')
    assert read_marker(users) is None and not made_by_scpo(users)
    with pytest.raises(FileExistsError, match="scpo did not make it"):
        replace_dir(users, _write({"a.txt": "2"}), what="simulation")
    assert (users / "thesis.tex").read_text() == "thesis"


def test_a_marker_listing_a_path_outside_its_folder_is_no_marker(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    for bad in (["../x"], ["/etc/hostname"], ["a/./b"], "a.txt", [3]):
        (d / MARKER).write_text(json.dumps({"made_by": "scpo", "what": "w", "files": bad}))
        assert read_marker(d) is None, bad


def test_an_older_marker_owns_only_the_files_its_kind_of_output_wrote(tmp_path):
    """A marker of an older scpo lists no files: of its folder, only the files of that kind of
    output (``legacy``) are scpo's to replace or remove."""
    old = tmp_path / "sim"
    old.mkdir()
    (old / MARKER).write_text(json.dumps({"made_by": "scpo", "what": "simulation"}))
    for name in ("utterances.jsonl", "world.json", "notes.md"):
        (old / name).write_text("old")
    replace_dir(old, _write({"utterances.jsonl": "new"}), what="simulation",
                legacy=["utterances.jsonl", "world.json"])
    assert (old / "utterances.jsonl").read_text() == "new" and not (old / "world.json").exists()
    assert (old / "notes.md").read_text() == "old"
    assert read_marker(old).files == {"utterances.jsonl"}


def test_a_file_of_the_users_under_an_outputs_name_is_refused_unless_told(tmp_path):
    out = replace_dir(tmp_path / "X", _write({"a.txt": "1"}), what="simulation")
    (out / "b.txt").write_text("mine")  # not listed: the user's
    with pytest.raises(FileExistsError, match=r"b.txt is not among the files scpo wrote"):
        replace_dir(out, _write({"a.txt": "2", "b.txt": "2"}), what="simulation")
    assert (out / "b.txt").read_text() == "mine" and (out / "a.txt").read_text() == "1"
    replace_dir(out, _write({"a.txt": "2", "b.txt": "2"}), what="simulation", overwrite=True)
    assert (out / "b.txt").read_text() == "2" and read_marker(out).files == {"a.txt", "b.txt"}


def test_nothing_is_written_or_deleted_through_a_symlinked_folder(tmp_path):
    out = replace_dir(tmp_path / "X", _write({"figs/a.png": "1"}), what="book")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.png").write_text("mine")
    (out / "figs" / "a.png").unlink()
    (out / "figs").rmdir()
    (out / "figs").symlink_to(elsewhere)  # listed figs/a.png now leads elsewhere
    replace_dir(out, _write({"b.txt": "1"}), what="book")
    assert (elsewhere / "a.png").read_text() == "mine"
    with pytest.raises(FileExistsError, match="figs/a.png is not among"):
        replace_dir(out, _write({"figs/a.png": "2"}), what="book")
    with pytest.raises(FileExistsError, match="a folder on its way is a symlink"):
        replace_dir(out, _write({"figs/a.png": "2"}), what="book", overwrite=True)
    assert (elsewhere / "a.png").read_text() == "mine"


def test_a_target_lists_a_file_before_it_is_written_and_removes_only_listed_ones(tmp_path):
    target = claim(tmp_path / "store", what="book store")
    target.add(["executed/a.ipynb"])
    assert read_marker(target.path).files == {"executed/a.ipynb"}
    (target.path / "executed").mkdir()
    (target.path / "executed" / "a.ipynb").write_text("scpo's")
    (target.path / "executed" / "b.ipynb").write_text("the user's")
    with pytest.raises(FileExistsError, match="b.ipynb is not among"):
        claim(target.path, what="book store").add(["executed/b.ipynb"])
    assert target.remove(["executed/a.ipynb", "executed/b.ipynb"]) == ["executed/a.ipynb"]
    assert (target.path / "executed" / "b.ipynb").read_text() == "the user's"
    assert read_marker(target.path).files == frozenset()


# ---- issue 35: between the check and the swap ----

@pytest.fixture(params=["renameat2", "fallback"])
def renames(request, monkeypatch):
    """Both ways of renaming without replacing: the kernel's, and the one without it."""
    if request.param == "fallback":
        monkeypatch.setattr(outdir, "_renameat2", None)
    elif outdir._renameat2 is None:
        pytest.skip("no renameat2 here")
    return request.param


def test_a_folder_created_while_scpo_writes_is_not_replaced(tmp_path, renames):
    """Issue 35: replace_dir looked once, wrote, then swapped: a folder the user created
    meanwhile (`scpo simulate --out R &`, then `mkdir R; echo thesis > R/thesis.tex`) was
    deleted. The swap looks again, with a rename that fails when R is there."""
    final = tmp_path / "R"

    def write(tmp):
        (tmp / "utterances.jsonl").write_text("scpo's")
        final.mkdir()  # the user, meanwhile
        (final / "thesis.tex").write_text("thesis")

    with pytest.raises(FileExistsError, match="not empty and scpo did not make it"):
        replace_dir(final, write, what="simulation")
    assert sorted(p.name for p in final.iterdir()) == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R"]  # no temporary left


def test_an_empty_folder_created_meanwhile_is_written_into(tmp_path, renames):
    final = tmp_path / "R"

    def write(tmp):
        (tmp / "a.txt").write_text("1")
        final.mkdir()

    replace_dir(final, write, what="simulation")
    assert (final / "a.txt").read_text() == "1" and made_by_scpo(final, "simulation")


def test_a_file_added_while_scpo_swaps_its_folder_is_moved_back(tmp_path, renames):
    """The whole-folder swap takes the old folder away first: a file that appeared in it after
    the last look is moved into the new one, never deleted."""
    final = replace_dir(tmp_path / "X", _write({"a.txt": "1"}), what="simulation")
    new = tmp_path / "new"
    new.mkdir()
    (new / "a.txt").write_text("2")
    (final / "notes.md").write_text("mine")  # after the look, before the swap
    (final / "figures").mkdir()
    outdir._swap(new, final, read_marker(final).files)
    assert (final / "a.txt").read_text() == "2" and (final / "notes.md").read_text() == "mine"
    assert (final / "figures").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X"]


def test_renaming_without_replacing_refuses_whatever_is_there(tmp_path, renames):
    for kind in ("file", "empty folder", "folder"):
        src, dst = tmp_path / f"src-{kind}", tmp_path / f"dst-{kind}"
        src.mkdir() if kind != "file" else src.write_text("new")
        if kind == "file":
            dst.write_text("mine")
        else:
            dst.mkdir()
            if kind == "folder":
                (dst / "x").write_text("mine")
        with pytest.raises(FileExistsError):
            outdir.rename_noreplace(src, dst)
        assert src.exists() and dst.exists()
    outdir.rename_noreplace(tmp_path / "src-file", tmp_path / "absent")
    assert (tmp_path / "absent").read_text() == "new" and not (tmp_path / "src-file").exists()


# ---- issue 35: two writers of one output ----

HOLD = ("import sys, time; from scpo import outdir\n"
        "with outdir.hold(sys.argv[1], wait=False):\n"
        "    print('held', flush=True); time.sleep(float(sys.argv[2]))\n")


def _holder(path, seconds):
    """Another process holding the output ``path`` for ``seconds`` (once it printed 'held')."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


def test_a_runs_set_is_written_by_one_process_at_a_time(tmp_path, monkeypatch):
    """Issue 35: nothing stopped two processes writing one --out; in 9 of 40 trials the run.json
    left described the other run's files. A run's set is written holding the output: another
    process is refused it meanwhile, and gets it once the set is complete."""
    import subprocess
    import sys

    from scpo import results

    out = tmp_path / "run"
    asked = []
    real = results.write_file_atomically

    def between(path, write):  # in the middle of the set, another process asks for the output
        if not asked:
            asked.append(subprocess.run([sys.executable, "-c", HOLD, str(out), "0"],
                                        capture_output=True, text=True))
        real(path, write)

    monkeypatch.setattr(results, "write_file_atomically", between)
    results.write_run_files(out, {"results.csv": lambda p: p.write_text("a"),
                                  "histories.json": lambda p: p.write_text("{}")},
                            {"scpo_version": "x"})
    assert asked[0].returncode == 1
    assert "is being written by another scpo process" in asked[0].stderr
    after = subprocess.run([sys.executable, "-c", HOLD, str(out), "0"], capture_output=True,
                           text=True)
    assert after.returncode == 0, after.stderr  # released with the set complete


def test_a_second_writer_waits_or_stops_with_one_line(tmp_path, capsys):
    from scpo import cli

    out = tmp_path / "sim"
    holder = _holder(out, 60)
    try:
        with pytest.raises(SystemExit) as e:
            cli.main(["simulate", "--preset", "tiny", "--out", str(out)])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "is being written by another scpo process" in err and not out.exists()
    holder = _holder(out, 1.5)  # a short hold: a writer that waits goes on after it
    try:
        with outdir.hold(out):
            pass
    finally:
        holder.wait()
    assert "waiting for it to finish" in capsys.readouterr().err


def test_a_model_saved_at_the_end_of_training_waits_for_its_folder(tmp_path, capsys):
    """A run must not die after training because another process holds the model's folder:
    a model's save waits (a simulation, a fetch, a build stop at once)."""
    from scpo.results import save_model

    class Model:
        def save(self, path):
            (path / "head.safetensors").write_bytes(b"weights")

    out = tmp_path / "Chile" / "models" / "scpo_fw" / "seed0"
    holder = _holder(out, 1.5)
    try:
        save_model(Model(), out)
    finally:
        holder.wait()
    assert (out / "head.safetensors").read_bytes() == b"weights"
    assert "waiting for it to finish" in capsys.readouterr().err


def test_the_lock_folder_must_be_the_users_own(tmp_path, monkeypatch):
    import os
    import tempfile

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f"scpo-locks-{os.getuid()}").symlink_to(elsewhere)  # put there by another
    with pytest.raises(PermissionError, match="is not a folder of yours"):
        outdir.lock_file(tmp_path / "out")
    (tmp_path / f"scpo-locks-{os.getuid()}").unlink()
    assert outdir.lock_file(tmp_path / "out").parent == tmp_path / f"scpo-locks-{os.getuid()}"
