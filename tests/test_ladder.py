"""benchmarks/ladder.py, run for real on the tiny simulation with a tiny BERT and a few steps."""

import json

import pandas as pd
import pytest
from conftest import load_script

from scpo.config import load_preset

ladder = load_script("benchmarks/ladder.py", "ladder")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def study(tiny_bert, tmp_path_factory):
    patch = pytest.MonkeyPatch()  # three variants (the tuned one among them) keep it short
    patch.setattr(ladder, "VARIANTS", ["global", "filtered", "scpo_fw_tuned"])
    s = ladder.Settings(countries=("Chile",), seeds=(0,), n_train=40, n_val=10, n_test=0,
                        n_global=24, global_steps=3, steps=2, batch_size=4, max_length=64,
                        train_layers=1, backbone=str(tiny_bert), tau_grid=(0.6, 0.8))
    cfg = load_preset("tiny")
    cfg.train.max_steps = 20  # the head rung's recipe, short
    runs = []
    for i in range(2):  # the same study twice
        out = tmp_path_factory.mktemp(f"ladder{i}")
        results, predictions, record, timings = ladder.run_ladder(cfg, s, progress=False)
        ladder.write(out, results, predictions, record, timings)
        runs.append((out, results, record))
    yield s, runs
    patch.undo()


def test_every_rung_country_variant_seed_and_test_set_once(study):
    s, [(_, results, record), _] = study
    assert list(results.columns[:2]) == ["rung", "country"]
    counts = results.groupby(["rung", "variant", "seed", "test_set"]).size()
    assert len(counts) == 3 * len(ladder.VARIANTS) * 1 * 2 and (counts == 1).all()
    assert set(results["rung"]) == {"head", "top", "full"}
    # each deeper rung has its own global RM; the top rung's is the partial tier's
    fps = {r: record["global_rm"][r]["fingerprint"] for r in ladder.RUNGS}
    assert len(set(fps.values())) == 3
    assert record["configs"]["top"]["model"]["backend"] == "partial"
    assert record["configs"]["top"]["model"]["train_layers"] == 1
    assert record["configs"]["full"]["model"]["backend"] == "hf"
    # the same training pairs on every rung (the kept ones follow each rung's own global RM)
    kept = results[(results["variant"] == "filtered") & (results["test_set"] == "overall")]
    assert set(kept["n_train"]) == {40} and (kept["n_kept"] <= 40).all()
    assert set(record["tuned"]) == {"head/Chile", "top/Chile", "full/Chile"}
    assert record["data"]["pairs"]["Chile"]["train"]["used"] == 40


def test_rerun_writes_byte_identical_results_and_record(study):
    _, [(a, *_), (b, *_)] = study
    for name in ("results.csv", "run.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_parquet(a / "predictions.parquet"),
                                  pd.read_parquet(b / "predictions.parquet"))
    assert "total_s" in json.loads((a / "timing.json").read_text())


def test_the_per_pair_outcomes_are_the_accuracies_of_the_results(study):
    """predictions.parquet: each model's outcome on each test pair, whose mean per rung,
    variant and test set is results.csv's accuracy."""
    _, [(out, results, _), _] = study
    pred = pd.read_parquet(out / "predictions.parquet")
    assert list(pred.columns[:3]) == ["rung", "country", "variant"]
    pred["variant"] = pred["variant"].astype(str)
    for test_set, rows in (("overall", pred), ("pure_minority", pred[pred["pure_minority"]])):
        mean = rows.groupby(["rung", "variant"], observed=True)["correct"].mean()
        want = results[results["test_set"] == test_set].set_index(["rung", "variant"])
        pd.testing.assert_series_equal(mean.sort_index(), want["accuracy"].sort_index(),
                                       check_names=False)


def test_the_global_rm_scores_zero_on_its_own_pure_minority_pairs(study):
    _, [(_, results, _), _] = study
    pure = results[(results["variant"] == "global") & (results["test_set"] == "pure_minority")]
    assert (pure["accuracy"] == 0).all() and (pure["n_pairs"] > 0).all()


def test_unknown_rung_is_a_clear_error():
    s = ladder.Settings(rungs=("head", "deep"))
    with pytest.raises(ValueError, match=r"rungs \['head', 'deep'\]: choose from"):
        ladder.run_ladder(load_preset("tiny"), s, progress=False)


def test_the_summary_is_mean_accuracy_in_percent(study):
    _, [(_, results, _), _] = study
    table = ladder.summary(results)
    sub = results[(results["rung"] == "top") & (results["variant"] == "filtered")
                  & (results["test_set"] == "overall")]
    assert table.loc["filtered", ("overall", "top")] == round(100 * sub["accuracy"].mean(), 1)
    assert isinstance(table, pd.DataFrame) and list(table.index) == ladder.VARIANTS
