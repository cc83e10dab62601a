"""How fast is the CPU tier? Encoder throughput, head training, cache reads.

    .venv/bin/python benchmarks/bench_embedding.py

Prints one table. Encoding uses the shipped all-MiniLM-L6-v2 on ~500 synthetic (prompt, response)
texts of ~40-200 tokens, batched 16 or 64, sorted by length or not. Head training and cache reads
use random unit vectors put in a throwaway cache under the real encoder's namespace, so they
measure the head and the cache, not the encoder.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scpo.cache import ArrayCache  # noqa: E402
from scpo.config import MethodConfig, TrainConfig  # noqa: E402
from scpo.models.embedding import EmbeddingRM, Encoder  # noqa: E402
from scpo.pairs import distinct_texts, text_key  # noqa: E402

WORDS = ("the people of each country value time family work respect food music weather money "
         "school history friends travel health news market city village river mountain polite "
         "direct honest quick careful answer question reason example because however").split()


def sentence(rng: np.random.Generator, n_words: int) -> str:
    return " ".join(rng.choice(WORDS, size=n_words)).capitalize() + "."


def bench_encode(rows: list[tuple[str, str, str]], n: int = 500) -> None:
    rng = np.random.default_rng(0)
    prompts = [sentence(rng, int(rng.integers(8, 30))) for _ in range(n)]
    responses = [sentence(rng, int(rng.integers(25, 160))) for _ in range(n)]
    enc = Encoder(progress=False)
    enc._load()  # load outside the timings
    lengths = [len(ids) for ids in enc.tokenizer(prompts, responses, truncation=True,
                                                  max_length=enc.max_length)["input_ids"]]
    print(f"encode: {n} texts, {min(lengths)}-{max(lengths)} tokens (mean "
          f"{np.mean(lengths):.0f}), {torch.get_num_threads()} threads")
    enc.embed(prompts[:16], responses[:16])  # warm-up
    for batch in (16, 64):
        for sort in (True, False):
            enc.batch_size, enc.sort_by_length = batch, sort
            t = time.perf_counter()
            enc.embed(prompts, responses)
            sec = time.perf_counter() - t
            rows.append(("encode", f"batch {batch}, {'sorted' if sort else 'unsorted'}",
                         f"{n / sec:.0f} texts/s ({sec:.1f} s)"))


def random_pairs(enc: Encoder, n_pairs: int) -> pd.DataFrame:
    """n_pairs pairs with distinct texts whose 'embeddings' are random unit vectors, cached."""
    pairs = pd.DataFrame({"prompt": [f"prompt {i}" for i in range(n_pairs)],
                          "chosen": [f"chosen {i}" for i in range(n_pairs)],
                          "rejected": [f"rejected {i}" for i in range(n_pairs)]})
    texts = distinct_texts(pairs)
    rng = np.random.default_rng(0)
    vec = rng.standard_normal((len(texts), enc.dim)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    keys = [text_key(p, r) for p, r in zip(texts["prompt"], texts["response"])]
    enc.cache.put_many(dict(zip(keys, vec)))
    return pairs


def bench_heads(rows: list[tuple[str, str, str]], root: Path, n_pairs: int = 10_000) -> None:
    enc = Encoder(cache_root=root, progress=False)
    pairs = random_pairs(enc, n_pairs)
    texts = distinct_texts(pairs)
    pool = enc.encode(texts["prompt"].tolist(), texts["response"].tolist())
    weights = np.random.default_rng(1).uniform(0.1, 1.0, n_pairs)
    for head in ("linear", "mlp"):
        for batch in (8, 64):
            rm = EmbeddingRM.new(enc, head, standardize_from=pool, seed=0)
            train = TrainConfig(lr=1e-3, max_steps=1024, batch_size=batch)
            t = time.perf_counter()
            rm.fit(pairs, weights, train, MethodConfig(), seed=0)
            sec = time.perf_counter() - t
            rows.append(("head fit", f"{head}, {n_pairs} pairs x 1024 steps, batch {batch}",
                         f"{sec:.2f} s"))
    assert enc.model is None  # all from the cache: the transformer was never loaded


def bench_cache(rows: list[tuple[str, str, str]], root: Path, n: int = 10_000) -> None:
    rng = np.random.default_rng(0)
    keys = [text_key("p", str(i)) for i in range(n)]
    emb = rng.standard_normal((n, 384)).astype(np.float32)
    scores = rng.standard_normal(n)
    for name, values, shards in (("embeddings 384-d f32", emb, 1), ("embeddings 384-d f32", emb,
                                 100), ("scores f64", scores, 1)):
        ns = f"bench-{name.split()[0]}-{shards}"
        cache = ArrayCache(root, ns)
        step = n // shards
        t = time.perf_counter()
        for i in range(0, n, step):
            cache.put_many(dict(zip(keys[i:i + step], values[i:i + step])))
        write = time.perf_counter() - t
        t = time.perf_counter()
        got = ArrayCache(root, ns).get_many(keys)  # a fresh reader: loads and checks the shards
        read = time.perf_counter() - t
        assert len(got) == n
        rows.append(("cache", f"{name}, {n} entries in {shards} shard(s)",
                     f"read {read * 1000:.0f} ms, write {write * 1000:.0f} ms"))


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bench_cache(rows, Path(tmp) / "cache")
        bench_heads(rows, Path(tmp) / "heads")
        bench_encode(rows)
    width = max(len(r[1]) for r in rows)
    print(f"\n{'what':<9} {'setting':<{width}}  result")
    for what, setting, result in rows:
        print(f"{what:<9} {setting:<{width}}  {result}")


if __name__ == "__main__":
    main()
