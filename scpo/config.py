"""Configuration: one dataclass per concern, each field documented once, presets as small files.

Presets live in ``scpo/presets/<name>.toml``; each lists only what differs from the defaults
below, under the section names ``[data]``, ``[method]``, ``[train]``, ``[model]``, ``[run]``.
An unknown section or key fails loudly.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).parent / "presets"


def cache_dir() -> Path:
    """Where embeddings, global-RM scores and global heads are cached (``$SCPO_CACHE_DIR``)."""
    return Path(os.environ.get("SCPO_CACHE_DIR", Path.home() / ".cache" / "scpo"))


@dataclass
class DataConfig:
    dataset: str = "sim"  # "sim" (the simulator), "prism" or "goqa"
    data_dir: str | None = None  # local files; None = the hub (prism/goqa) or a fresh simulation
    revision: str | None = None  # hub revision (commit or tag) for prism/goqa
    # PRISM/sim: the released code's datasets train_test_split of the survey rows (test users);
    # GOQA: that share of the questions
    test_frac: float = 0.15
    split_seed: int = 0  # the seed of that split (the paper's: 0)
    # of the training users/questions, held out only while the tuned variant chooses tau/beta/lr
    # (a seeded hash of each id); every variant, the tuned one included, trains on all of them
    val_frac: float = 0.15
    prompt_context: str = "turn"  # PRISM/sim: "turn" (the prompt alone, as the released code)
    # or "history" (the earlier turns and the responses chosen in them, then the prompt)
    min_share_gap: float = 0.0  # GOQA: option i > option j only if share_i - share_j > gap
    sim_preset: str = "default"  # simulator knobs preset (scpo.simulate), when dataset = "sim"


@dataclass
class MethodConfig:
    tau: float = 0.7  # keep pairs with p_glo < tau
    beta: float = 1.10  # weight temperature: W = exp(min(delta / beta, 0))
    normalize: str = "batch"  # loss divides by batch size ("batch", as the paper) or sum W


@dataclass
class TrainConfig:
    lr: float = 1e-3  # minority fine-tuning learning rate (AdamW, linear decay, no warm-up)
    max_steps: int = 1024  # optimizer steps per country, as the paper (not epochs)
    batch_size: int = 8  # pairs per step
    weight_decay: float = 0.0
    global_lr: float = 1e-2  # embedding tier: learning rate of the global head
    global_steps: int = 2000  # embedding tier: steps of the global head
    global_batch_size: int = 64


@dataclass
class ModelConfig:
    backend: str = "embedding"  # "embedding" (frozen encoder + head) or "hf" (full fine-tuning)
    encoder: str = "minilm"  # embedding tier: "minilm" (shipped) or a HF model id / directory
    head: str = "linear"  # embedding tier head: "linear" or "mlp"
    encoder_max_length: int = 256  # embedding tier: tokens per text pair (MiniLM trained at 256)
    global_model: str | None = None  # hf tier: the global RM (hub id or directory)
    revision: str | None = None  # hf tier: hub revision (commit or tag) of the global RM
    chat_template: bool = False  # hf tier: wrap (prompt, response) in the tokenizer's template
    max_length: int = 512  # hf tier: tokens per (prompt, response) input
    mode: str = "fixed"  # hf tier: "fixed" or "released" (spec §8 behaviour)
    lora_r: int = 0  # hf tier: LoRA rank (0 = full fine-tuning)
    bf16: bool = True  # hf tier: bf16 autocast when CUDA is available
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False  # off unless you ask for it
    # given country RMs, evaluated by the variants "published" / "published_dropout" (preset
    # "published"): country -> hub id or directory; minority_dir: a directory holding a local
    # copy of each id under the id's last part (e.g. <dir>/scpo-reward-model-chile)
    minority_models: dict[str, str] = field(default_factory=dict)
    minority_dir: str | None = None


@dataclass
class RunConfig:
    countries: list[str] = field(default_factory=lambda: ["all"])  # "all" = the paper's 7
    variants: list[str] = field(default_factory=lambda: ["all"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    n_boot: int = 1000  # bootstrap resamples (of users) for 95% CIs
    tune_grid: dict[str, list[float]] = field(default_factory=lambda: {
        "tau": [0.5, 0.7, 0.9], "beta": [0.55, 1.1, 2.2], "lr_scale": [0.5, 1.0],
    })
    # hf tier: write each trained minority RM of these variants as a standard HF checkpoint
    # with a model card, under <export_dir>/<Country>/<variant>/seed<k>/ (None = no export)
    export_dir: str | None = None
    export_variants: list[str] = field(default_factory=lambda: ["scpo_fw", "scpo_fw_tuned"])


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def update(self, overrides: dict[str, dict[str, Any]], where: str = "overrides") -> Config:
        """Apply {section: {key: value}}; unknown sections or keys raise with the valid names."""
        for section, values in overrides.items():
            if not hasattr(self, section) or section.startswith("_"):
                raise KeyError(f"{where}: unknown section [{section}]; valid: "
                               f"{[f.name for f in dataclasses.fields(self)]}")
            obj = getattr(self, section)
            names = {f.name for f in dataclasses.fields(obj)}
            for key, value in values.items():
                if key not in names:
                    raise KeyError(f"{where}: unknown key {section}.{key}; valid: {sorted(names)}")
                setattr(obj, key, value)
        return self


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(name: str) -> Config:
    """The defaults overridden by ``presets/<name>.toml`` (or a path to a .toml file)."""
    path = Path(name) if name.endswith(".toml") else PRESET_DIR / f"{name}.toml"
    if not path.exists():
        raise FileNotFoundError(f"no preset {name!r}; available: {list_presets()}")
    with open(path, "rb") as f:
        overrides = tomllib.load(f)
    return Config().update(overrides, where=str(path))
