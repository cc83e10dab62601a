"""Training an ``HFRewardModel`` with the Hugging Face ``Trainer`` and the weighted
Bradley-Terry loss (``scpo.method.weighted_bt_loss``).

The Trainer brings AdamW, the linear schedule, seeding, bf16 and ``accelerate launch``
data parallelism; this module adds only what is specific to pairs: the features, a collator
that pads per batch and stacks chosen over rejected, and ``compute_loss``.

``scpo.models.hf`` calls it; it reads the model through ``Trainable`` and imports nothing of
``hf`` back, so the tier's modules depend one way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import functools
import os
import sys
import tempfile
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

from scpo.config import MethodConfig, TrainConfig
from scpo.method import weighted_bt_loss
from scpo.models.base import TrainHistory, check_training_pairs
from scpo.models.modes import Mode, autocast_enabled, effective_seed, encode_for_training


class Trainable(Protocol):
    """What training reads of a reward model (an ``HFRewardModel``), and ``model``, which it
    replaces by the trained one."""

    model: torch.nn.Module
    tokenizer: Any
    input_names: list[str]  # the tokenizer's outputs the model's forward takes
    mode: Mode
    max_length: int
    chat_template: bool
    device: torch.device
    bf16: bool
    gradient_checkpointing: bool


def pair_features(rm: Trainable, pairs: pd.DataFrame, weights: np.ndarray) -> Any:
    """A ``datasets.Dataset``: chosen / rejected token ids, the weight, and a ``length``
    column the length-grouped sampler reads."""
    import datasets

    def enc(col: str) -> list[dict[str, list[int]]]:
        feats = encode_for_training(rm.tokenizer, pairs["prompt"].tolist(), pairs[col].tolist(),
                                    mode=rm.mode, max_length=rm.max_length,
                                    chat_template=rm.chat_template)
        return [{k: f[k] for k in rm.input_names} for f in feats]

    chosen, rejected = enc("chosen"), enc("rejected")
    length = [max(len(c["input_ids"]), len(r["input_ids"])) for c, r in zip(chosen, rejected)]
    return datasets.Dataset.from_dict({"chosen": chosen, "rejected": rejected,
                                       "weight": weights.tolist(), "length": length})


@dataclasses.dataclass
class PairCollator:
    """Pads a batch to its longest input; one forward (chosen stacked over rejected) or two."""

    tokenizer: Any
    one_forward: bool

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        weight = torch.tensor([f["weight"] for f in features], dtype=torch.float32)
        chosen = [f["chosen"] for f in features]
        rejected = [f["rejected"] for f in features]
        if self.one_forward:
            return {**self.tokenizer.pad(chosen + rejected, return_tensors="pt"), "weight": weight}
        return {"chosen": dict(self.tokenizer.pad(chosen, return_tensors="pt")),
                "rejected": dict(self.tokenizer.pad(rejected, return_tensors="pt")),
                "weight": weight}


def pair_rewards(model: torch.nn.Module,
                 batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(r(x, y+), r(x, y-)) for a collated batch: one forward pass or two (released)."""
    if "chosen" in batch:
        return model(**batch["chosen"]).logits[:, 0], model(**batch["rejected"]).logits[:, 0]
    r = model(**batch).logits[:, 0]
    n = r.shape[0] // 2
    return r[:n], r[n:]


class WeightedPairTrainer(Trainer):
    """A Trainer whose loss is -mean(W log sigma(r+ - r-)) over the batch's pairs."""

    loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides by accumulation steps

    def __init__(self, *args: Any, normalize: str = "batch", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.normalize = normalize

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any],
                     return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> Any:
        weight = inputs.pop("weight")
        rc, rr = pair_rewards(model, inputs)
        loss = weighted_bt_loss(rc.float(), rr.float(), weight, normalize=self.normalize)
        return (loss, {"r_chosen": rc, "r_rejected": rr}) if return_outputs else loss


class HistoryCallback(TrainerCallback):
    """Collects {"step", "loss", "lr"} from every Trainer log."""

    def __init__(self) -> None:
        self.rows: TrainHistory = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.rows.append({"step": int(state.global_step), "loss": float(logs["loss"]),
                              "lr": float(logs.get("learning_rate", float("nan")))})


MMAP_THRESHOLD = 4 << 20  # bytes: freed CPU blocks above this go straight back to the OS
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


@functools.cache
def return_large_blocks_to_os(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold, once per process, so that freed CPU tensors above
    ``threshold`` are unmapped instead of kept in the heap. Returns whether it was set.

    glibc raises the threshold to the largest block ever freed (up to 32 MB), after which
    activation buffers come from the heap and stay there when freed; every new batch shape of
    dynamic padding carves new ones, so a CPU training's RSS creeps up step after step. Fixed
    at 4 MB, the large activations are unmapped when freed, for some page faults the next
    step (``benchmarks/bench_trl.py --breakdown`` measures both). It stays set for the rest of
    the process; other platforms are left alone.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(threshold)))


