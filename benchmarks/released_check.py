"""What does each defect of the released code change? One country, one global RM, one defect at
a time.

    .venv/bin/python benchmarks/released_check.py          # writes data/released_check/
                                                           # results.csv and run.json
    .venv/bin/python benchmarks/released_check.py --help   # country, sizes, steps, seeds

``scpo.models.hf`` has a ``fixed`` mode (the default) and a ``released`` mode that reproduces the
published code (spec §8); each difference is one field of ``Mode``. This script switches them
on one at a time on the hf tier of ``benchmarks/tier_check.py`` (the shipped all-MiniLM-L6-v2,
every weight fine-tuned) and measures what changes:

==================== ===========================================================================
condition            the mode (``fixed`` + ...)
==================== ===========================================================================
fixed                nothing: train and score the same text pair, score in eval mode
released             every defect below at once (``MODES["released"]``)
sep_text             train on ``prompt + " [SEP] " + response``, score the untruncated text pair
dropout_at_scoring   the ``fixed`` models, not retrained, rescored in train mode (dropout on)
seed_42              the trainer always seeds with 42, whatever seed the run names
pad_and_two_forward  pad to max_length, chosen and rejected in two forward passes, random order
==================== ===========================================================================

ONE global RM (``tier_check.train_hf_global``, fixed mode, trained once) scores the pairs, so
every condition has the same filter, the same SCPO (F+W) weights and the same pure-minority test
set; only the condition's fine-tuning and scoring differ. Each condition trains once per seed.

max_length is 128, not the released 512: the simulator's texts are under 100 tokens, so
truncation never bites either way, and what padding to 512 costs is what
``benchmarks/bench_hf.py`` measures. Here "released" and "pad_and_two_forward" pad to 128;
run.json's "inputs" records the tokens per training input of every condition.

Training speed is recorded per wall second and per CPU second of this process: on shared cores
the wall time follows the other jobs' load, the CPU time much less. Seeds are the outer loop, so
a change of load hits every condition alike.

Runtime on the project's 2 shared cores: 9 min (load average ~2) to 23 min (load average 3-5),
the global RM's fine-tuning and scoring included (the scores are cached for a rerun). Two runs,
in different condition orders, gave the same accuracies, weights and histories.

The committed data/released_check/ predates the change of the pair table to two splits (the
tuning users, "tune_val", now inside "train") and the fixed random stream of each part of
``tier_check.subsample``: its pairs were drawn from the old splits (training users other than the
validation ones), its test pairs with another stream. A rerun draws other pairs; the conditions
are the same code.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import importlib.util
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from scpo.models.modes import MODES, Mode, effective_seed  # noqa: E402  (after the env settings)

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "data" / "released_check"
FIXED = MODES["fixed"]
# condition -> its mode; dropout_at_scoring has no training of its own (it rescores "fixed")
CONDITIONS: dict[str, Mode] = {
    "fixed": FIXED,
    "released": MODES["released"],
    "sep_text": dataclasses.replace(FIXED, name="sep_text", sep_text=True,
                                    truncate_scoring=False),
    "dropout_at_scoring": dataclasses.replace(FIXED, name="dropout_at_scoring",
                                              dropout_at_scoring=True),
    "seed_42": dataclasses.replace(FIXED, name="seed_42", seed=MODES["released"].seed),
    "pad_and_two_forward": dataclasses.replace(FIXED, name="pad_and_two_forward",
                                               pad_to_max=True, one_forward=False,
                                               length_grouping=False),
}
RESCORED = {"dropout_at_scoring": "fixed"}  # condition -> the condition whose models it rescores


def load_tier_check() -> Any:
    """benchmarks/tier_check.py as a module (a script, not in the package): its subsample,
    train_hf_global, backbone_path, versions and write are reused here."""
    path = Path(__file__).with_name("tier_check.py")
    loaded = sys.modules.get("tier_check")
    if loaded is not None and Path(getattr(loaded, "__file__", "")) == path:
        return loaded
    spec = importlib.util.spec_from_file_location("tier_check", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


tc = load_tier_check()


@dataclass
class Settings:
    """The data, the shared global RM and each condition's fine-tuning (tier_check's hf tier)."""

    country: str = "Chile"
    n_train: int = 300  # the country's training pairs, a seeded subsample (0 = all)
    n_test: int = 300  # its test pairs, a seeded subsample (0 = the whole test split)
    n_global: int = 480  # majority-country pairs the global RM is fine-tuned on
    global_steps: int = 60  # global RM: optimizer steps (60 x 8 = one pass over 480 pairs)
    global_lr: float = 2e-4  # global RM: its score head starts random (see tier_check.py)
    steps: int = 16  # each condition: optimizer steps per fine-tuning (the paper: 1024)
    lr: float = 1e-4  # each condition: 16 steps at the paper's 1e-6 would not move the model
    batch_size: int = 8  # pairs per step, as the paper
    max_length: int = 128  # tokens per input; the texts here are < 100 (512 padding: bench_hf)
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds of every condition
    seed: int = 0  # the subsample, the global RM and the bootstrap (shared by every run)
    backbone: str = ""  # the starting checkpoint; "" = the shipped all-MiniLM-L6-v2
    conditions: tuple[str, ...] = field(default=tuple(CONDITIONS))  # which to run


def check_settings(s: Settings) -> None:
    """Bad settings fail here, before anything trains, naming the flag and how to fix it."""
    for name in ("steps", "global_steps", "batch_size", "max_length"):
        if getattr(s, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(s, name)}")
    if not s.seeds or len(set(s.seeds)) != len(s.seeds):
        raise ValueError(f"--seeds must list one or more distinct seeds, got {list(s.seeds)}")
    unknown = sorted(set(s.conditions) - set(CONDITIONS))
    if unknown:
        raise ValueError(f"--conditions: unknown {unknown}; choose from {list(CONDITIONS)}")
    if "fixed" not in s.conditions:
        raise ValueError("--conditions must include 'fixed': every difference is measured "
                         "against it and dropout_at_scoring rescores its models")


def input_stats(rm: Any, train: pd.DataFrame, mode: Mode) -> dict[str, float]:
    """What the mode feeds the model: tokens per training input (padding included), and the
    share of training inputs whose ids / segment ids equal what scoring sees for the same text."""
    from scpo.models.modes import encode_for_scoring, encode_for_training

    prompts = train["prompt"].tolist() * 2
    responses = train["chosen"].tolist() + train["rejected"].tolist()
    kw = {"mode": mode, "max_length": rm.max_length, "chat_template": rm.chat_template}
    tr = encode_for_training(rm.tokenizer, prompts, responses, **kw)
    sc = encode_for_scoring(rm.tokenizer, prompts, responses, **kw)

    def real(f: dict[str, list[int]], key: str) -> list[int]:  # without padding
        return [t for t, m in zip(f.get(key, []), f["attention_mask"]) if m]

    return {
        "tokens_per_training_input": float(np.mean([len(f["input_ids"]) for f in tr])),
        "real_tokens_per_training_input": float(np.mean([sum(f["attention_mask"]) for f in tr])),
        "same_ids_as_scoring": float(np.mean([real(a, "input_ids") == real(b, "input_ids")
                                              for a, b in zip(tr, sc)])),
        "same_segment_ids_as_scoring": float(np.mean(
            [real(a, "token_type_ids") == real(b, "token_type_ids") for a, b in zip(tr, sc)])),
    }


def with_mode(rm: Any, mode: Mode, model: Any) -> Any:
    """An HFRewardModel around ``model`` with ``rm``'s tokenizer and options but ``mode``."""
    from scpo.models.hf import HFRewardModel

    opts = {**rm.options(), "mode": mode}
    name = opts.pop("name")
    return HFRewardModel.from_model(model, rm.tokenizer, name=name, **opts)


