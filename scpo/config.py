"""Configuration: one dataclass per concern, each field documented once, presets as small files.

Presets live in ``scpo/presets/<name>.toml``; each lists only what differs from the defaults
below, under the section names ``[data]``, ``[method]``, ``[train]``, ``[model]``, ``[run]``.
An unknown section or key fails loudly.
"""

from __future__ import annotations

import ast
import dataclasses
import numbers
import os
import tomllib
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).parent / "presets"


def cache_dir() -> Path:
    """Where embeddings, global-RM scores and global heads are cached: ``$SCPO_CACHE_DIR``, else
    the checkout's ``.cache/scpo`` when scpo runs from a source checkout (where ``make book``
    puts it, so a direct ``scpo``/papermill/Python run finds what the book computed), else
    ``~/.cache/scpo``."""
    if os.environ.get("SCPO_CACHE_DIR"):
        return Path(os.environ["SCPO_CACHE_DIR"])
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "scpo" / "presets").is_dir():
        return checkout / ".cache" / "scpo"
    return Path.home() / ".cache" / "scpo"


def setting(default: Any = dataclasses.MISSING, doc: str = "", *,
            factory: Any = dataclasses.MISSING) -> Any:
    """A config field with its one description (``help_text`` reads it: the CLI, ``scpo
    config`` and the notebooks point here instead of repeating it)."""
    return field(default=default, default_factory=factory, metadata={"help": doc})


@dataclass
class DataConfig:
    """Which preference pairs: the dataset, its split into training and test users."""

    dataset: str = setting("sim", '"sim" (the simulator), "prism" or "goqa"')
    data_dir: str | None = setting(None, "local files; None = the hub (prism/goqa) or a fresh "
                                   "simulation")
    revision: str | None = setting(None, "hub revision (commit or tag) of the prism/goqa dataset")
    test_frac: float = setting(0.15, "PRISM/sim: share of survey rows (users) held out as test "
                               "users, by the released code's datasets train_test_split; GOQA: "
                               "share of the questions")
    split_seed: int = setting(0, "the seed of that split (the paper's: 0)")
    val_frac: float = setting(0.15, "share of the training users/questions held out only while "
                              "the tuned variant chooses tau/beta/lr (a seeded hash of each id); "
                              "every variant, the tuned one included, trains on all of them")
    prompt_context: str = setting("turn", 'PRISM/sim: "turn" (the prompt alone, as the released '
                                  'code) or "history" (the earlier turns and the responses chosen '
                                  'in them, then the prompt)')
    min_share_gap: float = setting(0.0, "GOQA: option i is preferred to option j only if "
                                   "share_i - share_j > gap")
    sim: dict[str, Any] = setting(doc='dataset = "sim": the simulator\'s knobs that differ from '
                                  'the defaults of scpo.simulate.SimConfig (a [data.sim] table; '
                                  '--set data.sim={...} replaces the whole table)',
                                  factory=dict)


@dataclass
class MethodConfig:
    """SCPO's two knobs (spec §3) and how the loss is normalised."""

    tau: float = setting(0.7, "filter: keep training pairs with p_glo < tau (the paper: 0.7)")
    beta: float = setting(1.10, "weight temperature: W = min(exp(delta_glo / beta), 1) (the "
                          "paper: 1.10)")
    normalize: str = setting("batch", 'the loss divides by the batch size ("batch", as the paper) '
                             'or by sum W ("weights")')


# The training knobs whose sense depends on the tier: a head on frozen embeddings learns at a
# large rate over thousands of cheap steps; a transformer's layers at a small rate, and on a CPU
# over a few costly steps. Setting model.backend to another tier sets these to that tier's
# values, except those set in the same change or later (a preset's [train] table, --set
# train.lr=...): `--preset tiny --backend partial` trains the partial tier's way, not a
# transformer at a head's learning rate. The hf tier's global RM is given, so it has no global_*.
TIER_TRAIN: dict[str, dict[str, float | int]] = {
    "embedding": {"lr": 1e-3, "max_steps": 1024, "global_lr": 1e-2, "global_steps": 2000,
                  "global_batch_size": 64},
    "partial": {"lr": 1e-4, "max_steps": 32, "global_lr": 2e-4, "global_steps": 75,
                "global_batch_size": 8},  # the ladder study's short fine-tunings for a CPU
    "hf": {"lr": 1e-6, "max_steps": 1024},  # the paper's (spec §7)
}


