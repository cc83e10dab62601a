"""Where scpo may write: a user's files are theirs.

As ``git clone`` refuses a non-empty folder, every command that takes an output directory
writes into a new directory, or into one scpo made itself (it leaves a marker file, ``.scpo``,
in each one it creates), and refuses a non-empty directory it did not make unless told
``overwrite``; even then it replaces only the files of its own output and keeps the rest.
A set of files that belong together is written together (``replace_dir``: a temporary
directory beside the target, then a rename), and scpo deletes only what it can show it made.
Names that come from data (a country) are checked before they become part of a path
(``safe_name``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

MARKER = ".scpo"  # in every output directory scpo creates: the proof that it may replace it
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def safe_name(name: str, what: str = "name") -> str:
    """``name`` when it can be one component of a path (no separator, no control character,
    not empty, not starting with a dot), else a ValueError naming it: a country such as
    ``"../../x"`` must not write outside the directory it was given."""
    text = str(name)
    if not text.strip() or text.startswith(".") or _UNSAFE.search(text) or len(text) > 120:
        raise ValueError(f"{what} {name!r} cannot name a file or folder (it is empty, starts "
                         "with '.', is over 120 characters or holds '/', '\\' or a control "
                         "character); use the name as the data spells it, e.g. 'South Africa'")
    return text


def made_by_scpo(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def mark(path: Path, what: str) -> None:
    """Leave the marker that says scpo made ``path`` (for ``what``)."""
    (Path(path) / MARKER).write_text(json.dumps({"made_by": "scpo", "what": what}) + "\n")


def check_writable(path: str | Path, *, overwrite: bool = False, what: str = "output",
                   ours: Callable[[Path], bool] | None = None) -> bool:
    """Raise unless scpo may write ``what`` into the directory ``path``; return whether the
    directory is new, empty or scpo's own (then its files of ``what`` may be replaced and
    removed). Nothing is written.

    scpo's own: marked, or ``ours(path)`` (an older output of scpo's recognised by its
    content). A non-empty directory of the user's is refused unless ``overwrite``; a file is
    always refused.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file; the {what} needs a directory there. Choose "
                              "another path.")
    if not path.exists() or _is_empty_dir(path) or made_by_scpo(path):
        return True
    if ours is not None and ours(path):
        return True
    if overwrite:
        return False
    raise FileExistsError(
        f"{path} is not empty and scpo did not make it (no {MARKER} file in it): writing the "
        f"{what} there could replace your files. Choose a new or empty directory, or pass "
        "--overwrite to replace only the files of the output there (the rest are kept).")


def claim(path: str | Path, *, overwrite: bool = False, what: str = "output",
          ours: Callable[[Path], bool] | None = None) -> bool:
    """``check_writable``, then the directory exists: created and marked when new, empty or
    recognised by ``ours``; a user's folder (``overwrite``) is never marked, so it stays the
    user's. Returns whether it is scpo's own."""
    own = check_writable(path, overwrite=overwrite, what=what, ours=ours)
    if own:
        Path(path).mkdir(parents=True, exist_ok=True)
        if not made_by_scpo(Path(path)):
            mark(Path(path), what)
    return own


def write_file_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a hidden temporary file beside ``path``, then rename it onto ``path``:
    a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_dir(final: str | Path, write: Callable[[Path], None], *, overwrite: bool = False,
                what: str = "output", ours: Callable[[Path], bool] | None = None) -> Path:
    """Write a whole directory at once: ``write(tmp)`` into a temporary directory beside
    ``final``, then put it in place.

    ``final`` absent or empty: renamed into place. scpo's own (``claim``): swapped, the old one
    deleted once the new one is there. A user's non-empty directory, with ``overwrite``: each
    new file moved in over a same-named one, every other file kept. A failed ``write`` leaves
    ``final`` as it was.
    """
    final = Path(final)
    own = check_writable(final, overwrite=overwrite, what=what, ours=ours)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-new-", dir=final.parent))
    try:
        write(tmp)
        if own:
            mark(tmp, what)
            swap_in(tmp, final)
        else:
            for src in sorted(p for p in tmp.rglob("*") if p.is_file()):
                dest = final / src.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def swap_in(new: Path, final: Path) -> None:
    """Rename the directory ``new`` to ``final``; an existing ``final`` (scpo's: the caller
    checked) is first renamed into a temporary directory of this call's and deleted after."""
    if not final.exists() or _is_empty_dir(final):
        os.replace(new, final)  # rename(2) replaces an empty directory
        return
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}-old-", dir=final.parent))
    try:
        os.rename(final, old / "previous")
        try:
            os.rename(new, final)
        except OSError:
            os.rename(old / "previous", final)  # the old one back: nothing is lost
            raise
    finally:
        shutil.rmtree(old)
