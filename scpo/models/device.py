"""Processes and devices: which GPU this process uses, which rank writes files, how scoring is
split over the ranks of a launch, and the weights of a model FSDP has sharded."""

from __future__ import annotations

import os

import torch


def pick_device() -> torch.device:
    """cuda (this process's GPU under ``accelerate launch``) if available, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def is_main_process() -> bool:
    """Rank 0 (or no distributed launch): the process that writes files."""
    return int(os.environ.get("RANK", 0)) == 0


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the weights are (an offloaded global RM's are on the CPU)."""
    return next(model.parameters()).device


def scoring_shards(model: torch.nn.Module, split: bool) -> tuple[int, int]:
    """(processes, this rank) to split scoring over: under a data-parallel launch each rank
    scores 1/world of the texts and all gather the scores, instead of every rank scoring all.

    Only with ``split`` (``HFRewardModel.split_scoring``): every rank must then score the same
    texts at the same time, as the run's global and test scoring do, but not, say, a reward
    function scoring each rank's own completions. (1, 0) alone, before the process group
    exists, or under FSDP, whose forward passes are collectives that every rank must run
    together on the same number of batches."""
    dist = torch.distributed
    if not split or not (dist.is_available() and dist.is_initialized()):
        return 1, 0
    if dist.get_world_size() < 2 or is_sharded(model):
        return 1, 0
    return dist.get_world_size(), dist.get_rank()


def start_process_group(device: torch.device) -> None:
    """Join the launch's process group now (``torchrun`` / ``accelerate launch`` set
    WORLD_SIZE), as the Trainer would at its first training, so that the global RM's scoring
    before it is already split over the processes. Gloo on a CPU, as ``training_arguments``."""
    if int(os.environ.get("WORLD_SIZE", 1)) < 2 or torch.distributed.is_initialized():
        return
    from accelerate import PartialState

    cpu = device.type == "cpu"
    PartialState(cpu=cpu, backend="gloo" if cpu else None)


def is_sharded(model: torch.nn.Module) -> bool:
    """True once FSDP2 has split the weights over the processes (DTensor parameters)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight: the model's own state dict, or, if FSDP sharded it, the shards gathered
    on the CPU of rank 0 (a collective: every rank must call it; the others get {})."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                 cpu_offload=True))