@dataclass
class TrainConfig:
    """Fine-tuning each minority RM (and, on the embedding and partial tiers, the global RM).
    Defaults: the embedding tier's; other tiers: ``TIER_TRAIN``."""

    lr: float = setting(1e-3, "minority fine-tuning learning rate (AdamW, linear decay, no "
                              "warm-up)")
    max_steps: int = setting(1024, "optimizer steps per country, as the paper (not epochs)")
    batch_size: int = setting(8, "pairs per step")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    global_lr: float = setting(1e-2, "embedding and partial tiers: learning rate of the global RM "
                               "trained on the global pool")
    global_steps: int = setting(2000, "embedding and partial tiers: steps of that global RM")
    global_batch_size: int = setting(64, "embedding and partial tiers: pairs per step of that "
                                     "global RM")


@dataclass
class ModelConfig:
    """The reward models: the tier (embedding, partial or Hugging Face) and its options."""

    backend: str = setting("embedding", 'the tier: "embedding" (frozen encoder + head), "partial" '
                           '(the top model.train_layers layers of a HF encoder trained, the rest '
                           'frozen and cached) or "hf" (a Hugging Face RM, fine-tuned in full or '
                           'with LoRA)')
    encoder: str = setting("minilm", 'embedding tier, and the partial tier without global_model: '
                           '"minilm" (shipped) or a HF model id / directory')
    train_layers: int = setting(2, "partial tier: how many top transformer layers train (with the "
                                "pooler and the score head)")
    head: str = setting("linear", 'embedding tier head: "linear" or "mlp"')
    encoder_max_length: int = setting(256, "embedding tier: tokens per text pair (MiniLM trained "
                                      "at 256)")
    global_model: str | None = setting(None, "hf tier: the global RM (hub id or directory); "
                                       "partial tier: a given global RM instead of one trained "
                                       "from model.encoder on the global pool")
    revision: str | None = setting(None, "hf tier: hub revision (commit or tag) of the global RM")
    chat_template: bool = setting(False, "hf tier: wrap (prompt, response) in the tokenizer's "
                                  "chat template")
    max_length: int = setting(512, "hf and partial tiers: tokens per (prompt, response) input")
    mode: str = setting("fixed", 'hf tier: "fixed" or "released" (the released code\'s '
                        'behaviour, spec §8)')
    lora_r: int = setting(0, "hf tier: LoRA rank (0 = full fine-tuning)")
    bf16: bool = setting(True, "hf tier: bf16 autocast when CUDA (with bf16) is available")
    gradient_checkpointing: bool = setting(False, "hf tier: recompute activations in the "
                                           "backward pass (less memory, ~1/3 more time)")
    dropout: bool = setting(True, "hf and partial tiers: the checkpoint's dropout (the released "
                            "code's); false = off, as TRL's disable_dropout: faster and leaner (on "
                            "a CPU it unlocks the fused attention kernel)")
    trust_remote_code: bool = setting(False, "run a hub model's own code (off unless you ask)")
    minority_models: dict[str, str] = setting(
        doc='given country RMs, evaluated by the variants "published" / "published_dropout" '
            '(preset "published"): country -> hub id or directory', factory=dict)
    minority_dir: str | None = setting(None, "a directory holding a local copy of each "
                                       "minority_models id under the id's last part (e.g. "
                                       "<dir>/scpo-reward-model-chile)")


def check_seeds(seeds: list[int], where: str = "run.seeds") -> list[int]:
    """``seeds`` when no seed repeats, else a ValueError naming it: a seed is one training run of
    each variant, and a repeated one would write the same rows twice (every later reader of the
    results refuses them)."""
    dup = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if dup:
        raise ValueError(f"{where}: {list(seeds)} repeats seed(s) {dup}; each seed is one "
                         "training run of every variant: give distinct seeds, e.g. --seeds 0 1 2")
    return seeds


