"""The browser page's pinned JavaScript (scpo.companion.jsruntime): a tarball is used only when its
sha512 is the pinned one, from the cache without any network, and a missing one says how to get
it."""

import base64
import hashlib
import io
import tarfile
import urllib.request

import pytest

from scpo.companion import jsruntime


def tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def pin_of(data: bytes, files: dict[str, str], name: str = "@scope/pkg") -> jsruntime.Pin:
    return jsruntime.Pin(name, "1.2.3", jsruntime.integrity(data), files, "MIT")


def no_network(monkeypatch):
    def refuse(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_integrity_is_npms_sha512_string():
    data = b"hello"
    assert jsruntime.integrity(data) == "sha512-" + base64.b64encode(
        hashlib.sha512(data).digest()).decode()
    for pin in jsruntime.PINS.values():  # the registry's format: 64 bytes of sha512
        assert len(base64.b64decode(pin.integrity.removeprefix("sha512-"))) == 64
        assert pin.files and all(m.startswith("package/") for m in pin.files)
    assert jsruntime.PINS["@huggingface/tokenizers"].url.endswith(
        "/@huggingface/tokenizers/-/tokenizers-0.2.0.tgz")  # a scoped package's tarball


def test_a_cached_tarball_is_used_offline_and_only_its_files_are_copied(tmp_path, monkeypatch):
    data = tarball({"package/dist/a.mjs": b"export const a = 1;", "package/other": b"x"})
    pin = pin_of(data, {"package/dist/a.mjs": "a.mjs"})
    (tmp_path / pin.tarball).write_bytes(data)
    monkeypatch.setattr(jsruntime, "PINS", {pin.name: pin})
    no_network(monkeypatch)
    out = jsruntime.vendor(tmp_path / "static", cache=tmp_path)
    assert (tmp_path / "static" / "a.mjs").read_bytes() == b"export const a = 1;"
    assert sorted(p.name for p in (tmp_path / "static").iterdir()) == ["a.mjs"]
    assert out == {pin.name: {"version": "1.2.3", "integrity": pin.integrity,
                              "license": "MIT", "files": ["a.mjs"]}}


def test_a_tarball_with_another_hash_is_refused(tmp_path, monkeypatch):
    good = tarball({"package/a": b"1"})
    pin = pin_of(good, {"package/a": "a"})
    evil = tarball({"package/a": b"2"})
    (tmp_path / pin.tarball).write_bytes(evil)  # a damaged cache: fetched again
    served = []

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake_urlopen(url, timeout):
        served.append(url)
        return Response(evil)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(RuntimeError, match="refusing it"):
        jsruntime.tarball(pin, tmp_path)
    assert served == [pin.url]
    assert not (tmp_path / pin.tarball).exists()  # the bad copy is gone, not kept
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(good))
    assert jsruntime.tarball(pin, tmp_path) == good
    assert (tmp_path / pin.tarball).read_bytes() == good  # cached for the next build


def test_without_the_registry_the_error_says_how_to_get_the_file(tmp_path, monkeypatch):
    pin = pin_of(b"x", {"package/a": "a"})
    no_network(monkeypatch)
    with pytest.raises(RuntimeError) as e:
        jsruntime.tarball(pin, tmp_path)
    assert f"npm pack {pin.name}@1.2.3" in str(e.value) and str(tmp_path) in str(e.value)


def test_a_pinned_file_missing_from_the_tarball_is_named(tmp_path, monkeypatch):
    data = tarball({"package/a": b"1"})
    pin = pin_of(data, {"package/dist/gone.wasm": "gone.wasm"})
    (tmp_path / pin.tarball).write_bytes(data)
    monkeypatch.setattr(jsruntime, "PINS", {pin.name: pin})
    with pytest.raises(RuntimeError, match="no file package/dist/gone.wasm"):
        jsruntime.vendor(tmp_path / "out", cache=tmp_path)
