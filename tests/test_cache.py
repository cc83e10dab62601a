import os

import numpy as np
import pytest

from scpo.cache import ArrayCache, cached_compute, namespace_dir, write_dir_atomically
from scpo.pairs import text_key

KEYS = [text_key("prompt", f"response {i}") for i in range(6)]


def _shards(cache: ArrayCache) -> list[str]:
    return sorted(n for n in os.listdir(cache.dir) if n.endswith(".safetensors"))


class Counter:
    """compute() that records which indices it was asked for; row i = [i, 10 i, 100 i]."""

    def __init__(self):
        self.calls: list[list[int]] = []

    def __call__(self, idx: list[int]) -> np.ndarray:
        self.calls.append(list(idx))
        return np.array([[i, 10.0 * i, 100.0 * i] for i in idx], dtype=np.float32)


def test_round_trip_vectors(tmp_path):
    rng = np.random.default_rng(0)
    rows = {k: rng.standard_normal(4).astype(np.float32) for k in KEYS[:3]}
    ArrayCache(tmp_path, "enc-a").put_many(rows)
    got = ArrayCache(tmp_path, "enc-a").get_many(KEYS)  # a fresh reader sees the shard
    assert sorted(got) == sorted(rows)
    for k in rows:
        assert got[k].dtype == np.float32
        np.testing.assert_array_equal(got[k], rows[k])
    assert ArrayCache(tmp_path, "enc-b").get_many(KEYS) == {}  # namespaces are separate


def test_float64_scores_bit_exact(tmp_path):
    scores = {k: np.float64(v) for k, v in zip(KEYS, [0.1, 1 / 3, -2.5e-300, 1e300, np.pi, -0.0])}
    ArrayCache(tmp_path, "rm", row_shape=()).put_many(scores)
    got = ArrayCache(tmp_path, "rm", row_shape=()).get_many(KEYS)
    for k, v in scores.items():
        assert got[k].dtype == np.float64
        assert got[k].tobytes() == np.float64(v).tobytes()


def test_cached_compute_computes_only_misses_in_key_order(tmp_path):
    cache = ArrayCache(tmp_path, "ns")
    compute = Counter()
    keys = [KEYS[2], KEYS[0], KEYS[2]]  # a duplicate is computed once
    out = cached_compute(cache, keys, compute)
    assert compute.calls == [[0, 1]]
    np.testing.assert_array_equal(out[:, 0], [0, 1, 0])  # row of index 0 (KEYS[2]) repeated
    # KEYS[0] and KEYS[2] are hits now; KEYS[5] (index 2 here) is the only miss
    out = cached_compute(ArrayCache(tmp_path, "ns"), [KEYS[0], KEYS[2], KEYS[5]], compute)
    assert compute.calls[1] == [2]
    np.testing.assert_array_equal(out[:, 1], [10.0, 0.0, 20.0])
    assert len(_shards(cache)) == 2


def test_crash_mid_write_leaves_no_visible_entry(tmp_path, monkeypatch):
    cache = ArrayCache(tmp_path, "ns")
    cache.put_many({KEYS[0]: np.ones(3, np.float32)})

    def killed(*args, **kwargs):  # the process dies between writing the .part file and renaming
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.put_many({KEYS[1]: np.ones(3, np.float32)})
    monkeypatch.undo()
    assert any(n.endswith(".part") for n in os.listdir(cache.dir))
    reader = ArrayCache(tmp_path, "ns")
    assert sorted(reader.get_many(KEYS)) == [KEYS[0]]
    assert reader.report["tmp_ignored"] == 1 and reader.report["corrupt_shards"] == 0


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "wrong_shape"])
def test_corrupt_shard_is_detected_removed_and_recomputed(tmp_path, damage):
    compute = Counter()
    cached_compute(ArrayCache(tmp_path, "ns"), KEYS[:2], compute)  # first shard: keys 0, 1
    first = set(_shards(ArrayCache(tmp_path, "ns")))
    cached_compute(ArrayCache(tmp_path, "ns"), KEYS[:4], compute)  # second shard: keys 2, 3
    assert compute.calls == [[0, 1], [2, 3]]
    cache = ArrayCache(tmp_path, "ns")
    path = cache.dir / next(n for n in _shards(cache) if n not in first)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[:-5]))
    elif damage == "flip_byte":  # the last byte of the values: parses fine, checksum fails
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
    else:  # well-formed, but rows of 5 where this cache holds rows of 3
        path.unlink()
        cache.put_many({KEYS[2]: np.ones(5, np.float32), KEYS[3]: np.ones(5, np.float32)})
        path = cache.dir / next(n for n in _shards(cache) if n not in first)
    reader = ArrayCache(tmp_path, "ns", row_shape=(3,))
    with pytest.warns(RuntimeWarning, match=path.name):
        out = cached_compute(reader, KEYS[:4], compute)
    assert compute.calls[2:] == [[2, 3]]  # exactly the keys of the bad shard
    assert not path.exists()
    assert reader.report["corrupt_shards"] == 1
    np.testing.assert_array_equal(out[:, 0], [0, 1, 2, 3])


def test_compact_merges_shards(tmp_path):
    cache = ArrayCache(tmp_path, "ns", row_shape=())
    for i, k in enumerate(KEYS):
        cache.put_many({k: np.float64(i) + 0.5})
    assert len(_shards(cache)) == 6
    assert cache.compact() == 6
    assert len(_shards(cache)) == 1
    got = ArrayCache(tmp_path, "ns").get_many(KEYS)
    assert [float(got[k]) for k in KEYS] == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]


