"""On-disk cache of per-text arrays: sentence embeddings and global-RM scores.

An entry is addressed by (namespace, key): the namespace fingerprints what produced the values (an
encoder, a reward model's weights), the key is ``scpo.pairs.text_key(prompt, response)``. Each
``put_many`` writes ONE safetensors shard ``<root>/<namespace>/<uuid>.safetensors`` holding a
tensor ``values`` [n, *row_shape] and, in its metadata, the n keys and a sha256 of the tensor
bytes. Reading 10k entries is therefore a few file reads, not 10k.

A ``ragged`` cache holds rows of different lengths (a text's token-level hidden states, [n_tokens,
d]): a shard stores them end to end, [sum of lengths, d], with the lengths in its metadata.

``write_dir_atomically`` does the same for a whole directory (a simulation, a pair table).

Safety: a shard is written to a ``.part`` file and renamed into place (``os.replace`` is atomic),
so a killed run never leaves a half-written shard that a reader would see. A shard that fails to
parse, whose checksum or shape does not match, is reported with a warning naming the file, deleted,
and its entries recomputed by the next ``cached_compute``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from scpo.config import cache_dir

FORMAT = "scpo-cache-1"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def write_dir_atomically(final: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` into a temporary directory beside ``final``, then rename it to ``final``:
    a reader never sees a half-written directory, and an interrupted write leaves only a hidden
    temporary one. If another process put ``final`` in place first, its copy is kept."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        write(tmp)  # any error here (a full disk) is the caller's to see
        try:
            os.rename(tmp, final)
        except OSError as e:  # only "already there": a concurrent writer won the race
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def namespace_dir(namespace: str) -> str:
    """A directory name for the namespace: itself if it is a safe file name, else a hash suffix."""
    if not namespace:
        raise ValueError("cache namespace is empty; pass the fingerprint of what makes the values")
    if _SAFE_NAME.match(namespace) and namespace not in (".", ".."):
        return namespace
    digest = hashlib.sha256(namespace.encode("utf-8")).hexdigest()[:16]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", namespace)[:60] + "-" + digest


def _checksum(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()


class ArrayCache:
    """float32/float64 rows (vectors or scalars) by text key, for one namespace.

    ``row_shape`` (optional) is the shape every row must have, e.g. ``(384,)`` for MiniLM
    embeddings or ``()`` for scores; a shard with another shape is treated as corrupt.
    ``report`` counts what the reader saw: shards loaded, corrupt shards removed, stray
    ``.part`` files ignored, hits and misses. With ``ragged`` each row is [length, *row_shape],
    its length free.
    """

    def __init__(self, root: str | Path | None, namespace: str,
                 row_shape: tuple[int, ...] | None = None, ragged: bool = False):
        self.root = Path(root) if root is not None else cache_dir()
        self.namespace = namespace
        self.dir = self.root / namespace_dir(namespace)
        self.row_shape = tuple(row_shape) if row_shape is not None else None
        self.ragged = ragged
        self._shards: dict[str, np.ndarray] = {}  # shard file name -> values
        self._offsets: dict[str, np.ndarray] = {}  # ragged: shard name -> row starts (+ end)
        self._index: dict[str, tuple[str, int]] = {}  # key -> (shard name, row)
        self.report = {"shards": 0, "entries": 0, "corrupt_shards": 0, "tmp_ignored": 0,
                       "hits": 0, "misses": 0}

    # --- reading ---------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Load shards that appeared since the last look (another process may have written)."""
        if not self.dir.is_dir():
            return
        names = sorted(os.listdir(self.dir))
        self.report["tmp_ignored"] = sum(n.endswith(".part") for n in names)
        for name in names:
            if name.endswith(".safetensors") and name not in self._shards:
                self._load_shard(name)

    def _load_shard(self, name: str) -> None:
        path = self.dir / name
        try:
            with safe_open(str(path), framework="np") as f:
                meta = f.metadata() or {}
                values = f.get_tensor("values")
            problem = self._check(meta, values)
        except (SafetensorError, OSError, ValueError, KeyError) as e:
            problem = f"unreadable ({type(e).__name__}: {e})"
        if problem:
            warnings.warn(f"cache shard {path} is corrupt: {problem}; removing it, its entries "
                          "will be recomputed", RuntimeWarning, stacklevel=3)
            path.unlink(missing_ok=True)
            self.report["corrupt_shards"] += 1
            return
        keys = json.loads(meta["keys"])
        self._shards[name] = values
        if self.ragged:
            self._offsets[name] = np.concatenate([[0], np.cumsum(json.loads(meta["lengths"]))])
        for row, key in enumerate(keys):
            self._index[key] = (name, row)
        self.report["shards"] = len(self._shards)
        self.report["entries"] = len(self._index)

    def _check(self, meta: dict[str, str], values: np.ndarray) -> str:
        """Why a shard cannot be trusted ('' if it can)."""
        if meta.get("format") != FORMAT:
            return f"format {meta.get('format')!r}, expected {FORMAT!r}"
        keys = json.loads(meta["keys"])
        if self.ragged:
            lengths = json.loads(meta.get("lengths", "null"))
            if (not isinstance(lengths, list) or len(lengths) != len(keys)
                    or values.ndim == 0 or sum(lengths) != values.shape[0]):
                return f"{len(keys)} keys, row lengths {str(lengths)[:40]}, values {values.shape}"
        elif values.ndim == 0 or values.shape[0] != len(keys):
            return f"{len(keys)} keys but values of shape {values.shape}"
        if self.row_shape is not None and values.shape[1:] != self.row_shape:
            return f"rows of shape {values.shape[1:]}, expected {self.row_shape}"
        if values.dtype not in (np.float32, np.float64):
            return f"dtype {values.dtype}, expected float32 or float64"
        if _checksum(values) != meta.get("sha256"):
            return "sha256 of the values does not match the one recorded at write time"
        return ""

    def _row(self, shard: str, row: int) -> np.ndarray:
        if self.ragged:
            start, stop = self._offsets[shard][row:row + 2]
            return self._shards[shard][start:stop]
        return self._shards[shard][row]

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached rows of ``keys`` (hits only; a missing key is simply absent)."""
        self._refresh()
        out = {}
        for key in keys:
            loc = self._index.get(key)
            if loc is not None:
                out[key] = self._row(*loc)
        self.report["hits"] += len(out)
        self.report["misses"] += len(set(keys)) - len(out)
        return out

    def __len__(self) -> int:
        self._refresh()
        return len(self._index)

    # --- writing ---------------------------------------------------------------------------
    def put_many(self, items: dict[str, np.ndarray | float]) -> None:
        """Store rows (all of one shape and dtype) as one new shard, atomically."""
        if not items:
            return
        keys = list(items)
        rows = [np.asarray(items[k]) for k in keys]
        try:
            values = np.concatenate(rows) if self.ragged else np.stack(rows)
        except ValueError as e:
            raise ValueError(f"cache {self.namespace!r}: rows to store differ in shape ({e}); "
                             "every row of one namespace must have the same shape") from e
        if values.dtype not in (np.float32, np.float64):
            raise TypeError(f"cache {self.namespace!r}: values have dtype {values.dtype}; store "
                            "float32 or float64 (cast before put_many)")
        if self.row_shape is not None and values.shape[1:] != self.row_shape:
            raise ValueError(f"cache {self.namespace!r}: rows of shape {values.shape[1:]}, this "
                             f"cache holds rows of shape {self.row_shape}")
        bad = np.flatnonzero([not np.isfinite(r).all() for r in rows])
        if bad.size:
            raise ValueError(f"cache {self.namespace!r}: {bad.size} row(s) contain NaN or inf "
                             f"(first key {keys[bad[0]]}); a non-finite value is not cached, fix "
                             "what computed it")
        values = np.ascontiguousarray(values)
        meta = {"format": FORMAT, "namespace": self.namespace, "keys": json.dumps(keys),
                "sha256": _checksum(values)}
        if self.ragged:
            meta["lengths"] = json.dumps([len(r) for r in rows])
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{uuid.uuid4().hex}.safetensors"
        tmp = self.dir / f"{name}.part"
        save_file({"values": values}, str(tmp), metadata=meta)
        with open(tmp, "rb+") as f:  # make the bytes durable before the rename publishes them
            os.fsync(f.fileno())
        os.replace(tmp, self.dir / name)
        self._shards[name] = values
        if self.ragged:
            self._offsets[name] = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
        for row, key in enumerate(keys):
            self._index[key] = (name, row)
        self.report["shards"] = len(self._shards)
        self.report["entries"] = len(self._index)

    def compact(self) -> int:
        """Merge all shards into one (many small writes make many shards); returns shards removed.

        Only the shards read here are deleted, after the merged one is in place, so a shard
        written meanwhile by another process survives.
        """
        self._refresh()
        old = list(self._shards)
        if len(old) <= 1:
            return 0
        keys = list(self._index)
        dtypes = {self._shards[n].dtype for n in old}
        dtype = np.float64 if np.dtype(np.float64) in dtypes else np.float32
        merged = {k: self._row(s, r).astype(dtype) for k, (s, r) in self._index.items()}
        self._shards, self._index, self._offsets = {}, {}, {}
        self.put_many({k: merged[k] for k in keys})
        for name in old:
            (self.dir / name).unlink(missing_ok=True)
        return len(old)


def cached_compute(
    cache: ArrayCache,
    keys: Sequence[str],
    compute: Callable[[list[int]], np.ndarray],
) -> np.ndarray:
    """All rows of ``keys`` in order, calling ``compute`` only for the misses.

    ``compute(idx)`` gets indices into ``keys`` (the first occurrence of each distinct missing
    key) and must return one row per index; those rows are stored, then everything is
    returned stacked as [len(keys), *row_shape] (a ragged cache: a list of rows). With no
    keys, ``compute([])`` is returned.
    """
    keys = list(keys)
    if not keys:
        return compute([]) if cache.ragged else np.asarray(compute([]))
    hits = cache.get_many(keys)
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k not in hits and k not in first:
            first[k] = i
    if first:
        idx = list(first.values())
        new = compute(idx) if cache.ragged else np.asarray(compute(idx))
        n_new = len(new) if cache.ragged or new.ndim else 0
        if n_new != len(idx):
            raise ValueError(f"compute returned {n_new} rows for {len(idx)} missing keys; "
                             "it must return one row per index it is given")
        rows = {k: new[j] for j, k in enumerate(first)}
        cache.put_many(rows)
        hits.update(rows)
    if cache.ragged:
        return [hits[k] for k in keys]
    return np.stack([hits[k] for k in keys])
