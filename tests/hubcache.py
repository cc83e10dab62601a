"""A stand-in for the Hugging Face hub: a cache laid out as ``huggingface_hub`` lays one out.

    <cache>/datasets--Org--name/blobs/<sha256>           the files' bytes
    <cache>/datasets--Org--name/snapshots/<commit>/path  -> ../../blobs/<sha256> (symlinks)
    <cache>/datasets--Org--name/refs/main                the commit "main" points at

With ``HF_HUB_OFFLINE=1`` ``snapshot_download`` reads a revision from it as it would after a
real download, so ``scpo fetch`` runs end to end here, where the hub cannot be reached.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

AUTHORS_MAIN = "a" * 40  # the commit the stand-in's refs/main points at for the authors' models


def put_repo(cache: Path, repo: str, repo_type: str, commit: str,
             files: dict[str, bytes | Path], refs: tuple[str, ...] = ()) -> Path:
    """One revision of ``repo`` in the cache; returns its snapshot folder."""
    from huggingface_hub.file_download import repo_folder_name

    storage = Path(cache) / repo_folder_name(repo_id=repo, repo_type=repo_type)
    snapshot = storage / "snapshots" / commit
    for rel, content in files.items():
        data = Path(content).read_bytes() if isinstance(content, Path) else content
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return snapshot


def model_files(model_dir: Path) -> dict[str, Path]:
    """A saved model directory's files, as a repository would hold them."""
    return {p.name: p for p in sorted(Path(model_dir).iterdir()) if p.is_file()}


def goqa_csv(path: Path, countries: tuple[str, ...] = ("Chile", "Mexico", "S. Africa",
                                                         "Canada"),
             n_questions: int = 40, seed: int = 0) -> Path:
    """A GlobalOpinionQA-format csv (question, selections, options, source) of random shares,
    with the upstream quirks: a non-national sample, shares that do not sum to 1."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_questions):
        k = int(rng.integers(2, 5))
        options = [f"Option {chr(65 + i)} of question {q}" for i in range(k)]
        sel = {c: np.round(rng.dirichlet(np.ones(k)) * 0.99, 3).tolist() for c in countries}
        sel[f"{countries[0]} (Non-national sample)"] = [round(1 / k, 3)] * k
        rows.append({"question": f"Question {q}: which do you prefer?",
                     "selections": f"defaultdict(<class 'list'>, {sel!r})",
                     "options": repr(options), "source": "GAS" if q % 2 else "WVS"})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def shuffled_jsonl(src: Path, dst: Path, seed: int = 0) -> Path:
    """``src``'s lines in another order: the hub's files are not sorted the way scpo writes."""
    import random

    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    random.Random(seed).shuffle(lines)
    dst.write_text("".join(lines), encoding="utf-8")
    return dst


def stand_in_hub(cache: Path, tiny_bert: Path, work: Path) -> Path:
    """Every input of the package's pins in a hub cache (tiny stand-ins), and a pins file that
    differs from the package's only in its sha256 values (a tiny model's, not DeBERTa's; a
    simulation's utterances, not PRISM's)."""
    from scpo.companion.fetch import PINS_FILE, load_pins
    from scpo.simulate import sim_config, simulate

    sim = simulate(sim_config("tiny"), work / "sim")
    pins = load_pins()
    prism = pins["prism"]
    put_repo(cache, prism.repo, "dataset", prism.revision, {
        "utterances.jsonl": shuffled_jsonl(sim / "utterances.jsonl", work / "utterances.jsonl"),
        "survey.jsonl": sim / "survey.jsonl", "README.md": b"# PRISM\n"}, refs=("main",))
    goqa = pins["goqa"]
    put_repo(cache, goqa.repo, "dataset", goqa.revision,
             {"data/global_opinions.csv": goqa_csv(work / "goqa.csv")})
    weights = {**model_files(tiny_bert), "optimizer.pt": b"not wanted",
               "pytorch_model.bin": b"pickle: never taken"}
    put_repo(cache, pins["global_rm"].repo, "model", pins["global_rm"].revision, weights)
    for name, inp in pins.items():
        if name.startswith("authors-"):
            put_repo(cache, inp.repo, "model", AUTHORS_MAIN, weights, refs=("main",))
    sha = hashlib.sha256((tiny_bert / "model.safetensors").read_bytes()).hexdigest()
    text = PINS_FILE.read_text().replace(pins["global_rm"].sha256["model.safetensors"], sha)
    utterances = hashlib.sha256((work / "utterances.jsonl").read_bytes()).hexdigest()
    text = text.replace(prism.sha256["utterances.jsonl"], utterances)
    (work / "pins.toml").write_text(text)
    return work / "pins.toml"