def per_device_batch(batch_size: int, world_size: int) -> int:
    """``batch_size`` is pairs per optimizer step over all GPUs, as the paper's batch 8."""
    if batch_size < 1 or batch_size % world_size:
        raise ValueError(f"train.batch_size={batch_size} must be a positive multiple of the "
                         f"{world_size} processes of the launch (pairs per step over all GPUs)")
    return batch_size // world_size


def _versioned_args(grouped: bool, checkpointing: bool) -> dict[str, Any]:
    """Length-grouped sampling and activation checkpointing under the names this
    transformers version uses (5.x renamed both)."""
    fields = TrainingArguments.__dataclass_fields__
    out: dict[str, Any] = (
        {"train_sampling_strategy": "group_by_length" if grouped else "random"}
        if "train_sampling_strategy" in fields else {"group_by_length": grouped})
    if checkpointing:  # use_reentrant=False: works with frozen (LoRA) inputs, no extra hooks
        name = ("activation_checkpointing" if "activation_checkpointing" in fields
                else "gradient_checkpointing")
        out.update({name: True, f"{name}_kwargs": {"use_reentrant": False}})
    return out


def training_arguments(rm: Trainable, train: TrainConfig, seed: int,
                       out_dir: str) -> TrainingArguments:
    """AdamW, linear decay to 0 with no warm-up, max_steps, seeded, no checkpoints, no loggers.

    On a CPU, ``use_cpu`` is what makes a distributed launch (torchrun, ``accelerate launch
    --multi_gpu``) data parallel over gloo: without it accelerate finds no GPU, sets up no DDP,
    and every process trains alone on its batch_size / world pairs (checked below).
    """
    world = int(os.environ.get("WORLD_SIZE", 1))
    seed = effective_seed(rm.mode, seed)
    cpu = rm.device.type == "cpu"
    args = TrainingArguments(
        output_dir=out_dir, max_steps=int(train.max_steps),
        per_device_train_batch_size=per_device_batch(int(train.batch_size), world),
        learning_rate=float(train.lr), weight_decay=float(train.weight_decay),
        optim="adamw_torch_fused", lr_scheduler_type="linear", warmup_steps=0,
        seed=seed, data_seed=seed, bf16=autocast_enabled(rm.device, rm.bf16, rm.mode),
        logging_strategy="steps", logging_steps=max(1, int(train.max_steps) // 100),
        logging_first_step=True, save_strategy="no", eval_strategy="no", report_to="none",
        remove_unused_columns=False, disable_tqdm=True, dataloader_num_workers=0,
        dataloader_pin_memory=rm.device.type == "cuda",
        use_cpu=cpu, ddp_backend="gloo" if cpu and world > 1 else None,
        **_versioned_args(rm.mode.length_grouping, rm.gradient_checkpointing))
    if args.world_size != world:  # per_device_batch split the batch over `world` processes
        raise RuntimeError(
            f"the launch started WORLD_SIZE={world} processes but the Trainer trains on "
            f"{args.world_size} ({args.distributed_state.distributed_type}): each process would "
            "train alone on a part of the batch. Launch with torchrun or `accelerate launch "
            "--multi_gpu` (see book/gpu.md), or run one process.")
    return args


def train_pairs(rm: Trainable, pairs: pd.DataFrame, weights: np.ndarray,
                train: TrainConfig, method: MethodConfig, seed: int) -> TrainHistory:
    """Fine-tune ``rm.model`` in place on weighted pairs; return the logged history."""
    weights = check_training_pairs(pairs, weights)
    if rm.mode.name == "released" and method.normalize != "batch":
        raise ValueError("released mode divides the loss by the batch size (spec §5); set "
                         "method.normalize = 'batch' or use mode 'fixed'.")
    dataset = pair_features(rm, pairs.reset_index(drop=True), weights)
    if rm.device.type == "cpu":
        return_large_blocks_to_os()
    history = HistoryCallback()
    with tempfile.TemporaryDirectory(prefix="scpo-hf-") as out_dir:
        trainer = WeightedPairTrainer(
            model=rm.model, args=training_arguments(rm, train, seed, out_dir),
            train_dataset=dataset, processing_class=rm.tokenizer,
            data_collator=PairCollator(rm.tokenizer, rm.mode.one_forward),
            callbacks=[history], normalize=method.normalize)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    rm.model = release_trainer(trainer)
    return history.rows


def release_trainer(trainer: Trainer) -> torch.nn.Module:
    """The trained model, freed of everything the Trainer hung on it.

    Accelerate's autocast sets ``model.forward`` (and ``_original_forward``) to bound methods
    of the model itself: a reference cycle that keeps the model, and with it each trained copy,
    alive until a full garbage collection. The Trainer also still holds the optimizer state
    (two fp32 moments per trained weight). Dropping both here lets a model be freed the moment
    its last user lets go, so one minority model at a time is in memory.
    """
    model = trainer.model
    for name in ("forward", "_original_forward"):
        model.__dict__.pop(name, None)  # back to the class's forward
    trainer.accelerator.free_memory()  # its lists of models, optimizers, schedulers, loaders
    for holder in (trainer, trainer.callback_handler):
        for name in ("model", "model_wrapped", "optimizer", "lr_scheduler"):
            if hasattr(holder, name):
                setattr(holder, name, None)
    return model