@dataclass
class RunConfig:
    """What one run covers: countries x variants x seeds, and what it writes."""

    countries: list[str] = setting(doc='country names, or "all" = the paper\'s 7',
                                   factory=lambda: ["all"])
    variants: list[str] = setting(doc='names from scpo.variants.VARIANTS, or "all"',
                                  factory=lambda: ["all"])
    seeds: list[int] = setting(doc="training seeds", factory=lambda: [0, 1, 2])
    n_boot: int = setting(1000, "bootstrap resamples (of users) for 95% CIs")
    tune_grid: dict[str, list[float]] = setting(
        doc="the tuned variant's grid: tau, beta and lr_scale (x train.lr)",
        factory=lambda: {"tau": [0.5, 0.7, 0.9], "beta": [0.55, 1.1, 2.2],
                         "lr_scale": [0.5, 1.0]})
    export_dir: str | None = setting(None, "hf tier: write each trained minority RM of "
                                     "export_variants as a standard HF checkpoint with a model "
                                     "card, under <export_dir>/<Country>/<variant>/seed<k>/ "
                                     "(None = no export)")
    export_variants: list[str] = setting(doc="the variants run.export_dir exports",
                                         factory=lambda: ["scpo_fw", "scpo_fw_tuned"])


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def update(self, overrides: dict[str, dict[str, Any]], where: str = "overrides",
               text: bool = False) -> Config:
        """Apply {section: {key: value}}; unknown sections or keys raise with the valid names.

        Each value must fit its field's type (``coerce``); with ``text`` the values are
        command-line strings, converted by that type ("false" is False, not a true string).
        """
        sections = [f.name for f in dataclasses.fields(self)]
        self._switch_tier(overrides, where, text)
        for section, values in overrides.items():
            if section not in sections:  # also a method's name, e.g. "to_dict"
                raise KeyError(f"{where}: unknown section [{section}]; valid: {sections}")
            if not isinstance(values, dict):
                raise TypeError(f"{where}: section [{section}] needs key = value pairs, got "
                                f"{values!r}; e.g. {{'{section}': {{'key': value}}}}")
            obj = getattr(self, section)
            names = {f.name for f in dataclasses.fields(obj)}
            hints = typing.get_type_hints(type(obj))
            for key, value in values.items():
                if key not in names:
                    raise KeyError(f"{where}: unknown key {section}.{key}; valid: {sorted(names)}")
                setattr(obj, key, coerce(hints[key], value, f"{where}: {section}.{key}", text))
                if (section, key) == ("run", "seeds"):
                    check_seeds(obj.seeds, f"{where}: run.seeds")
        return self


    def _switch_tier(self, overrides: dict[str, Any], where: str, text: bool) -> None:
        """A change of model.backend first sets the new tier's ``TIER_TRAIN`` values, except
        the [train] keys this same update sets."""
        model, train = overrides.get("model"), overrides.get("train")
        if not isinstance(model, dict) or "backend" not in model:
            return
        backend = coerce(str, model["backend"], f"{where}: model.backend", text)
        if backend == self.model.backend:
            return
        given = train if isinstance(train, dict) else {}
        for key, value in TIER_TRAIN.get(backend, {}).items():
            if key not in given:
                setattr(self.train, key, value)


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_NONE = {"none", "null"}


def coerce(kind: Any, value: Any, name: str, text: bool = False) -> Any:
    """``value`` as the field type ``kind`` (bool, int, float, str, X | None, list[X],
    dict[str, X]); from text (``--set``) it is parsed by that type, never evaluated. A value
    that does not fit raises a one-line error naming the field, the type and the value."""
    given = value

    def bad() -> ValueError:
        shown = (str(kind) if typing.get_origin(kind) else getattr(kind, "__name__", str(kind)))
        return ValueError(f"{name} expects {shown.replace('typing.', '')}, got {given!r}")

    args = typing.get_args(kind)
    if type(None) in args:  # X | None
        if value is None or (text and str(value).strip().lower() in _NONE):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return coerce(inner, value, name, text)
    origin = typing.get_origin(kind)
    if origin in (list, dict):
        if text and isinstance(value, str):  # a list or dict given as such is not text
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                if origin is dict:
                    raise bad() from None
                value = [v.strip() for v in str(value).split(",") if v.strip()]
        if origin is list and isinstance(value, list | tuple):
            return [coerce(args[0], v, f"{name}[{i}]", text and isinstance(v, str))
                    for i, v in enumerate(value)]
        if origin is dict and isinstance(value, dict):
            return {coerce(args[0], k, name, False): coerce(args[1], v, f"{name}[{k!r}]",
                                                             text and isinstance(v, str))
                    for k, v in value.items()}
        raise bad()
    if kind is bool:
        if isinstance(value, bool):
            return value
        if text and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise bad()
    if kind is int or kind is float:
        if isinstance(value, str) and text:
            try:
                value = ast.literal_eval(value.strip())
            except (ValueError, SyntaxError):
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise bad()
        if kind is int:
            if not float(value).is_integer():
                raise bad()
            return int(value)
        return float(value)
    if kind is str:
        if text and isinstance(value, str):
            try:  # a quoted literal, e.g. --set model.global_model='"a b"'
                parsed = ast.literal_eval(value)
                return parsed if isinstance(parsed, str) else value
            except (ValueError, SyntaxError):
                return value
        if isinstance(value, str):
            return value
        raise bad()
    return value


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def preset_path(name: str) -> Path:
    """The file of preset ``name``: ``presets/<name>.toml``, or ``name`` itself if a .toml path."""
    path = Path(name) if name.endswith(".toml") else PRESET_DIR / f"{name}.toml"
    if not path.exists():
        raise FileNotFoundError(f"no preset {name!r}; available: {list_presets()}")
    return path


