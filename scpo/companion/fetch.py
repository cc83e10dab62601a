"""The book's real inputs, fetched pinned: PRISM, GlobalOpinionQA, the paper's global RM and the
authors' country RMs, from the Hugging Face hub into one data directory.

    scpo fetch DIR                   # every input of scpo/pins.toml -> DIR/<dest>
    scpo fetch DIR --only prism goqa
    SCPO_DATA_DIR=DIR make book      # the book with its real-data chapters

Each input is downloaded with ``huggingface_hub.snapshot_download`` (its cache resumes an
interrupted download; offline, ``HF_HUB_OFFLINE=1``, it reads that cache), checked, and copied
into place as one directory (``scpo.outdir.replace_dir``): a copy, never a link into the hub
cache, so an edit in ``DIR`` cannot change the cache's bytes. The checks: every required file;
each file's bytes against the hash the hub cache names its blob by; the sha256 the pins give
(``pins.toml``); and every other file's sha256 against the one recorded at the first fetch of
that pin, whose commit later fetches of a branch pin (``main``) ask for again.
``DIR/MANIFEST.json`` records for each input the revision pinned, the commit got, and every
file's size and sha256 (paths inside ``DIR`` only). A second fetch checks every file's sha256
and downloads nothing; a file changed since it was fetched is named, never replaced. Files a
user put in ``DIR/<dest>`` by hand (no hub here) are checked against the pinned sha256 and
recorded as such, never replaced.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import re
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scpo.outdir import is_inside, made_by_scpo, replace_dir, write_file_atomically

PINS_FILE = Path(__file__).parents[1] / "pins.toml"  # package data beside the presets
MANIFEST = "MANIFEST.json"
MANIFEST_FORMAT = "scpo-manifest-1"
if TYPE_CHECKING:
    import pandas as pd

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class FetchError(OSError):
    """Some inputs could not be fetched; the message names them and how to provide them."""


@dataclass(frozen=True)
class Input:
    """One pinned input: a hub repository's files at a revision, and where they go."""

    name: str
    repo: str
    repo_type: str  # "dataset" or "model"
    revision: str  # a commit, or a branch the fetch resolves once
    files: tuple[str, ...]  # glob patterns of the repository's paths to take
    required: tuple[str, ...]  # paths that must be among them
    dest: str  # under the data directory
    flatten: bool = False  # keep only each file's name (data/x.csv -> x.csv)
    sha256: dict[str, str] = field(default_factory=dict, hash=False)
    licence: str = ""

    @property
    def pinned(self) -> str:
        return f"{self.repo}@{self.revision}"

    def local_name(self, path: str) -> str:
        return Path(path).name if self.flatten else path


def load_pins(path: str | Path | None = None) -> dict[str, Input]:
    """The inputs of a pins file (default: the package's), the authors' table expanded into
    one input per country (``authors-<country>``); a malformed entry names the file and key."""
    path = Path(path) if path is not None else PINS_FILE
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: cannot read the pins ({e})") from None
    out: dict[str, Input] = {}
    for name, entry in table.items():
        where = f"{path}: [{name}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a table of repo, repo_type, revision, files, dest")
        if "countries" in entry:
            revisions = entry.get("revision", {})
            for country in entry["countries"]:
                one = {k: v for k, v in entry.items() if k not in ("countries", "revision")}
                one = {k: v.format(country=country) if isinstance(v, str) else v
                       for k, v in one.items()}
                if not isinstance(revisions, dict) or country not in revisions:
                    raise ValueError(f"{where}.revision has no entry for {country!r}")
                out[f"{name}-{country}"] = _input(f"{name}-{country}",
                                                  {**one, "revision": revisions[country]}, where)
        else:
            out[name] = _input(name, entry, where)
    return out