def scored(rm: Any, test: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(r+, r-, seconds) of the test pairs; torch is seeded first, so dropout masks at scoring
    (train-mode modes) are a function of the seed, not of what ran before."""
    import torch

    torch.manual_seed(seed)
    t = time.perf_counter()
    rc, rr = rm.score_pairs(test)
    return rc, rr, time.perf_counter() - t


def evaluate(test: pd.DataFrame, rc: np.ndarray, rr: np.ndarray, n_boot: int,
             seed: int) -> list[dict[str, Any]]:
    """``scpo.evaluate.evaluate_model`` as ``experiment.evaluate_on_test`` calls it; the
    bootstrap seed is shared by every run, so two runs' intervals differ only if their scores
    do."""
    from scpo import evaluate as ev
    from scpo.evaluate import TRUTH_COLUMNS

    truth = {k: test[c].to_numpy() for k, c in TRUTH_COLUMNS.items() if c in test.columns}
    return ev.evaluate_model(rc, rr, test["rg_chosen"].to_numpy(), test["rg_rejected"].to_numpy(),
                             test["user_id"].astype(str).to_numpy(), truth=truth or None,
                             n_boot=n_boot, seed=seed)


def dropout_flips(rm: Any, test: pd.DataFrame,
                  first: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Score the same test pairs a second time (the torch stream goes on, so new dropout masks):
    how many predictions flip, and how far the scores move."""
    rc2, rr2 = rm.score_pairs(test)
    rc1, rr1 = first
    d = np.abs(np.concatenate([rc1 - rc2, rr1 - rr2]))
    return {"n_pairs": len(test), "flips": int(((rc1 > rr1) != (rc2 > rr2)).sum()),
            "mean_abs_delta_score": float(d.mean()), "max_abs_delta_score": float(d.max()),
            "mean_abs_margin": float(np.abs(rc1 - rr1).mean()),  # the scale of a decision
            "accuracy_first": float(np.mean(rc1 > rr1)),
            "accuracy_second": float(np.mean(rc2 > rr2))}


def run_released_check(cfg: Any, s: Settings,
                       progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every condition x seed: the tidy results and the record that run.json holds."""
    from scpo.data import load_pairs
    from scpo.scoring import add_global_scores
    from scpo.variants import VARIANTS, training_weights

    def log(msg: str) -> None:
        if progress:
            print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)

    check_settings(s)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    data = load_pairs(cfg.data)
    pairs, counts = tc.subsample(data.pairs, s.country, {"train": s.n_train, "test": s.n_test},
                                 s.seed)
    glo, glo_hist = tc.train_hf_global(data, cfg, s)
    timings["global_train_s"] = time.perf_counter() - t0
    log(f"global RM fine-tuned ({s.global_steps} steps)")
    t = time.perf_counter()
    pairs = add_global_scores(pairs, glo)
    timings["global_score_s"] = time.perf_counter() - t
    log("global RM scored the country's pairs")
    train = pairs[pairs["split"] == "train"].reset_index(drop=True)
    test = pairs[pairs["split"] == "test"].reset_index(drop=True)
    tau, beta = cfg.method.tau, cfg.method.beta
    w = training_weights(VARIANTS["scpo_fw"], train["rg_chosen"].to_numpy(),
                         train["rg_rejected"].to_numpy(), tau, beta, s.seed)
    keep = w > 0
    if not keep.any():
        raise ValueError(f"{s.country}: the filter at tau={tau} keeps no training pair; raise "
                         "method.tau or --n-train")
    kept, w_kept = train[keep].reset_index(drop=True), w[keep]
    train_cfg = dataclasses.replace(cfg.train, lr=s.lr, max_steps=s.steps,
                                    batch_size=s.batch_size)
    n_boot = cfg.run.n_boot

    rows: list[dict[str, Any]] = []
    histories, fingerprints, flips = {}, {}, {}
    inputs = {c: input_stats(glo, kept, CONDITIONS[c]) for c in s.conditions}
    # seeds outside, conditions inside: a change in the machine's load hits every condition
    # alike; a rescored condition comes after the one whose model it rescores
    order = sorted(s.conditions, key=lambda c: c in RESCORED)
    for seed in s.seeds:
        models = {}
        for cond in order:
            mode, base, key = CONDITIONS[cond], RESCORED.get(cond), f"{cond}/{seed}"
            if base is None:
                rm = with_mode(glo, mode, copy.deepcopy(glo.model))
                load = os.getloadavg()[0]
                t, cpu = time.perf_counter(), time.process_time()
                histories[key] = rm.fit(kept, w_kept, train_cfg, cfg.method, seed=seed)
                train_s, cpu_s = time.perf_counter() - t, time.process_time() - cpu
                n_seen = s.steps * s.batch_size
                trained = {"train_s": train_s, "pairs_per_s": n_seen / train_s,
                           "train_cpu_s": cpu_s, "pairs_per_cpu_s": n_seen / cpu_s,
                           "load_avg_1min": load}
            else:  # the base condition's model, rescored: no training of its own
                rm = with_mode(glo, mode, models[base].model)
                trained = {"train_s": np.nan, "pairs_per_s": np.nan, "train_cpu_s": np.nan,
                           "pairs_per_cpu_s": np.nan, "load_avg_1min": os.getloadavg()[0]}
            if cond in RESCORED.values():
                models[cond] = rm
            eff = effective_seed(mode, seed)
            rc, rr, score_s = scored(rm, test, eff)
            if cond in RESCORED or cond in RESCORED.values():  # and the control: fixed repeats
                flips[key] = dropout_flips(rm, test, (rc, rr))
            fingerprints[key] = rm.fingerprint()
            for r in evaluate(test, rc, rr, n_boot, s.seed):
                rows.append({"condition": cond, "seed": seed, "effective_seed": eff, **r,
                             "n_train": len(train), "n_kept": int(keep.sum()),
                             "trained": base is None, **trained, "score_s": score_s})
            log(f"{key}: accuracy {rows[-2]['accuracy']:.3f}, "
                f"{trained['pairs_per_s']:.2f} pairs/s, scoring {score_s:.0f} s")
    timings["total_s"] = time.perf_counter() - t0

    global_rows = evaluate(test, test["rg_chosen"].to_numpy(), test["rg_rejected"].to_numpy(),
                           n_boot, s.seed)
    record = {
        "what": "the hf tier (MiniLM full fine-tuning), one defect of the released code at a "
                "time, one shared global RM, SCPO (F+W)",
        "settings": asdict(s), "backbone": tc.backbone_path(s),
        "modes": {c: asdict(CONDITIONS[c]) for c in s.conditions},
        "rescored": {c: b for c, b in RESCORED.items() if c in s.conditions},
        "variant": "scpo_fw", "tau": tau, "beta": beta, "n_boot": n_boot,
        "train": asdict(train_cfg), "method": asdict(cfg.method),
        "data": {"source": data.source, "fingerprint": data.fingerprint, "pairs": counts,
                 "kept_train": int(keep.sum()), "weight_sum": float(w.sum()),
                 "pure_minority_test": int((test["rg_chosen"] < test["rg_rejected"]).sum())},
        "global_rm": {"fingerprint": glo.fingerprint(), "history": glo_hist,
                      "test": global_rows},
        "inputs": inputs, "dropout_flips": flips, "fingerprints": fingerprints,
        "histories": histories, "timings_s": timings, "versions": tc.versions(),
    }
    results = pd.DataFrame(rows)
    results["condition"] = pd.Categorical(results["condition"], list(s.conditions))
    results = results.sort_values(["condition", "seed"], kind="stable", ignore_index=True)
    return results.astype({"condition": str}), record


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Accuracy in %, mean ± sd over seeds, per condition and test set; the difference of the
    means from ``fixed``; training pairs per second of wall time and per CPU second (means;
    on a shared machine the CPU time is the steadier of the two)."""
    g = results.groupby(["condition", "test_set"], sort=False)["accuracy"]
    mean, sd = 100 * g.mean(), 100 * g.std(ddof=1).fillna(0.0)
    out = pd.DataFrame(index=list(dict.fromkeys(results["condition"])))
    for test_set in dict.fromkeys(results["test_set"]):
        m = mean.xs(test_set, level="test_set")
        out[test_set] = [f"{m[c]:5.1f} ± {sd[(c, test_set)]:3.1f}" for c in out.index]
        out[f"Δ {test_set}"] = [f"{m[c] - m['fixed']:+5.1f}" for c in out.index]
    speed = results.groupby("condition", sort=False)[["pairs_per_s", "pairs_per_cpu_s"]].mean()
    for col, name in [("pairs_per_s", "pairs/s"), ("pairs_per_cpu_s", "pairs/cpu-s")]:
        out[name] = [f"{v:.2f}" if np.isfinite(v) else "-" for v in speed.loc[out.index, col]]
    out.index.name = "condition"
    return out


def main(argv: list[str] | None = None) -> None:
    import torch

    from scpo.config import load_preset

    d = Settings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", help="scpo preset of the data, tau and beta "
                    "(default: %(default)s)")
    ap.add_argument("--out", default=str(OUT_DIR), help="output directory (%(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (%(default)s)")
    tc.add_settings_args(ap, d)
    args = ap.parse_args(argv)
    s = tc.settings_from_args(Settings, args)
    check_settings(s)
    torch.set_num_threads(args.threads)
    cfg = load_preset(args.preset)
    results, record = run_released_check(cfg, s)
    record["preset"] = args.preset
    record["command"] = " ".join(["benchmarks/released_check.py", *(argv or sys.argv[1:])])
    record["created"] = datetime.date.today().isoformat()
    tc.write(args.out, results, record)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"\n{s.country}: accuracy %, mean ± sd over seeds {list(s.seeds)}; "
              f"{record['data']['pairs']}, {record['data']['kept_train']} kept, "
              f"{record['data']['pure_minority_test']} pure-minority test pairs")
        print(summary_table(results))
        print("\ndropout flips (second scoring of the same model):")
        for key, f in record["dropout_flips"].items():
            print(f"  {key}: {f['flips']} of {f['n_pairs']} predictions flip, "
                  f"mean |Δ score| {f['mean_abs_delta_score']:.4f}")
        print(f"inputs: {record['inputs']}")
        print(f"timings (s): { {k: round(v) for k, v in record['timings_s'].items()} }")
    print(f"wrote {args.out}/results.csv and run.json")


if __name__ == "__main__":
    main()