def load_preset(name: str) -> Config:
    """The defaults overridden by ``presets/<name>.toml`` (or a path to a .toml file)."""
    path = preset_path(name)
    with open(path, "rb") as f:
        overrides = tomllib.load(f)
    return Config().update(overrides, where=str(path))


# The settings a run is most often given by name: the ``scpo`` command's flags (``--data-dir``)
# and the notebooks' papermill parameters (``data_dir = ""``), each -> its config field.
PARAMS: dict[str, tuple[str, str]] = {
    "dataset": ("data", "dataset"), "data_dir": ("data", "data_dir"),
    "countries": ("run", "countries"), "variants": ("run", "variants"),
    "seeds": ("run", "seeds"), "backend": ("model", "backend"),
    "tau": ("method", "tau"), "beta": ("method", "beta"), "export_dir": ("run", "export_dir"),
}


def _param(kind: Any, value: Any, name: str) -> Any:
    """A parameter as its field's type. A notebook passes text: "Chile,Mexico" and "0,1" are
    lists, "0.7" a number (read, never evaluated); a name or a path stays as written."""
    if typing.get_origin(kind) is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        elif not isinstance(value, list | tuple):
            value = [value]  # papermill hands a single seed as the number it is
    return coerce(kind, value, name, text=str not in (kind, *typing.get_args(kind)))


def parse_sets(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """``--set`` texts, "section.key=value", as {section: {key: text}}."""
    texts: dict[str, dict[str, str]] = {}
    for item in items:
        name, sep, val = item.partition("=")
        section, dot, key = name.partition(".")
        if not sep or not dot:
            raise ValueError(f"--set expects section.key=value, got {item!r}; e.g. "
                             "--set train.lr=3e-4")
        texts.setdefault(section, {})[key] = val
    return texts


def from_params(preset: str | None = None, *, backbone: str | None = None,
                sets: Iterable[str] = (), where: str = "parameters", **params: Any) -> Config:
    """A run's config from a preset (None: the defaults) and its parameters: what the ``scpo``
    command and every notebook build, one way.

    ``params``: any of ``PARAMS`` by name, typed or as a notebook's text ("0,1,2"); None or ""
    keeps the preset's value. ``backbone``: the tier's model, ``model.global_model`` on the hf
    tier and ``model.encoder`` on the others (after ``backend``). ``sets``: "section.key=value"
    texts for any other field, applied last (the command line's ``--set``).
    """
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise TypeError(f"from_params: unknown parameter(s) {unknown}; valid: {sorted(PARAMS)}, "
                        "or any field as sets=['section.key=value']")
    cfg = load_preset(preset) if preset else Config()
    over: dict[str, dict[str, Any]] = {}
    for name, value in params.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        section, key = PARAMS[name]
        kind = typing.get_type_hints(type(getattr(cfg, section)))[key]
        over.setdefault(section, {})[key] = _param(kind, value, f"{where}: {name}")
    cfg.update(over, where=where)
    if backbone:
        key = "global_model" if cfg.model.backend == "hf" else "encoder"
        cfg.update({"model": {key: backbone}}, where=where)
    return cfg.update(parse_sets(sets), where="--set", text=True)


def help_text(section: str, key: str) -> str:
    """A field's one description, e.g. ``help_text("method", "tau")``."""
    fields = {f.name: f for f in dataclasses.fields(getattr(Config(), section))}
    return fields[key].metadata["help"]


def describe(cfg: Config) -> str:
    """Every field with its value and description, section by section (``scpo config``)."""
    lines = []
    for sec in dataclasses.fields(cfg):
        obj = getattr(cfg, sec.name)
        lines.append(f"[{sec.name}]  # {type(obj).__doc__}")
        for f in dataclasses.fields(obj):
            lines.append(f"{f.name} = {getattr(obj, f.name)!r}  # {f.metadata['help']}")
        lines.append("")
    return "\n".join(lines)