def _input(name: str, entry: dict[str, Any], where: str) -> Input:
    need = ("repo", "repo_type", "revision", "files", "dest")
    missing = [k for k in need if k not in entry]
    if missing:
        raise ValueError(f"{where} lacks {missing}; an input needs {list(need)}")
    if entry["repo_type"] not in ("dataset", "model"):
        raise ValueError(f"{where}: repo_type {entry['repo_type']!r} is not 'dataset' or 'model'")
    return Input(name=name, repo=entry["repo"], repo_type=entry["repo_type"],
                 revision=str(entry["revision"]), files=tuple(entry["files"]),
                 required=tuple(entry.get("required", ())), dest=entry["dest"],
                 flatten=bool(entry.get("flatten", False)), sha256=dict(entry.get("sha256", {})),
                 licence=entry.get("licence", ""))


# ---- the manifest ----

def read_manifest(data_dir: str | Path) -> dict[str, Any]:
    """``DIR/MANIFEST.json`` ({"format", "inputs": {name: record}}), empty when absent."""
    path = Path(data_dir) / MANIFEST
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "inputs": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); delete it and run `scpo fetch` "
                         "again (present files are recorded anew)") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected "
                         f"{MANIFEST_FORMAT!r}; delete it and run `scpo fetch` again")
    inputs = manifest.get("inputs")
    if not isinstance(inputs, dict):
        raise ValueError(f"{path}: 'inputs' must map input names to records; delete it and run "
                         "`scpo fetch` again")
    for name, rec in inputs.items():
        files = rec.get("files") if isinstance(rec, dict) else None
        dest = rec.get("dest") if isinstance(rec, dict) else None
        if not isinstance(files, dict) or not isinstance(dest, str):
            raise ValueError(f"{path}: input {name!r} has no 'dest' and 'files'; delete it and "
                             "run `scpo fetch` again")
        bad = [p for p in [dest, *files] if not is_inside(p)]
        if bad:  # joined to DIR, an absolute path would be believed: /etc/hostname
            raise ValueError(f"{path}: input {name!r} lists {bad[0]!r}, not a path inside the "
                             "data directory; delete the manifest and run `scpo fetch` again")
    return manifest


