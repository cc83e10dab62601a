"""Exporting trained minority RMs from a run: `scpo run --export` and `scpo export`.

A tiny BERT built from a config (conftest's ``tiny_bert``) is the hf tier's global RM on the
tiny simulation; the exported checkpoint is read back with plain transformers and must reproduce
the accuracy its card reports.
"""

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from scpo import cli
from scpo.config import load_preset
from scpo.experiment import country_splits, run, run_country
from scpo.results import card_record, export_saved, run_record, save_country
from scpo.scoring import prepare


def hf_tiny(tiny_bert: Path, **run):
    cfg = load_preset("tiny")
    return cfg.update({
        "model": {"backend": "hf", "global_model": str(tiny_bert), "max_length": 64},
        "train": {"max_steps": 3, "batch_size": 4, "lr": 1e-3},
        "run": {"countries": ["Chile"], "variants": ["global", "baseline", "scpo_fw"],
                "n_boot": 50, **run}})


@pytest.fixture(scope="module")
def exported_run(tiny_bert, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export-run")
    cfg = hf_tiny(tiny_bert, export_dir=str(tmp / "models"))
    results, prep, runs = run(cfg, tmp / "out", progress=False)
    return tmp, results, prep


def plain_accuracy(path: Path, test: pd.DataFrame) -> float:
    """Score the test pairs the way the card's usage code does, with transformers alone."""
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()

    @functools.cache  # a text is in several pairs: score it once
    def reward(prompt: str, response: str) -> float:
        inputs = tok(prompt, response, truncation=True, max_length=64, return_tensors="pt")
        with torch.inference_mode():
            return model(**inputs).logits[0, 0].item()

    rc = np.array([reward(p, c) for p, c in zip(test["prompt"], test["chosen"])])
    rr = np.array([reward(p, r) for p, r in zip(test["prompt"], test["rejected"])])
    return float(np.mean(rc > rr))


def test_run_exports_only_the_asked_variants(exported_run):
    tmp, _, _ = exported_run
    listed = json.loads((tmp / "out" / "exported.json").read_text())
    assert list(listed) == ["Chile/scpo_fw/0"]  # baseline is not in run.export_variants
    d = Path(listed["Chile/scpo_fw/0"])
    assert d == tmp / "models" / "Chile" / "scpo_fw" / "seed0"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert (d / name).is_file(), name
    assert not (tmp / "models" / "Chile" / "baseline").exists()


def test_exported_checkpoint_reproduces_the_card_accuracy(exported_run):
    tmp, results, prep = exported_run
    row = results[(results.variant == "scpo_fw") & (results.test_set == "overall")].iloc[0]
    d = tmp / "models" / "Chile" / "scpo_fw" / "seed0"
    test = country_splits(prep, "Chile")["test"]
    assert plain_accuracy(d, test) == pytest.approx(row["accuracy"], abs=1e-12)
    card = (d / "README.md").read_text()
    assert f'"overall": {{"accuracy": {row["accuracy"]}' in card
    assert f"| pairs_kept | {row['n_kept']} |" in card and "| seeds | [0] |" in card
    # the global RM by the name of its directory: no path of the exporting machine
    name = Path(prep.cfg.model.global_model).name
    assert f'| global_model | "{name}" |' in card and prep.cfg.model.global_model not in card


def test_card_record_from_rows_by_hand():
    rows = [{"country": "Chile", "variant": "scpo_fw", "seed": np.int64(1), "test_set": s,
             "accuracy": a, "ci_low": a - 0.1, "ci_high": a + 0.1, "n_pairs": n, "tau": 0.7,
             "beta": 1.1, "lr": 1e-6, "n_kept": np.int64(40), "n_train": 100, "weight_sum": 31.5}
            for s, a, n in [("overall", 0.75, 80), ("pure_minority", 0.25, 12)]]
    cfg = {"train": {"max_steps": 1024, "batch_size": 8}, "data": {"split_seed": 0}}
    rec = card_record(rows, cfg, {"source": "prism", "fingerprint": "abc"})
    assert rec["pairs_kept"] == 40 and type(rec["pairs_kept"]) is int
    assert rec["seeds"] == [1] and rec["pairs_train"] == 100 and rec["max_steps"] == 1024
    assert rec["test_accuracy"]["pure_minority"] == {"accuracy": 0.25, "ci95": [0.15, 0.35],
                                                     "n_pairs": 12}
    with pytest.raises(ValueError, match="rows of one model"):
        card_record(rows + [{**rows[0], "seed": 2}], cfg, {"source": "x", "fingerprint": "y"})


def test_scpo_export_from_a_country_notebooks_saved_models(tiny_bert, tmp_path, capsys):
    prep = prepare(hf_tiny(tiny_bert, variants=["scpo_fw"]))
    save_country(tmp_path / "res", run_country(prep, "Chile", keep_models=True, progress=False),
                 run_record(prep))
    cli.main(["export", "--results", str(tmp_path / "res"), "--country", "Chile",
              "--out", str(tmp_path / "m")])
    assert "exported to" in capsys.readouterr().out
    res = pd.read_parquet(tmp_path / "res" / "Chile" / "results.parquet")
    acc = res.loc[res.test_set == "overall", "accuracy"].item()
    test = country_splits(prep, "Chile")["test"]
    assert plain_accuracy(tmp_path / "m", test) == pytest.approx(acc, abs=1e-12)
    with pytest.raises(KeyError, match=r"no results for variant 'baseline', seed 0.*scpo_fw"):
        export_saved(tmp_path / "res", "Chile", "baseline", 0, tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="run the country notebook"):
        export_saved(tmp_path / "res", "Mexico", "scpo_fw", 0, tmp_path / "x")


def test_export_asks_fail_before_training(tiny_bert, tmp_path):
    emb = load_preset("tiny").update({"run": {"countries": ["Chile"], "variants": ["scpo_fw"],
                                              "export_dir": str(tmp_path)}})
    with pytest.raises(ValueError, match="needs model.backend = 'hf'"):
        run_country(prepare(emb), "Chile", progress=False)
    cfg = hf_tiny(tiny_bert, variants=["global", "baseline"], export_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"names no trained variant of this run"):
        run_country(prepare(cfg), "Chile", progress=False)
    assert not any(tmp_path.iterdir())
