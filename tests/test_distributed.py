"""The hf tier under a real 2-process data-parallel launch, on the CPU (gloo).

(a) ``torchrun`` runs ``HFRewardModel.fit`` in 2 processes (this file is the worker script);
(b) ``accelerate launch`` with scpo/presets/accelerate/cpu-ddp.yaml runs ``scpo run`` itself.
Each is compared with the same work done in one process (in this pytest process).

DDP averages the two processes' gradients. With normalize = "batch" the loss of a process is
sum(W l) / 4 over its 4 pairs, so the average is sum(W l) / 8 over the step's 8 pairs: the update
of one process with batch 8, given the same 8 pairs. Both runs draw the same permutation (same
seed) and the 2 processes take alternate 4-pair slices of it, so they do get the same 8 pairs;
the test checks that pair by pair, then the weights. Sums in another order (two halves, padding
to a shorter batch) leave float32 rounding differences, hence a tolerance on the weights.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from scpo.config import MethodConfig, TrainConfig  # noqa: E402
from scpo.models.hf import HFRewardModel, weights_hash  # noqa: E402
from scpo.models.hf_train import WeightedPairTrainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORLD, BATCH, STEPS = 2, 8, 3
N_PAIRS = BATCH * STEPS  # one epoch: no pair is seen twice
WORDS = "people here value respect family time food work money faith elders friends".split()
PAIRS = pd.DataFrame({  # lengths vary, so the length-grouped sampler has something to group
    "prompt": [f"question {i}: what about {' '.join(WORDS[: 2 + i % 9])}?" for i in range(N_PAIRS)],
    "chosen": [f"a kind, careful answer about {WORDS[i % 12]} " * (1 + i % 3)
               for i in range(N_PAIRS)],
    "rejected": [f"whatever, {WORDS[(i + 5) % 12]}" for i in range(N_PAIRS)],
})
# distinct weights, exact in float32: the weights a process trains on name the pairs it saw
WEIGHTS = 1.0 + np.arange(N_PAIRS) / 64
MODES = ("fixed", "released")  # one forward + length-grouped batches; two forwards + random order
CLI_ARGS = ["run", "--preset", "tiny", "--backend", "hf", "--set", "train.max_steps=2",
            "--set", "train.batch_size=2", "--set", "model.max_length=64",
            "--variants", "global", "scpo_fw", "--seeds", "0", "--countries", "Chile"]
RESULT_FILES = {".scpo", "results.parquet", "results.csv", "histories.json", "tuned.json",
                "run.json", "timing.json", "predictions.parquet"}


def fit_and_record(model_dir: Path, out: Path, mode: str) -> dict:
    """Fine-tune the saved model; write its weights and what this process saw, per step.

    Runs in each process of the launch, and once in the pytest process as the reference.
    """
    torch.set_num_threads(1)
    rank = os.environ.get("RANK", "single")
    seen: list[list[int]] = []
    original = WeightedPairTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):  # record the pairs, then the real loss
        seen.append(sorted(round((w - 1.0) * 64) for w in inputs["weight"].tolist()))
        return original(self, model, inputs, *args, **kwargs)

    rm = HFRewardModel.from_pretrained(str(model_dir), max_length=32, mode=mode)
    WeightedPairTrainer.compute_loss = spy
    try:
        history = rm.fit(PAIRS, WEIGHTS, TrainConfig(lr=1e-3, max_steps=STEPS, batch_size=BATCH,
                                                     weight_decay=0.0), MethodConfig(), seed=0)
    finally:
        WeightedPairTrainer.compute_loss = original
    state = {k: v.detach().contiguous() for k, v in rm.model.state_dict().items()}
    save_file(state, out / f"{mode}-{rank}.safetensors")
    # scoring after training, in the process group the Trainer joined: split over the ranks
    rm.split_scoring = True  # as the run's global RM and its copies
    rows: list[int] = []
    hook = rm.model.register_forward_pre_hook(
        lambda m, a, kw: rows.append(len(kw["input_ids"])), with_kwargs=True)
    texts = (PAIRS["prompt"].tolist(), PAIRS["chosen"].tolist())
    scores = rm.score(*texts)
    hook.remove()
    rm.split_scoring = False
    alone = rm.score(*texts)  # this process scoring every text itself
    record = {"rank": rank, "world": int(os.environ.get("WORLD_SIZE", 1)), "seen": seen,
              "history": history, "hash": weights_hash(state),
              "model_class": type(rm.model).__name__, "scored_rows": sum(rows),
              "scores": scores.tolist(), "alone": alone.tolist()}
    (out / f"{mode}-{rank}.json").write_text(json.dumps(record))
    return record


def launch(cmd: list[str], timeout: float = 240) -> None:
    """Run a launcher in its own process group; on timeout end that group (the launcher and
    the workers it started), so a hung rank cannot outlive the test."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{cmd[:3]} still running after {timeout} s:\n{out[-5000:]}")
    assert proc.returncode == 0, f"{cmd[:3]} failed:\n{out[-8000:]}"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    # dropout off: with dropout the masks of 2 processes x 4 pairs are not those of 1 x 8
    from conftest import write_tiny_bert

    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), dropout=0.0)