def test_bad_input_is_refused_with_a_reason(tmp_path):
    cache = ArrayCache(tmp_path, "ns")
    with pytest.raises(ValueError, match="NaN or inf.*" + KEYS[1]):
        cache.put_many({KEYS[0]: np.float64(1.0), KEYS[1]: np.float64("nan")})
    with pytest.raises(TypeError, match="dtype int64"):
        cache.put_many({KEYS[0]: np.int64(1)})
    with pytest.raises(ValueError, match="differ in shape"):
        cache.put_many({KEYS[0]: np.zeros(2), KEYS[1]: np.zeros(3)})
    with pytest.raises(ValueError, match="one row per index"):
        cached_compute(cache, KEYS[:2], lambda idx: np.zeros(1))
    assert not cache.dir.exists() or _shards(cache) == []


def test_namespace_dir_is_a_safe_unique_name():
    assert namespace_dir("emb-0123abcd") == "emb-0123abcd"
    a, b = namespace_dir("org/model a"), namespace_dir("org/model?a")
    assert "/" not in a and a != b and a.startswith("org_model_a-")
    with pytest.raises(ValueError, match="empty"):
        namespace_dir("")


def test_root_defaults_to_the_scpo_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SCPO_CACHE_DIR", str(tmp_path / "c"))
    assert ArrayCache(None, "ns").dir == tmp_path / "c" / "ns"


def test_ragged_rows_round_trip_compute_and_compact(tmp_path):
    """Token-level rows of different lengths: stored end to end, read back row by row."""
    def rows_of(idx):  # row i: i + 1 tokens of width 3, values 100 i + t
        return [np.array([[100.0 * i + t] * 3 for t in range(i + 1)], dtype=np.float32)
                for i in idx]

    cache = ArrayCache(tmp_path, "hid", row_shape=(3,), ragged=True)
    asked: list[list[int]] = []
    first = cached_compute(cache, KEYS[:3], lambda idx: asked.append(idx) or rows_of(idx))
    assert [r.shape for r in first] == [(1, 3), (2, 3), (3, 3)] and asked == [[0, 1, 2]]
    both = cached_compute(cache, KEYS[1:5], lambda idx: asked.append(idx) or rows_of(
        [i + 1 for i in idx]))
    assert asked[-1] == [2, 3]  # KEYS[3], KEYS[4] only
    assert [r.shape[0] for r in both] == [2, 3, 4, 5]
    assert both[3][4, 0] == 404.0
    fresh = ArrayCache(tmp_path, "hid", row_shape=(3,), ragged=True)
    assert fresh.compact() == 2
    got = ArrayCache(tmp_path, "hid", row_shape=(3,), ragged=True).get_many(KEYS[:5])
    np.testing.assert_array_equal(got[KEYS[2]], first[2])
    np.testing.assert_array_equal(got[KEYS[4]], both[3])


def test_ragged_shard_whose_lengths_do_not_add_up_is_corrupt(tmp_path):
    from safetensors.numpy import save_file

    from scpo.cache import FORMAT, _checksum

    cache = ArrayCache(tmp_path, "hid", row_shape=(2,), ragged=True)
    values = np.zeros((5, 2), dtype=np.float32)
    cache.dir.mkdir(parents=True)
    save_file({"values": values}, str(cache.dir / "bad.safetensors"), metadata={
        "format": FORMAT, "keys": '["a", "b"]', "lengths": "[2, 2]", "sha256": _checksum(values)})
    with pytest.warns(RuntimeWarning, match="row lengths"):
        assert cache.get_many(["a", "b"]) == {}
    assert cache.report["corrupt_shards"] == 1


def test_a_source_checkout_caches_where_make_book_does(monkeypatch):
    """Without SCPO_CACHE_DIR, a run from the checkout reads the cache `make book` filled."""
    from pathlib import Path

    import scpo
    from scpo.config import cache_dir

    monkeypatch.delenv("SCPO_CACHE_DIR", raising=False)
    assert cache_dir() == Path(scpo.__file__).resolve().parents[1] / ".cache" / "scpo"
    monkeypatch.setenv("SCPO_CACHE_DIR", "")  # empty counts as unset
    assert cache_dir().parts[-2:] == (".cache", "scpo")


def test_a_directory_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "entry"

    def broken(tmp):
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        write_dir_atomically(final, broken)
    assert list(tmp_path.iterdir()) == []  # neither the entry nor its temporary directory
    write_dir_atomically(final, lambda tmp: (tmp / "a.txt").write_text("first"))
    # another writer finishing second keeps the first copy (its rename fails, silently)
    write_dir_atomically(final, lambda tmp: (tmp / "a.txt").write_text("second"))
    assert (final / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]


def test_a_failed_write_is_never_taken_for_a_concurrent_writer(tmp_path):
    """A full disk while writing raises even when the entry exists (issue 27): only the
    rename's "already there" means another writer won."""
    import errno

    final = tmp_path / "entry"
    write_dir_atomically(final, lambda tmp: (tmp / "a.txt").write_text("first"))

    def disk_full(tmp):
        (tmp / "a.txt").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_dir_atomically(final, disk_full)
    assert (final / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["entry"]
