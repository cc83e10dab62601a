"""How long does "PRISM on a laptop" take cold? The book built with a data directory holding a
simulated PRISM of PRISM's real size, in an empty cache, timed page by page.

    .venv/bin/python benchmarks/prism_chapter.py            # about 25 minutes on 2 cores

PRISM itself cannot be downloaded here; the simulator writes PRISM-format files of its size
(``benchmarks/prism_size.toml``: ~1,400 users, ~8,400 conversations, ~67,000 rated responses,
~61,000 distinct texts) and only ``utterances.jsonl`` and ``survey.jsonl`` go into the data
directory, as ``scpo fetch`` puts PRISM's. Prints one table: the warm-up (embedding every text
once and training the global head), the PRISM pages, and the whole build. Real PRISM responses
are longer than the simulator's (MiniLM reads up to 256 tokens of a text pair): the table also
gives the encoder's throughput at ~56 and ~256 tokens, to scale the embedding time by.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = ROOT / "benchmarks" / "prism_size.toml"
WORDS = ("the people of each country value time family work respect food music weather money "
         "school history friends travel health news market city village river mountain").split()


def simulate(data: Path) -> dict[str, int]:
    """A real-size PRISM in ``data/prism`` (PRISM's two files only); its counts."""
    import pandas as pd

    from scpo.simulate import sim_config, simulate

    sim = simulate(sim_config(str(SIZE)), data / "sim")
    (data / "prism").mkdir(parents=True)
    for name in ("utterances.jsonl", "survey.jsonl"):
        shutil.copy2(sim / name, data / "prism" / name)
    shutil.rmtree(data / "sim")
    u = pd.read_json(data / "prism" / "utterances.jsonl", lines=True)
    return {"utterances": len(u), "conversations": int(u["conversation_id"].nunique()),
            "distinct texts": int(u.groupby(["user_prompt", "model_response"]).ngroups)}


def throughput(words: int, n: int = 256) -> float:
    """MiniLM texts/s on (prompt, response) pairs of ~``words`` response words (after a warm-up)."""
    from scpo.models.embedding import Encoder

    rng = np.random.default_rng(0)
    enc = Encoder("minilm", max_length=256)
    prompts = [" ".join(rng.choice(WORDS, size=12)) for _ in range(n)]
    responses = [" ".join(rng.choice(WORDS, size=words)) for _ in range(n)]
    enc.embed(prompts[:16], responses[:16])
    t0 = time.perf_counter()
    enc.embed(prompts, responses)
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", help="work here and keep it (default: a temporary directory)")
    args = p.parse_args()
    if args.keep:  # the data, store and caches go in there: a folder of yours is refused
        from scpo.outdir import claim

        claim(args.keep, what="benchmark's work directory", told="")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="prism-chapter-"))
    data = work / "data"
    t0 = time.perf_counter()
    counts = simulate(data)
    t_sim = time.perf_counter() - t0
    env = {**os.environ, "SCPO_CACHE_DIR": str(work / "cache"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, str(ROOT / "book" / "build.py"), "--data-dir", str(data), "--store",
           str(work / "store"), "--build-dir", str(work / "book")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    t_build = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the build failed:\n{proc.stderr[-4000:]}")
    log = proc.stdout
    warm = float(re.search(r"warm\s+prism\s+(\d+) s", log).group(1))
    pages = {m.group(1): float(m.group(2))
             for m in re.finditer(r"done\s+(prism/\S+)\s+(\d+) s", log)}
    rows = [("simulated PRISM", f"{counts['utterances']:,} utterances, "
             f"{counts['conversations']:,} conversations, {counts['distinct texts']:,} texts",
             f"{t_sim:.0f} s"),
            ("warm-up: every PRISM text embedded, the global head trained", "", f"{warm:.0f} s"),
            ("PRISM's country pages (summed; 2 run at a time)",
             f"{sum(v for k, v in pages.items() if '/countries/' in k):.0f} s of notebooks",
             f"{len([k for k in pages if '/countries/' in k])} pages"),
            ("PRISM's chapter", "", f"{pages.get('prism/main', float('nan')):.0f} s"),
            ("the whole book, cold (the simulator's pages too)", "", f"{t_build:.0f} s")]
    for words in (40, 250):
        rows.append((f"MiniLM throughput, responses of {words} words", "", 
                     f"{throughput(words):.1f} texts/s"))
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'what':<60}  time")
    for name, what, t in rows:
        print(f"{name:<{width}}  {what:<60}  {t}")
    print(f"\n{os.cpu_count()} cores; work directory {work}"
          + ("" if args.keep else " (removed)"))
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
