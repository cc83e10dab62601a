"""Where scpo may write: a user's files are theirs.

As ``git clone`` refuses a non-empty folder, every command that takes an output directory
writes into a new or empty directory, or into one that holds an earlier output of the same
kind. In each output directory scpo leaves a marker, ``.scpo``, that names the kind of output
(``what``: "simulation", "run's results", ...) and lists every file scpo wrote there. The
marker owns those files, not the folder: a later command replaces or removes only files it
lists and keeps every other file (a user's notes, figures, a folder copied in). A marker of
another kind of output is refused unless told ``overwrite``; a ``.scpo`` that is a symlink,
not a regular file or not scpo's JSON is no marker at all. A non-empty directory without a
marker is the user's: refused, or with ``overwrite`` only the files of the output's own names
are replaced there, none removed, and no marker is left (it stays the user's).

Outputs of an older scpo have a marker without a file list (or none at all, recognised by
their content: ``ours``). For those, scpo owns only the files that kind of output consisted of
(``legacy``: the patterns of the names it wrote, e.g. ``results.csv``, ``html/*``), never any
other file; the next write lists what it wrote, so the question does not come up again.

A set of files that belong together is written together (``replace_dir``: a temporary
directory beside the target, then a rename), and scpo deletes only files it listed. One scpo
process at a time writes an output (``hold``: a lock on it that another process waits for, or
stops at with one line). Names that come from data (a country) are checked before they become
part of a path (``safe_name``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

MARKER = ".scpo"  # in every output directory scpo writes: what it is and the files scpo wrote
MARKER_FORMAT = 2  # 1 (older): {"made_by", "what"}, no file list
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


# ---- one writer at a time ----

class Busy(OSError):
    """Another scpo process is writing the output; the message says which and what to do."""


_LOCKS: dict[str, tuple[Any, threading.RLock]] = {}  # realpath -> (its FileLock, its threads')
_LOCKS_GUARD = threading.Lock()


def lock_file(path: str | Path) -> Path:
    """Where the lock of the output ``path`` lives: a file named by a hash of its real path in
    a folder of this user's under the temporary directory (never beside the user's folders),
    so every process of this user on this machine (with the same ``TMPDIR``) that writes
    ``path`` takes the same lock."""
    real = os.path.realpath(path)
    where = Path(tempfile.gettempdir()) / f"scpo-locks-{os.getuid()}"
    where.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(where)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():  # made by someone else
        raise PermissionError(f"{where} is not a folder of yours; scpo keeps its locks there. "
                              "Remove it, or set TMPDIR to a folder of your own")
    return where / f"{hashlib.sha256(real.encode()).hexdigest()[:32]}.lock"


def _lock_of(path: str | Path) -> tuple[Any, threading.RLock]:
    from filelock import FileLock

    real = os.path.realpath(path)
    with _LOCKS_GUARD:
        if real not in _LOCKS:  # one instance per output: flock(2) is per open file
            _LOCKS[real] = (FileLock(lock_file(real), thread_local=False), threading.RLock())
        return _LOCKS[real]


@contextlib.contextmanager
def hold(path: str | Path, *, wait: bool = True, what: str = "output") -> Iterator[None]:
    """This process holds the output ``path`` (``filelock``'s lock, ``lock_file``): another
    scpo process asking for it waits (``wait``: saying so once) or stops at once with one line
    (``Busy``). The same process holds it again freely; the kernel lets it go if the process
    dies."""
    from filelock import Timeout

    lock, _ = _lock_of(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise Busy(f"{path} is being written by another scpo process: writing the {what} "
                       "there now would mix two outputs. Wait for it to finish, or choose "
                       "another directory.") from None
        print(f"scpo: {path} is being written by another scpo process; waiting for it to "
              "finish", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _locked(path: str | Path) -> Iterator[None]:
    """``hold`` (waiting), and one thread of this process at a time: a marker's update."""
    _, threads = _lock_of(path)
    with threads, hold(path):
        yield


# ---- the marker ----

@dataclass(frozen=True)
class Marker:
    """What a ``.scpo`` file says: the kind of output, and the files scpo wrote (None: an older
    scpo's marker, which listed none)."""

    what: str
    files: frozenset[str] | None


def is_inside(rel: str) -> bool:
    """``rel`` is a path inside a directory, spelled one way: no '..', '.', empty part or
    leading '/' (joined to the directory, an absolute path would lead anywhere)."""
    if not isinstance(rel, str):
        return False
    parts = PurePosixPath(rel).parts
    return (bool(parts) and "\x00" not in rel and not rel.startswith("/")
            and "/".join(parts) == rel and not {"..", "."} & set(parts))


def read_marker(path: str | Path) -> Marker | None:
    """The marker of the directory ``path``; None when it has none: no ``.scpo``, or one that is
    a symlink (a link to another folder's marker proves nothing about this one), not a regular
    file, not scpo's JSON, or listing a path outside the directory."""
    try:
        fd = os.open(Path(path) / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            data = json.loads(f.read(1 << 24).decode("utf-8"))
    except (OSError, ValueError):
        return None
    if (not isinstance(data, dict) or data.get("made_by") != "scpo"
            or not isinstance(data.get("what"), str)):
        return None
    files = data.get("files")
    if files is None:
        return Marker(data["what"], None)
    if not isinstance(files, list) or not all(isinstance(f, str) and is_inside(f)
                                              for f in files):
        return None
    return Marker(data["what"], frozenset(files))


def made_by_scpo(path: str | Path, what: str | None = None) -> bool:
    """``path`` holds scpo's marker (of the kind ``what``, when given)."""
    marker = read_marker(path)
    return marker is not None and (what is None or marker.what == what)


def mark(path: str | Path, what: str, files: Iterable[str] = ()) -> None:
    """Write the marker of ``path``: scpo wrote ``files`` (paths relative to it) as ``what``.
    A ``.scpo`` that is not a marker (a symlink, a folder) is not replaced."""
    marker = Path(path) / MARKER
    if os.path.lexists(marker) and not stat.S_ISREG(os.lstat(marker).st_mode):
        raise FileExistsError(f"{marker} is not scpo's marker (a symlink or not a regular "
                              "file); move it away and run again")
    text = json.dumps({"made_by": "scpo", "format": MARKER_FORMAT, "what": what,
                       "files": sorted(set(files))}, indent=1) + "\n"
    write_file_atomically(marker, lambda p: p.write_text(text, encoding="utf-8"))


def _files(root: Path) -> list[str]:
    """Every file under ``root`` (and symlink: never followed), relative, but its marker."""
    out: list[str] = []

    def walk(d: Path, prefix: str) -> None:
        with os.scandir(d) as entries:
            for e in entries:
                rel = f"{prefix}{e.name}"
                if e.is_dir(follow_symlinks=False):
                    walk(Path(e.path), rel + "/")
                elif rel != MARKER:
                    out.append(rel)

    if root.is_dir():
        walk(root, "")
    return sorted(out)


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _real_dirs(root: Path, rel: str) -> bool:
    """Every folder on the way from ``root`` to ``rel`` is a real folder or absent: never a
    symlink, through which a write or a delete would reach a folder elsewhere."""
    here = root
    for part in PurePosixPath(rel).parts[:-1]:
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            return True
        if not stat.S_ISDIR(mode):
            return False
    return True


# ---- who owns what ----

@dataclass
class Target:
    """An output directory as ``check_writable`` found it, and what scpo may do there.

    ``owned``: the files scpo may replace or remove (listed by its marker; empty for a new or
    empty directory); None for a folder of the user's (or of another kind of output), written
    into with ``overwrite``: same-named files are replaced there, none removed, none listed.
    """

    path: Path
    what: str
    owned: frozenset[str] | None
    overwrite: bool = False
    told: str = "--overwrite"  # how a user says overwrite ("": the command has no such option)

    @property
    def own(self) -> bool:
        return self.owned is not None

    def clashes(self, names: Iterable[str]) -> list[str]:
        """``names`` that exist in the directory and are not scpo's to replace."""
        if self.owned is None:
            return []
        return sorted(n for n in names if n not in self.owned
                      and (os.path.lexists(self.path / n) or not _real_dirs(self.path, n)))

    def add(self, names: Iterable[str]) -> None:
        """List ``names`` in the marker before they are written (a crash part-way leaves no
        file of scpo's unlisted). A name that is there and not scpo's is refused unless
        ``overwrite``. In a folder of the user's (``overwrite``) nothing is listed."""
        names = set(names)
        for n in names:
            if not is_inside(n):
                raise ValueError(f"{n!r} is not a path inside {self.path}")
        if self.owned is None:
            return
        with _locked(self.path):
            self._reread()
            clash = self.clashes(names)
            if clash and not self.overwrite:
                raise FileExistsError(_not_listed(self.path, clash, self.what, self.told))
            if not names <= self.owned:
                self.owned = self.owned | names
                mark(self.path, self.what, self.owned)

    def remove(self, names: Iterable[str]) -> list[str]:
        """Delete those of ``names`` that scpo listed (and unlist them); every other file is
        kept. Returns the names deleted."""
        if self.owned is None:
            return []
        with _locked(self.path):
            self._reread()
            listed = set(names) & self.owned
            gone = _remove_listed(self.path, listed)
            if listed:
                self.owned = self.owned - listed
                mark(self.path, self.what, self.owned)
        return sorted(gone)

    def _reread(self) -> None:
        """The marker as it is now: another writer of this output may have listed files."""
        marker = read_marker(self.path)
        if marker is not None and marker.what == self.what and marker.files is not None:
            self.owned = marker.files


def _not_listed(path: Path, names: list[str], what: str, told: str = "--overwrite") -> str:
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (f"{path}: {shown} {'is' if len(names) == 1 else 'are'} not among the files scpo "
            f"wrote there (its {MARKER} marker does not list them): writing the {what} would "
            f"replace them. Move them away{f', or pass {told} to replace them' if told else ''}.")


def owned_files(path: str | Path, what: str, *, ours: Callable[[Path], bool] | None = None,
                legacy: Iterable[str] = ()) -> frozenset[str] | None:
    """The files of the directory ``path`` that scpo may replace or remove when writing
    ``what`` there; None when ``path`` holds no output of scpo's of that kind.

    Its marker of kind ``what`` lists them. An older scpo's output (a marker of that kind with
    no list, or none at all and recognised by ``ours``) owns only the files present that match
    ``legacy``, the patterns of the names that kind of output wrote: never any other file.
    """
    path = Path(path)
    marker = read_marker(path)
    if marker is not None:
        if marker.what != what:
            return None
        if marker.files is not None:
            return marker.files
    elif ours is None or not ours(path):
        return None
    patterns = tuple(legacy)
    return frozenset(f for f in _files(path) if any(fnmatch.fnmatchcase(f, p) for p in patterns))


def check_writable(path: str | Path, *, overwrite: bool = False, what: str = "output",
                   ours: Callable[[Path], bool] | None = None, legacy: Iterable[str] = (),
                   names: Iterable[str] = (), told: str = "--overwrite") -> Target:
    """Raise unless scpo may write ``what`` into the directory ``path``; return what it may do
    there (``Target``). Nothing is written.

    New or empty: scpo's. Holding scpo's output of this kind (``owned_files``): scpo's, but
    ``names`` (files the output will write) that are there and not listed are refused unless
    ``overwrite``. A folder of the user's or another kind of output: refused unless
    ``overwrite``. A file, or a symlink to nothing, is always refused. ``told``: the option
    that says overwrite, named in the refusals ("" for a command without one).
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise FileNotFoundError(f"{path} is a symlink to {os.readlink(path)}, which does not "
                                f"exist: create that directory or choose another path for "
                                f"the {what}")
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} is a file; the {what} needs a directory there. Choose "
                              "another path.")
    if not path.exists() or _is_empty_dir(path):
        return Target(path, what, frozenset(), overwrite, told)
    owned = owned_files(path, what, ours=ours, legacy=legacy)
    if owned is None:
        if overwrite:
            return Target(path, what, None, overwrite, told)
        other = read_marker(path)
        if other is not None:
            raise FileExistsError(
                f"{path} holds scpo's {other.what} (its {MARKER} marker says so), not the "
                f"{what}: writing here would mix two outputs. Choose another directory"
                + (f", or pass {told} to add the {what}'s files to it (same-named files are "
                   "replaced, none other is removed)." if told else "."))
        raise FileExistsError(
            f"{path} is not empty and scpo did not make it (no {MARKER} file in it): writing "
            f"the {what} there could replace your files. Choose a new or empty directory"
            + (f", or pass {told} to replace only the files of the output there (the rest "
               "are kept)." if told else "."))
    target = Target(path, what, owned, overwrite, told)
    clash = target.clashes(names)
    if clash and not overwrite:
        raise FileExistsError(_not_listed(path, clash, what, told))
    return target


def claim(path: str | Path, *, overwrite: bool = False, what: str = "output",
          ours: Callable[[Path], bool] | None = None, legacy: Iterable[str] = (),
          names: Iterable[str] = (), told: str = "--overwrite") -> Target:
    """``check_writable``, then the directory exists: created and marked when scpo's (an older
    output's marker rewritten with the files it owns); a user's folder (``overwrite``) is
    never marked, so it stays the user's. Write into it through the returned ``Target``."""
    target = check_writable(path, overwrite=overwrite, what=what, ours=ours, legacy=legacy,
                            names=names, told=told)
    if target.own:
        target.path.mkdir(parents=True, exist_ok=True)
        with _locked(target.path):
            marker = read_marker(target.path)
            if marker is None or marker.files is None:
                mark(target.path, what, target.owned or ())
    return target


# ---- writing ----

def write_file_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` to a hidden temporary file beside ``path``, then rename it onto ``path``:
    a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_listed(root: Path, rels: Iterable[str]) -> set[str]:
    """Delete the files ``rels`` under ``root`` (a file, or a symlink itself: a folder is
    never deleted, nor anything reached through a symlinked folder), then the folders that
    became empty; returns those deleted."""
    gone: set[str] = set()
    for rel in sorted(rels):
        p = root / rel
        if not _real_dirs(root, rel):
            continue
        try:
            if stat.S_ISDIR(os.lstat(p).st_mode):
                continue
            p.unlink()
        except FileNotFoundError:
            continue
        gone.add(rel)
    for d in sorted({p for rel in gone for p in PurePosixPath(rel).parents if p.parts},
                    key=lambda p: -len(p.parts)):
        try:
            (root / d).rmdir()
        except OSError:
            pass  # not empty: something else is in it
    return gone


def _move_in(src: Path, dest: Path, files: list[str],
             replace: Callable[[str], bool] = lambda rel: True) -> None:
    """Move each of ``files`` from ``src`` into ``dest``, over a file there only when
    ``replace(rel)`` (the caller checked it may be replaced; any other name that appears
    meanwhile is not replaced: FileExistsError), never through a symlinked folder."""
    for rel in files:
        if not _real_dirs(dest, rel):
            raise FileExistsError(f"{dest / rel}: a folder on its way is a symlink; scpo does "
                                  "not write through it. Replace the link with a folder.")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if replace(rel):
            os.replace(src / rel, dest / rel)
        else:
            rename_noreplace(src / rel, dest / rel)


def _holds_cwd(path: Path) -> bool:
    """The working directory is ``path`` or inside it (then ``path`` is never renamed away)."""
    try:
        cwd = Path.cwd().resolve()
    except OSError:
        return False
    return cwd == path or path in cwd.parents


def _new_dir(parent: Path, prefix: str) -> Path:
    """A new directory of this call's, with the mode the umask gives (mkdtemp's is 0700)."""
    while True:
        d = parent / f"{prefix}{uuid.uuid4().hex[:8]}"
        try:
            d.mkdir()
            return d
        except FileExistsError:
            continue


def _libc_renameat2() -> Callable[..., int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_renameat2 = _libc_renameat2()  # Linux (glibc 2.28+); None elsewhere
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``, failing (FileExistsError) when ``dst`` exists, whatever it
    is: checked by the kernel in the rename itself (``renameat2(RENAME_NOREPLACE)``), so a
    folder a user creates at ``dst`` meanwhile is never replaced. Where that call is missing,
    or the filesystem refuses it: a file is hard-linked to ``dst`` (which fails if ``dst``
    exists) and unlinked; a folder is renamed onto an absent ``dst`` checked just before
    (rename(2) then fails if ``dst`` became a non-empty folder; an empty one is taken)."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst),
                      _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), str(dst))
    if stat.S_ISDIR(os.lstat(src).st_mode):
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst))
        os.rename(src, dst)
        return
    os.link(src, dst, follow_symlinks=False)
    os.unlink(src)


def replace_dir(final: str | Path, write: Callable[[Path], None], *, overwrite: bool = False,
                what: str = "output", ours: Callable[[Path], bool] | None = None,
                legacy: Iterable[str] = (), wait: bool = False,
                told: str = "--overwrite") -> Path:
    """Write a whole directory at once: ``write(tmp)`` into a temporary directory beside
    ``final``, then put it in place (``install``). A failed ``write`` leaves ``final`` as it
    was. Another process writing ``final``: stop with one line (``Busy``), or with ``wait`` (a
    model saved at the end of training) wait for it."""
    with hold(final, wait=wait, what=what):
        check_writable(final, overwrite=overwrite, what=what, ours=ours, legacy=legacy,
                       told=told)
        final = Path(os.path.realpath(final))
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_dir(final.parent, f".{final.name}-new-")
        try:
            write(tmp)
            install(tmp, final, overwrite=overwrite, what=what, ours=ours, legacy=legacy,
                    told=told)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return final


def install(new: Path, final: str | Path, *, overwrite: bool = False, what: str = "output",
            ours: Callable[[Path], bool] | None = None, legacy: Iterable[str] = (),
            told: str = "--overwrite") -> Path:
    """Put the directory ``new`` (written by the caller, beside ``final``) in place of
    ``final``, listing its files in ``final``'s marker.

    ``final`` absent: ``new`` renamed into place. Holding only files its marker lists (and
    not the working directory): swapped whole, the old files deleted once the new ones are in
    place. Else (an empty folder, or scpo's with files of the user's beside its own): the new
    files moved in one by one, the files the marker listed and the new output lacks deleted,
    every other file kept. A folder of the user's (``overwrite``): each new file moved in over
    a same-named one, every other file kept, no marker.
    """
    with _locked(final):  # one writer at a time
        files = _files(new)
        final = Path(os.path.realpath(final))
        if not os.path.lexists(final):
            mark(new, what, files)
            try:
                rename_noreplace(new, final)
                return final
            except FileExistsError:  # it appeared while scpo wrote: it is looked at again
                pass
        target = check_writable(final, overwrite=overwrite, what=what, ours=ours,
                                legacy=legacy, told=told)
        if target.owned is None:
            _move_in(new, final, files)
            return final
        clash = target.clashes(files)
        if clash and not overwrite:
            raise FileExistsError(_not_listed(final, clash, what, told))
        if (not _holds_cwd(final) and set(_files(final)) <= target.owned
                and os.path.lexists(final / MARKER)):
            mark(new, what, files)
            _swap(new, final, target.owned)
            return final
        mark(final, what, target.owned | set(files))
        _move_in(new, final, files,
                 replace=lambda rel: rel in target.owned or (overwrite and rel in clash))
        _remove_listed(final, target.owned - set(files))
        mark(final, what, files)
        return final


def _swap(new: Path, final: Path, owned: frozenset[str]) -> None:
    """Rename ``new`` to ``final``; the old ``final`` is first renamed into a directory of this
    call's, and of it only the files ``owned`` (and its marker) are deleted: anything else (a
    file added while scpo wrote) is moved back into the new ``final``, or kept and named."""
    old = _new_dir(final.parent, f".{final.name}-old-")
    previous = old / "previous"
    os.rename(final, previous)
    try:
        rename_noreplace(new, final)  # fails if a folder appeared there meanwhile
    except OSError:
        try:
            rename_noreplace(previous, final)  # the old one back: nothing is lost
            old.rmdir()
        except OSError:
            raise FileExistsError(f"{final} appeared while scpo replaced it; the output it "
                                  f"held before is in {previous}") from None
        raise
    _remove_listed(previous, owned | {MARKER})
    kept = []
    for rel in _files(previous):
        if not os.path.lexists(final / rel):
            try:
                _move_in(previous, final, [rel])
                continue
            except OSError:
                pass
        kept.append(rel)
    for d in sorted((Path(r) for r, _, _ in os.walk(previous)), key=lambda p: -len(p.parts)):
        if d != previous:  # a folder of the user's, now empty or emptied: it is there again
            try:
                (final / d.relative_to(previous)).mkdir(parents=True, exist_ok=True)
            except OSError:
                continue  # a file of the new output has its name: kept where it is
        try:
            d.rmdir()
        except OSError:
            pass
    if kept:
        warnings.warn(f"{final}: {kept} appeared while scpo wrote and clash with its new "
                      f"files; they are kept in {previous}", stacklevel=3)
        return
    old.rmdir()
