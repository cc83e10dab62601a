"""Does it matter whether the weighted loss divides by the batch size N or by sum(W)?

    .venv/bin/python benchmarks/normalize_check.py          # writes data/normalize_check/
                                                            # results.csv, heads.csv, run.json
    .venv/bin/python benchmarks/normalize_check.py --help   # preset, countries, seeds

SCPO (F+W) (variant ``scpo_fw``) is trained twice per country and seed on the embedding tier,
with ``method.normalize = "batch"`` (the default, as the released code) and ``"weights"``,
exactly as ``experiment.run_country`` trains it: the same global RM, pairs, weights, seeds and
steps; only the normalisation differs. Written:

- ``results.csv``: ``run_country``'s rows (country x seed x test set) plus a ``normalize`` column;
- ``heads.csv``: per country and seed, the sizes of the two updates of the head
  (||theta - theta_glo||), the distance between the two final heads, and, for scale, the
  distance between the heads of this seed and the next one under the same normalisation;
- ``run.json``: the config, data and global-RM fingerprints, timings and versions.

The book's method chapter (``notebooks/method.md``) reads these files. Runtime on the project's
2 shared cores: 1-1.5 min for the default preset (7 countries x 3 seeds x 2 normalisations,
one thread per training) once the run's embeddings and global RM are in the scpo cache; a cold
cache first embeds the simulation's texts (about 5 min).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "data" / "normalize_check"
NORMALIZATIONS = ("batch", "weights")
VARIANT = "scpo_fw"
RESULT_COLUMNS = ["normalize", "country", "variant", "seed", "test_set", "accuracy", "ci_low",
                  "ci_high", "n_pairs", "n_train", "n_kept", "weight_sum", "tau", "beta", "lr"]


def head_vector(model: Any) -> np.ndarray:
    """The trainable weights of an embedding-tier head, flattened (float64)."""
    head = getattr(model, "head", None)
    if head is None:
        raise TypeError(f"{type(model).__name__} has no head: this check runs on the embedding "
                        "tier only (model.backend = 'embedding')")
    return np.concatenate([p.detach().double().numpy().ravel() for p in head.parameters()])


def head_distances(models: dict[tuple[str, str, int], Any], theta_glo: np.ndarray,
                   seeds: list[int]) -> pd.DataFrame:
    """One row per (country, seed): update sizes, the batch-vs-weights distance and, for scale,
    the distance to the next seed's head (batch normalisation; the last seed wraps around)."""
    rows = []
    countries = sorted({c for _, c, _ in models})
    for c in countries:
        for i, seed in enumerate(seeds):
            b, w = (head_vector(models[(n, c, seed)]) for n in NORMALIZATIONS)
            other = head_vector(models[("batch", c, seeds[(i + 1) % len(seeds)])])
            ub, uw = b - theta_glo, w - theta_glo
            rows.append({
                "country": c, "seed": seed,
                "update_batch": float(np.linalg.norm(ub)),
                "update_weights": float(np.linalg.norm(uw)),
                "dist_batch_weights": float(np.linalg.norm(w - b)),
                "cos_updates": float(ub @ uw / (np.linalg.norm(ub) * np.linalg.norm(uw))),
                "dist_next_seed": float(np.linalg.norm(other - b)) if len(seeds) > 1
                else float("nan"),
            })
    return pd.DataFrame(rows)


def run_check(preset: str, countries: list[str] | None, seeds: list[int],
              progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    from scpo.config import load_preset
    from scpo.experiment import run_country
    from scpo.scoring import prepare

    t0 = time.perf_counter()
    cfg = load_preset(preset)
    if cfg.model.backend != "embedding":
        raise ValueError(f"preset {preset!r} uses model.backend = {cfg.model.backend!r}; this "
                         "check compares heads of the embedding tier")
    cfg.update({"run": {"variants": [VARIANT], "seeds": list(seeds),
                        **({"countries": countries} if countries else {})}})
    prep = prepare(cfg)
    timings = {"prepare_s": time.perf_counter() - t0}
    theta_glo = head_vector(prep.global_rm)
    rows, models = [], {}
    for norm in NORMALIZATIONS:
        t = time.perf_counter()
        cfg_n = dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, normalize=norm))
        prep_n = dataclasses.replace(prep, cfg=cfg_n)
        for c in prep.countries:
            run = run_country(prep_n, c, keep_models=True, progress=False)
            rows.append(run.results.assign(normalize=norm))
            for key, model in run.models.items():
                models[(norm, c, int(key.split("/")[1]))] = model
        timings[f"train_{norm}_s"] = time.perf_counter() - t
        if progress:
            print(f"normalize={norm}: {len(prep.countries)} countries x {len(seeds)} seeds, "
                  f"{timings[f'train_{norm}_s']:.0f} s", flush=True)
    results = pd.concat(rows, ignore_index=True)[RESULT_COLUMNS]
    heads = head_distances(models, theta_glo, list(seeds))
    timings["total_s"] = time.perf_counter() - t0
    record = {
        "what": f"{VARIANT} trained with method.normalize = 'batch' and 'weights', same seeds",
        "preset": preset, "countries": prep.countries, "seeds": list(seeds),
        "config": cfg.to_dict(),
        "data": {"source": prep.data.source, "fingerprint": prep.data.fingerprint},
        "global_rm": prep.global_rm.fingerprint(), "timings_s": timings,
        "versions": versions(), "date": datetime.date.today().isoformat(),
    }
    return results, heads, record


def source_hash() -> str:
    """sha256 of the scpo package source (code, presets, simulator banks): which code ran."""
    root = ROOT / "scpo"
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()
                    and p.suffix in (".py", ".toml", ".json") and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def versions() -> dict[str, str]:
    import torch

    import scpo

    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"scpo": scpo.__version__, "git": commit, "scpo_source": source_hash(),
            "python": platform.python_version(),
            "torch": torch.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "platform": platform.platform(), "cpu_count": str(os.cpu_count())}


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Macro accuracy (points) per normalisation and test set: mean and sd over seeds."""
    macro = results.groupby(["normalize", "test_set", "seed"])["accuracy"].mean() * 100
    return macro.groupby(["normalize", "test_set"]).agg(["mean", "std"]).round(2)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default", help="scpo preset (embedding tier)")
    ap.add_argument("--countries", nargs="+", help="default: the preset's")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--out", default=str(OUT_DIR))
    args = ap.parse_args(argv)
    results, heads, record = run_check(args.preset, args.countries, args.seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "results.csv", index=False, float_format="%.10g")
    heads.to_csv(out / "heads.csv", index=False, float_format="%.10g")
    (out / "run.json").write_text(json.dumps(record, indent=1, sort_keys=True, default=str)
                                  + "\n")
    print(summary(results).to_string())
    print(heads.drop(columns=["country", "seed"]).median().round(4).to_string())
    print(f"wrote {out}/results.csv, heads.csv and run.json "
          f"({record['timings_s']['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
