"""The JavaScript the book's "Try it" page runs on, pinned: npm packages at exact versions.

The page scores a reader's answers in the browser with two libraries from the npm registry:
onnxruntime-web (runs the exported encoder; its WebAssembly build) and @huggingface/tokenizers
(runs tokenizer.json, the encoder's own tokenizer). Each is fetched once as the registry's
tarball, checked against the sha512 ``integrity`` the registry publishes for that version (what
``npm install`` checks), kept in the cache (``<cache>/npm/``, or ``$SCPO_NPM_CACHE``), and only
the few files the page loads are copied into the book, which serves them itself: no CDN, no
network at reading time. Node and npm are not needed to build the book.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scpo.config import cache_dir

REGISTRY = "https://registry.npmjs.org"  # SCPO_NPM_REGISTRY moves it (a mirror)


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    integrity: str  # the registry's dist.integrity of this version: sha512 of the tarball
    files: dict[str, str]  # member of the tarball -> the name it is served under
    license: str

    @property
    def tarball(self) -> str:
        """The tarball's name on the registry (a scoped package drops its scope)."""
        return f"{self.name.rsplit('/', 1)[-1]}-{self.version}.tgz"

    @property
    def url(self) -> str:
        registry = os.environ.get("SCPO_NPM_REGISTRY", REGISTRY).rstrip("/")
        return f"{registry}/{self.name}/-/{self.tarball}"


PINS = {
    "onnxruntime-web": Pin(
        "onnxruntime-web", "1.31.1",
        "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw==",
        # the CPU (WebAssembly) build with its loader inside; it fetches the .wasm beside it
        {"package/dist/ort.wasm.bundle.min.mjs": "ort.wasm.bundle.min.mjs",
         "package/dist/ort-wasm-simd-threaded.wasm": "ort-wasm-simd-threaded.wasm",
         "package/package.json": "onnxruntime-web.package.json"},
        "MIT"),
    "@huggingface/tokenizers": Pin(
        "@huggingface/tokenizers", "0.2.0",
        "sha512-LidMHe1FpcSYH4vcSjXooda34pC0M8m1gmDOv7SQi6Iv+ib1zX7J3sHBCC9/3FPCkn2k1b55FneVqMRxrr99pg==",
        {"package/dist/tokenizers.min.mjs": "tokenizers.min.mjs",
         "package/LICENSE": "tokenizers.LICENSE",
         "package/package.json": "tokenizers.package.json"},
        "Apache-2.0"),
}


def integrity(data: bytes) -> str:
    """The Subresource Integrity string of ``data``, as npm's lock files write it."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def tarball(pin: Pin, cache: Path | None = None) -> bytes:
    """The pinned tarball's bytes: from the cache, else from the registry; checked either way."""
    cache = cache or Path(os.environ.get("SCPO_NPM_CACHE") or cache_dir() / "npm")
    where = cache / pin.tarball
    if where.is_file():
        data = where.read_bytes()
        if integrity(data) == pin.integrity:
            return data
        where.unlink()  # a damaged or foreign file: fetch it again
    try:
        with urllib.request.urlopen(pin.url, timeout=120) as response:
            data = response.read()
    except OSError as e:
        raise RuntimeError(
            f"could not fetch {pin.name}@{pin.version} from {pin.url} ({e}). Without the npm "
            f"registry, put the tarball there yourself: `npm pack {pin.name}@{pin.version}` on "
            f"a machine that has it, then copy {pin.tarball} to {where}") from None
    if integrity(data) != pin.integrity:
        raise RuntimeError(f"{pin.url}: the tarball's sha512 is {integrity(data)}, not the "
                           f"pinned {pin.integrity}; refusing it (a changed or corrupted "
                           "download). Check the registry (SCPO_NPM_REGISTRY) and try again")
    where.parent.mkdir(parents=True, exist_ok=True)
    part = where.with_suffix(".part")
    part.write_bytes(data)
    os.replace(part, where)
    return data


def vendor(dest: str | Path, cache: Path | None = None) -> dict[str, dict[str, str]]:
    """Copy the pinned files the page loads into ``dest``; returns, per package, its version,
    integrity, licence and the names of its files there."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out = {}
    for pin in PINS.values():
        with tarfile.open(fileobj=io.BytesIO(tarball(pin, cache)), mode="r:gz") as tar:
            for member, name in pin.files.items():
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    f = None
                if f is None:
                    raise RuntimeError(f"{pin.name}@{pin.version}: no file {member} in its "
                                       "tarball; the pin's file list does not fit this version")
                (dest / name).write_bytes(f.read())
        out[pin.name] = {"version": pin.version, "integrity": pin.integrity,
                         "license": pin.license, "files": sorted(pin.files.values())}
    return out