def _write_manifest(data_dir: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    write_file_atomically(data_dir / MANIFEST, lambda p: p.write_text(text, encoding="utf-8"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_records(root: Path, inp: Input) -> dict[str, dict[str, Any]]:
    """Size and sha256 of the files under ``root`` that ``inp`` takes (its patterns, by their
    local names): a README a user left beside them is not part of the input."""
    globs = [inp.local_name(g) for g in inp.files]
    return {rel: {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")
            for rel in [str(p.relative_to(root))] if any(fnmatch.fnmatch(rel, g) for g in globs)}


def changed_files(dest: Path, rec: dict[str, Any]) -> list[str]:
    """The files ``rec`` records under ``dest`` that are missing or whose sha256 differs now."""
    return [f for f, r in rec["files"].items()
            if not (dest / f).is_file() or (dest / f).stat().st_size != r["size"]
            or sha256_file(dest / f) != r["sha256"]]


def is_present(data_dir: Path, inp: Input, manifest: dict[str, Any]) -> bool:
    """Recorded for this pin, and every recorded file still there with its sha256 (no
    network)."""
    rec = manifest["inputs"].get(inp.name)
    if not rec or rec.get("pinned") != inp.pinned or not rec.get("files"):
        return False
    return not changed_files(data_dir / inp.dest, rec)


def _by_hand(dest: Path, inp: Input) -> bool:
    """Files a user put there without scpo (no marker), every required one among them; one
    that fails a pinned sha256 is refused (FetchError), never recorded."""
    if not (dest.is_dir() and not made_by_scpo(dest)
            and all((dest / inp.local_name(r)).is_file() for r in inp.required)):
        return False
    for rel, want in inp.sha256.items():
        f = dest / inp.local_name(rel)
        got = sha256_file(f) if f.is_file() else None
        if got is not None and got != want:
            raise FetchError(f"{inp.name}: {f} (put there by hand) has sha256 {got}, the pin "
                             f"says {want}: it is not the file of {inp.pinned}. Put the pinned "
                             "file there, or fetch it where the hub is reachable")
    return True


# ---- fetching ----

def download(inp: Input) -> Path:
    """The snapshot folder of ``inp`` in the hub cache (downloaded, or read from the cache when
    offline); its name is the commit it resolved to."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(inp.repo, repo_type=inp.repo_type, revision=inp.revision,
                                  allow_patterns=list(inp.files)))


def _git_blob_sha1(path: Path) -> str:
    """The git object id of a file's bytes: what the hub cache names a non-LFS file's blob."""
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_blob(link: Path, inp: Input, rel: str) -> str:
    """``link``'s sha256, after checking its bytes against the name of the hub cache's blob it
    points to (an LFS file's sha256, a git file's object id): a cache edited through a link
    (earlier fetches linked files into DIR) is found, never recorded as the hub's."""
    blob = link.resolve()
    got = sha256_file(blob)
    name = blob.name
    if re.fullmatch(r"[0-9a-f]{64}", name):
        ok = got == name
    elif re.fullmatch(r"[0-9a-f]{40}", name):
        ok = _git_blob_sha1(blob) == name
    else:
        ok = True  # not a hub cache's blob: nothing to check it against
    if not ok:
        raise FetchError(f"{inp.pinned}: {rel} in the hub cache ({blob}) no longer holds the "
                         "bytes its name says (edited?); delete that file and fetch again")
    return got


def _pick(folder: Path, inp: Input) -> dict[str, Path]:
    """The snapshot's files matching ``inp.files`` (relative path -> file), checked."""
    files = {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*"))
             if p.is_file() and any(fnmatch.fnmatch(str(p.relative_to(folder)), g)
                                    for g in inp.files)}
    missing = [r for r in inp.required if r not in files]
    if missing:
        raise FetchError(f"{inp.pinned} has no {missing} (it has {sorted(files) or 'nothing'} "
                         f"matching {list(inp.files)})")
    sums = {rel: _check_blob(path, inp, rel) for rel, path in files.items()}
    for rel, want in inp.sha256.items():
        if rel not in files:
            raise FetchError(f"{inp.pinned} has no {rel}, whose sha256 is pinned")
        if sums[rel] != want:
            raise FetchError(f"{inp.pinned}: {rel} has sha256 {sums[rel]}, the pin says {want}; "
                             "the repository changed under its revision, or the download is "
                             "corrupt (if the pin is out of date, update scpo/pins.toml on "
                             "purpose)")
    return files


def _check_recorded(inp: Input, rec: dict[str, Any] | None, files: dict[str, Path]) -> None:
    """Files of a pin fetched before: each must have the sha256 recorded at that first fetch
    (the hub's file of a pinned commit never changes; a branch pin asks for its recorded
    commit)."""
    if not rec or rec.get("pinned") != inp.pinned or rec.get("source") != "hub":
        return
    for rel, path in files.items():
        was = rec["files"].get(inp.local_name(rel), {}).get("sha256")
        if was is not None and sha256_file(path) != was:
            raise FetchError(f"{inp.pinned}: {rel} has sha256 {sha256_file(path)}, not the "
                             f"{was} recorded when it was first fetched (commit "
                             f"{rec.get('commit')}); the repository changed under its revision "
                             "or the download is corrupt")


def _copy(src: Path, dst: Path) -> None:
    """A copy of the hub cache's file: DIR's bytes are its own, an edit there leaves the
    cache (and what a later fetch records) as the hub's."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def fetch(data_dir: str | Path, only: list[str] | None = None, pins: str | Path | None = None,
          log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every input of ``pins`` (or those named in ``only``) into ``data_dir``; returns the
    manifest. What could not be fetched is raised at the end in one ``FetchError`` naming it,
    after every other input was fetched and recorded."""
    data_dir = Path(data_dir)
    inputs = load_pins(pins)
    unknown = sorted(set(only or []) - set(inputs))
    if unknown:
        raise ValueError(f"unknown input(s) {unknown}; the pins name {sorted(inputs)}")
    todo = [inputs[n] for n in (only or inputs)]
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(data_dir)
    missing: list[str] = []
    reasons: set[str] = set()
    for inp in todo:
        dest = data_dir / inp.dest
        rec = manifest["inputs"].get(inp.name)
        if rec and rec.get("pinned") == inp.pinned and rec.get("files"):
            changed = changed_files(dest, rec)
            if not changed:
                log(f"  present    {inp.name}  ({inp.dest})")
                continue
            gone = [f for f in changed if not (dest / f).exists()]
            if rec.get("source") == "hub" and len(gone) < len(changed):
                raise FetchError(
                    f"{inp.name}: {sorted(set(changed) - set(gone))} in {dest} changed since "
                    f"scpo fetch recorded {inp.pinned} (their sha256 differ): a page would cite "
                    "the pinned commit for other bytes. Move them away to keep your version, "
                    "then run `scpo fetch` again to put the pinned files back")
        if _by_hand(dest, inp):
            manifest["inputs"][inp.name] = _record(inp, None, "by hand",
                                                   _file_records(dest, inp))
            _write_manifest(data_dir, manifest)
            log(f"  recorded   {inp.name}  ({inp.dest}, provided by hand)")
            continue
        again = (rec if rec and rec.get("pinned") == inp.pinned and rec.get("source") == "hub"
                 and _COMMIT.match(rec.get("commit") or "") else None)
        try:  # a branch pin (main) fetched before: the commit recorded then, not today's main
            folder = download(dataclasses.replace(inp, revision=again["commit"]) if again
                              and not _COMMIT.match(inp.revision) else inp)
            files = _pick(folder, inp)
        except FetchError as e:
            raise FetchError(f"{inp.name}: {e}") from None
        except Exception as e:  # the hub out of reach, a repository or revision not found
            missing.append(f"{inp.name} ({inp.pinned}: {', '.join(inp.required)} -> "
                           f"{inp.dest}/)")
            reasons.add(_reason(e))
            continue
        commit = folder.name if _COMMIT.match(folder.name) else None
        asked = again["commit"] if again and not _COMMIT.match(inp.revision) else inp.revision
        if _COMMIT.match(asked) and commit != asked:
            raise FetchError(f"{inp.name}: asked for commit {asked}, got {folder}")
        _check_recorded(inp, rec, files)
        replace_dir(dest, lambda tmp, inp=inp, files=files: [
            _copy(src, tmp / inp.local_name(rel)) for rel, src in files.items()],
            what=f"input {inp.name}", legacy=[inp.local_name(g) for g in inp.files], told="")
        manifest["inputs"][inp.name] = _record(inp, commit, "hub", _file_records(dest, inp))
        _write_manifest(data_dir, manifest)
        log(f"  fetched    {inp.name}  {inp.repo}@{(commit or inp.revision)[:12]} -> {inp.dest}")
    if missing:
        raise FetchError(
            f"could not fetch {len(missing)} of {len(todo)} inputs ({'; '.join(sorted(reasons))})"
            f": {'; '.join(missing)}. Where the hub is reachable run `scpo fetch DIR` and copy "
            f"DIR over, or download each by hand (`hf download <repo> --revision <revision> "
            f"--local-dir {data_dir}/<dest>`, or the files themselves) and run `scpo fetch "
            f"{data_dir}` again to record them")
    return manifest


def _record(inp: Input, commit: str | None, source: str,
            files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"repo": inp.repo, "repo_type": inp.repo_type, "pinned": inp.pinned,
            "commit": commit, "source": source, "dest": inp.dest, "licence": inp.licence,
            "files": files}


def _reason(e: Exception) -> str:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE=1 and not in the hub cache"
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return f"{type(e).__name__}: {first[:160]}"


# ---- what the pages show ----

def revisions(data_dir: str | Path, names: list[str] | None = None) -> list[dict[str, Any]]:
    """What a real-data page was built from, one row per input (``names``: those of the pins
    the page read, default every recorded one): repository, revision pinned, commit got and
    how (hub, or by hand), files and MB. An input the manifest does not record (its files put
    there without ``scpo fetch``) is shown with its files' sha256, computed now."""
    pins, root = load_pins(), Path(data_dir)
    try:
        manifest = read_manifest(data_dir)
        unread = ""
    except ValueError as e:  # a page shows what it can: the files' own sha256, and why
        manifest, unread = {"inputs": {}}, f" ({MANIFEST} unreadable: {str(e).split(';')[0]})"
    rows = []
    for name in names or sorted(manifest["inputs"]):
        rec = manifest["inputs"].get(name)
        if rec is None:
            if name not in pins:
                raise KeyError(f"{name!r} is not an input of the pins; they name {sorted(pins)}")
            dest = root / pins[name].dest
            files = _file_records(dest, pins[name]) if dest.is_dir() else {}
            sha = ", ".join(f"{f} {r['sha256'][:12]}" for f, r in files.items())
            rows.append({"input": name, "repository": pins[name].repo,
                         "pinned": "",
                         "commit": f"not recorded (no scpo fetch{unread}): sha256 {sha}",
                         "files": len(files),
                         "MB": round(sum(r["size"] for r in files.values()) / 1e6, 1)})
            continue
        rows.append({"input": name, "repository": rec["repo"],
                     "pinned": rec["pinned"].split("@", 1)[1],
                     "commit": rec["commit"] or f"({rec['source']})", "files": len(rec["files"]),
                     "MB": round(sum(f["size"] for f in rec["files"].values()) / 1e6, 1)})
    return rows


def revision_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``revisions``' rows as a page shows them, narrow enough for the text column: one row per
    input, the revision pinned and the commit got in one column (the commit once where the pin
    is that commit, "pin → commit" where it names a branch or tag), files and MB in one."""
    import pandas as pd

    def revision(r: dict[str, Any]) -> str:
        pinned, commit = r["pinned"], r["commit"]
        return commit if not pinned or pinned == commit else f"{pinned} → {commit}"

    def size(r: dict[str, Any]) -> str:
        return f"{r['files']} file{'' if r['files'] == 1 else 's'}, {r['MB']:g} MB"

    return pd.DataFrame([{"input": r["input"], "repository": r["repository"],
                          "revision (pinned → commit)": revision(r), "size": size(r)}
                         for r in rows],
                        columns=["input", "repository", "revision (pinned → commit)",
                                 "size"]).set_index("input")


def provenance(path: str | Path | None, source: str, fingerprint: str) -> str:
    """One line on where a run's data came from, for its page: the simulator; an input of the
    pins that ``scpo fetch`` recorded in the ``MANIFEST.json`` beside it (repository@commit); or
    the files' fingerprint the run recorded when nothing was."""
    if source == "sim":
        return "the simulator (scpo.simulate)"
    if not path:
        return f"{fingerprint} (read from the Hugging Face hub)"
    where = Path(path).resolve()
    if where.is_file():  # GlobalOpinionQA's csv given itself
        where = where.parent
    for name, inp in load_pins().items():
        depth = len(Path(inp.dest).parts)
        if len(where.parents) < depth:
            continue
        root = where.parents[depth - 1]  # DIR, if where is DIR/<dest>
        if (root / inp.dest).resolve() != where or not (root / MANIFEST).is_file():
            continue
        try:
            rec = read_manifest(root)["inputs"].get(name)
        except ValueError:
            rec = None
        if rec:
            changed = changed_files(root / inp.dest, rec)
            if changed:  # not the bytes recorded: the page must not cite the pin for them
                return (f"local files {fingerprint} ({', '.join(changed)} changed since scpo "
                        f"fetch recorded them from {rec['repo']})")
            got = rec["commit"] or f"provided by hand, pinned {rec['pinned']}"
            return f"{rec['repo']}@{got} (recorded by scpo fetch), files {fingerprint}"
    return f"local files {fingerprint} (not recorded by scpo fetch)"