def test_a_launch_the_trainer_does_not_join_is_an_error(monkeypatch, tmp_path):
    """WORLD_SIZE=2 but a device accelerate sets up no DDP for (no LOCAL_RANK, not the CPU):
    the batch was split in two, so training would silently use half of it."""
    from types import SimpleNamespace

    from scpo.models.hf_train import training_arguments
    from scpo.models.modes import get_mode

    monkeypatch.setenv("WORLD_SIZE", "2")
    rm = SimpleNamespace(mode=get_mode("fixed"), device=torch.device("meta"), bf16=False,
                         gradient_checkpointing=False)
    with pytest.raises(RuntimeError, match="WORLD_SIZE=2 processes but the Trainer trains on 1"):
        training_arguments(rm, TrainConfig(batch_size=8), 0, str(tmp_path))


@pytest.mark.slow
def test_torchrun_fit_equals_one_process_with_the_whole_batch(model_dir, tmp_path):
    launch([str(BIN / "torchrun"), "--standalone", f"--nproc_per_node={WORLD}", __file__,
            str(model_dir), str(tmp_path)])
    initial = weights_hash(load_file(model_dir / "model.safetensors"))
    for mode in MODES:
        single = fit_and_record(model_dir, tmp_path, mode)
        ranks = [json.loads((tmp_path / f"{mode}-{r}.json").read_text()) for r in range(WORLD)]
        assert [r["world"] for r in ranks] == [WORLD, WORLD]
        # every step: each process trained on batch / 2 pairs, together on the single run's 8
        assert len(single["seen"]) == STEPS and all(len(s) == BATCH for s in single["seen"])
        for step in range(STEPS):
            a, b = ranks[0]["seen"][step], ranks[1]["seen"][step]
            assert len(a) == len(b) == BATCH // WORLD and not set(a) & set(b), (mode, step)
            assert sorted(a + b) == single["seen"][step], (mode, step)
        # the logged loss is the mean over the processes: the single run's batch-8 loss
        assert ranks[0]["history"] == ranks[1]["history"]
        steps = [h["step"] for h in single["history"]]
        assert [h["step"] for h in ranks[0]["history"]] == steps == [1, 2, 3]
        np.testing.assert_allclose([h["loss"] for h in ranks[0]["history"]],
                                   [h["loss"] for h in single["history"]], rtol=1e-5)
        # scoring: each process ran half the texts, and all got every score
        assert [r["scored_rows"] for r in ranks] == [N_PAIRS // WORLD] * WORLD, mode
        assert single["scored_rows"] == N_PAIRS
        assert ranks[0]["scores"] == ranks[1]["scores"]
        np.testing.assert_allclose(ranks[0]["scores"], ranks[0]["alone"], rtol=1e-5, atol=1e-6)
        # DDP keeps the replicas bitwise equal, gives back the bare model, and it was trained
        assert ranks[0]["hash"] == ranks[1]["hash"] != initial
        assert ranks[0]["model_class"] == single["model_class"] == "BertForSequenceClassification"
        ddp = load_file(tmp_path / f"{mode}-0.safetensors")
        one = load_file(tmp_path / f"{mode}-single.safetensors")
        assert ddp.keys() == one.keys()
        # The head's bias cancels in r+ - r-: its true gradient is 0, but the float32 sum of
        # +a and -a over a batch can leave a residue ~1e-9, which AdamW (g / (|g| + 1e-8))
        # turns into a step of up to lr. It changes no r+ - r-, so it is left out here.
        bias = {k: abs(float(ddp.pop(k) - one.pop(k))) for k in ["classifier.bias"]}
        assert bias["classifier.bias"] <= 2e-3  # at most the sum of the 3 steps' lr
        # The rest moved as in one process, up to rounding that AdamW amplifies where a
        # gradient is tiny: |update difference| / |update| measured 7e-5 (fixed) and 4e-4
        # (released). Each process training alone on its 4 pairs (no averaging: what the
        # Trainer did on a CPU before use_cpu) gives 0.26 and 0.40.
        start = load_file(model_dir / "model.safetensors")
        moved_ddp = torch.cat([(ddp[k] - start[k]).ravel() for k in sorted(one)])
        moved_one = torch.cat([(one[k] - start[k]).ravel() for k in sorted(one)])
        rel = float((moved_ddp - moved_one).norm() / moved_one.norm())
        assert rel < 2e-3, (mode, rel)


@pytest.mark.slow
def test_scpo_run_under_accelerate_launch_writes_once(model_dir, tmp_path):
    from scpo.cli import main
    from scpo.companion.report import main_table

    args = [*CLI_ARGS, "--set", f"model.global_model={model_dir}"]
    main([*args, "--out", str(tmp_path / "single")])  # also caches the global RM's scores
    # each process gets its own --out (rank<RANK>) and log, so a write by rank 1 would show
    python = shlex.join([sys.executable, "-m", "scpo.cli", *args])
    script = (f"exec {python} --out {shlex.quote(str(tmp_path))}/ddp/rank$RANK "
              f"> {shlex.quote(str(tmp_path))}/rank$RANK.log 2>&1")
    launch([str(BIN / "accelerate"), "launch", "--config_file",
            str(ROOT / "scpo/presets/accelerate/cpu-ddp.yaml"), "--no_python", "sh", "-c", script])

    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["rank0"]
    out = tmp_path / "ddp" / "rank0"
    assert {p.name for p in out.iterdir()} == RESULT_FILES
    results = pd.read_parquet(out / "results.parquet")
    assert sorted(zip(results["variant"], results["test_set"])) == [
        ("global", "overall"), ("global", "pure_minority"),
        ("scpo_fw", "overall"), ("scpo_fw", "pure_minority")]
    assert (results["country"] == "Chile").all()
    # rank 0 printed the table it wrote; rank 1 computed the same but reports nothing
    table = main_table(results).to_string()
    logs = [(tmp_path / f"rank{r}.log").read_text() for r in range(WORLD)]
    assert table in logs[0], f"rank 0 printed another table:\n{logs[0][-3000:]}"
    assert "rows written" not in logs[1] and "countries:" not in logs[1], logs[1][-3000:]
    # and it is the one-process table: same pairs per step (1 per process), averaged gradients
    single = pd.read_parquet(tmp_path / "single" / "results.parquet")
    pd.testing.assert_frame_equal(results, single, check_exact=False, rtol=1e-6)
    hist = json.loads((out / "histories.json").read_text())["Chile/scpo_fw/0"]
    hist1 = json.loads((tmp_path / "single" / "histories.json").read_text())["Chile/scpo_fw/0"]
    assert [h["step"] for h in hist] == [h["step"] for h in hist1] == [1, 2]
    np.testing.assert_allclose([h["loss"] for h in hist], [h["loss"] for h in hist1], rtol=1e-5)
    run_ddp = json.loads((out / "run.json").read_text())
    run_one = json.loads((tmp_path / "single" / "run.json").read_text())
    assert run_ddp["global_rm"] == run_one["global_rm"]
    assert run_ddp["config"] == run_one["config"]


if __name__ == "__main__":  # the worker of the torchrun launch: model dir, output dir
    for m in MODES:
        fit_and_record(Path(sys.argv[1]), Path(sys.argv[2]), m)
