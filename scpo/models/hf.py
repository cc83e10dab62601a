"""The paper's tier: a Hugging Face sequence-classification reward model, fine-tuned in full or
with LoRA, on a GPU when there is one.

How inputs are built, scored and trained in the ``fixed`` and ``released`` modes is
``scpo.models.modes``; which device and rank, ``scpo.models.device``; the training loop,
``scpo.models.hf_train``; checkpoints and model cards, ``scpo.models.export``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from scpo.config import MethodConfig, ModelConfig, TrainConfig
from scpo.models.base import RewardModel, TrainHistory
from scpo.models.device import (
    full_state_dict,
    is_sharded,
    model_device,
    pick_device,
    scoring_shards,
)
from scpo.models.export import ADAPTER_FILE, META_FILE, export_model, save_checkpoint
from scpo.models.modes import (
    autocast_enabled,
    encode_for_scoring,
    get_mode,
    scoring_context,
)

LORA_ALPHA_PER_RANK = 2  # lora_alpha = 2 r, the common choice; the paper gives none (spec §8.4)


def local_file(name_or_path: str, filename: str, revision: str | None) -> Path | None:
    """A file of a model that is already on this machine: in its directory, or in the hub
    cache (no request is made). None if it is not there, or the name is neither."""
    if Path(name_or_path).is_dir():
        path = Path(name_or_path) / filename
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name_or_path, filename, revision=revision)
    except ValueError:  # not a valid hub id (e.g. a directory that does not exist)
        return None
    return Path(found) if isinstance(found, str) else None


def loaded_commit(name_or_path: str, revision: str | None) -> str | None:
    """The hub commit (40 hex digits) a model's files were read from: what a revision such as
    "main" resolved to, recorded in run.json so a rerun can pin it. None for a directory, or a
    model outside the default hub cache. It runs after loading, so the files are there."""
    if Path(name_or_path).exists():
        return None
    config = local_file(name_or_path, "config.json", revision)
    sha = config.parent.name if config is not None else ""
    return sha if len(sha) == 40 and all(c in "0123456789abcdef" for c in sha) else None


def pickle_only(name_or_path: str, revision: str | None) -> bool:
    """True if the model's weights are there only as ``pytorch_model.bin`` (a directory's, or
    the hub cache's): the reason a safetensors-only load failed, worth its own message."""
    return (local_file(name_or_path, "pytorch_model.bin", revision) is not None
            and local_file(name_or_path, "model.safetensors", revision) is None)


def restore_file_normalizer(tokenizer: Any, path: Path | None) -> bool:
    """Put back the text normaliser the model's ``tokenizer.json`` carries; True if it differed.

    transformers 5 rebuilds some tokenizers from their class instead of the file: DeBERTa-v2/v3
    gets NFC and whitespace folding only, dropping the sentencepiece ``nmt_nfkc`` map of the file
    the model was trained with (ellipses, ligatures, full-width forms, non-breaking spaces), so
    such texts would reach the model as token ids it never saw. The file is the truth."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if path is None or backend is None:
        return False
    try:
        saved = json.loads(path.read_text(encoding="utf-8")).get("normalizer")
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable tokenizer.json ({e}); download the model's "
                         "tokenizer files again") from e
    if saved == json.loads(backend.to_str()).get("normalizer"):
        return False
    from tokenizers import Tokenizer

    backend.normalizer = Tokenizer.from_file(str(path)).normalizer
    return True


def tokenizer_id(tokenizer: Any) -> str:
    """sha256 of the whole tokenizer pipeline (normaliser, pre-tokenizer, vocabulary, special
    tokens) and its chat template, part of a model's fingerprint: the same weights fed other
    token ids give other scores."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h = hashlib.sha256((backend.to_str() if backend is not None else "").encode())
    h.update(str(getattr(tokenizer, "chat_template", None)).encode())
    return h.hexdigest()


def weights_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes (about 1 s per GB on a CPU)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def ensure_pad_token(tokenizer: Any, model: torch.nn.Module) -> None:
    """Decoder RMs often ship without a pad token; borrow unk or eos and tell the model.

    With eos as pad, a trailing eos counts as padding when the model looks for the last token,
    the same way in training and scoring.
    """
    if tokenizer.pad_token is None:
        borrowed = tokenizer.unk_token or tokenizer.eos_token
        if borrowed is None:
            raise ValueError("the tokenizer has no pad, unk or eos token to pad with; add one "
                             "(tokenizer.add_special_tokens({'pad_token': ...})) and resize.")
        tokenizer.pad_token = borrowed
    model.config.pad_token_id = tokenizer.pad_token_id


def add_lora(model: torch.nn.Module, r: int) -> torch.nn.Module:
    """LoRA adapters on every linear layer; the score head stays fully trainable (SEQ_CLS).

    Trainable weights are kept in fp32 even over a bf16 base: a 1e-5 step on a bf16 weight of
    size 0.01 is below bf16's resolution and would be rounded away.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    cfg = LoraConfig(task_type=TaskType.SEQ_CLS, r=int(r), lora_alpha=LORA_ALPHA_PER_RANK * r,
                     lora_dropout=0.0, target_modules="all-linear")
    model = get_peft_model(model, cfg)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return model


def disable_dropout(model: torch.nn.Module) -> int:
    """Every dropout probability set to 0 (``nn.Dropout`` modules and the float
    ``*dropout`` attributes attention layers read); returns how many were on.

    What TRL's ``disable_dropout`` does for reward models. Besides removing noise from
    r(x, y+) - r(x, y-), it lets attention use its fused kernel on a CPU, where
    scaled_dot_product_attention with dropout falls back to materialising the attention
    probabilities (measured in ``benchmarks/bench_trl.py``).
    """
    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            n += module.p > 0
            module.p = 0.0
        for name, value in list(vars(module).items()):
            if name.endswith("dropout") and isinstance(value, float):
                n += value > 0
                setattr(module, name, 0.0)
    return n


HEAD_NAMES = ("classifier", "score")  # the score head of AutoModelForSequenceClassification


def _fp32_output(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> Any:
    """Forward hook: the head's output recomputed in fp32 when autocast ran it in bf16."""
    if output.dtype == torch.float32:
        return None
    x = inputs[0]
    with torch.autocast(device_type=x.device.type, enabled=False):
        bias = None if module.bias is None else module.bias.float()
        return torch.nn.functional.linear(x.float(), module.weight.float(), bias)


def fp32_score_head(model: torch.nn.Module) -> int:
    """Run the score head in fp32 under bf16 autocast (returns how many heads were hooked).

    Autocast would run the last linear layer in bf16, rounding every reward to ~3 significant
    digits: the global scores that set the filter and the weights get coarse, and near-equal
    rewards become ties, which count as wrong. The hook leaves the weights and the checkpoint
    as they are (LoRA's trainable copy of the head, under peft, is hooked too).
    """
    n = 0
    for name, module in model.named_modules():
        parts = name.split(".")
        if (isinstance(module, torch.nn.Linear) and any(h in parts for h in HEAD_NAMES)
                and not getattr(module, "_scpo_fp32_head", False)):
            module.register_forward_hook(_fp32_output)
            module._scpo_fp32_head = True
            n += 1
    return n


@contextlib.contextmanager
def seeded_init(seed: int = 0) -> Iterator[None]:
    """New weights (a fresh score head, LoRA adapters) drawn from a fixed seed, without
    touching the caller's random state: loading the same model twice gives the same model."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def tokenizer_pipeline(tok: Any) -> dict[str, Any]:
    """What turns text into token ids, to compare two tokenizers. Not ``tokenizer_id``: that
    also hashes the truncation and padding state, which the first ``score`` call changes (a
    used and a fresh copy of one tokenizer hash differently)."""
    backend = getattr(tok, "backend_tokenizer", None)
    state = json.loads(backend.to_str()) if backend is not None else {"class": type(tok).__name__}
    return {**{k: v for k, v in state.items() if k not in ("truncation", "padding")},
            "chat_template": getattr(tok, "chat_template", None)}


class HFRewardModel(RewardModel):
    """r_theta(x, y) = the scalar logit of an ``AutoModelForSequenceClassification``."""

    score_batch_size = 16  # texts per scoring forward pass
    can_export = True

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, name: str,
                 revision: str | None = None, max_length: int = 512, mode: str = "fixed",
                 lora_r: int = 0, bf16: bool = True, gradient_checkpointing: bool = False,
                 chat_template: bool = False, dropout: bool = True) -> None:
        self.mode = get_mode(mode)
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if lora_r < 0:
            raise ValueError(f"lora_r must be >= 0 (0 = full fine-tuning), got {lora_r}")
        if self.mode.sep_text and chat_template:
            raise ValueError("released mode feeds no chat template (spec §8.3); set "
                             "model.chat_template = false or mode 'fixed'.")
        self.name, self.revision = str(name), revision
        self.max_length, self.lora_r, self.bf16 = int(max_length), int(lora_r), bool(bf16)
        self.gradient_checkpointing, self.chat_template = gradient_checkpointing, chat_template
        self.dropout = bool(dropout)
        if not self.dropout:
            disable_dropout(model)
        self.tokenizer = tokenizer
        ensure_pad_token(tokenizer, model)
        forward = inspect.signature(model.forward).parameters
        self.input_names = [k for k in tokenizer.model_input_names if k in forward]
        if self.lora_r and not hasattr(model, "peft_config"):
            with seeded_init():
                model = add_lora(model, self.lora_r)
        fp32_score_head(model)
        self.device = pick_device()
        self.model = model.to(self.device)
        self._fingerprint: str | None = None
        # every rank scores the same texts together (the run's scoring): split them over the
        # ranks of a launch; copies (the minority models) inherit it
        self.split_scoring = False
        self.commit: str | None = None  # the hub commit the weights came from (from_pretrained)
        self.normalizer_restored = False  # tokenizer.json's normaliser put back (from_pretrained)

    # ---- construction ----

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, max_length: int = 512, mode: str = "fixed",
                        lora_r: int = 0, bf16: bool = True, gradient_checkpointing: bool = False,
                        chat_template: bool = False, trust_remote_code: bool = False,
                        revision: str | None = None, dropout: bool = True,
                        **extra: Any) -> HFRewardModel:
        """A reward model from the hub or a directory (safetensors weights only); ``extra``
        goes to the constructor (a subclass's own options)."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        kw = {"revision": revision, "trust_remote_code": trust_remote_code}
        # LoRA freezes the base, so bf16 base weights are safe and halve the memory (8B: 16 GB);
        # full fine-tuning keeps fp32 master weights and uses autocast.
        half = lora_r > 0 and autocast_enabled(pick_device(), bf16, mode)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kw)
            restored = restore_file_normalizer(
                tokenizer, local_file(name_or_path, "tokenizer.json", revision))
            with seeded_init():
                model = AutoModelForSequenceClassification.from_pretrained(
                    name_or_path, num_labels=1, use_safetensors=True,
                    dtype=torch.bfloat16 if half else torch.float32, **kw)
        except OSError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if pickle_only(name_or_path, revision):
                raise OSError(
                    f"reward model {name_or_path!r} (revision {revision or 'main'}) has its "
                    "weights only as pytorch_model.bin, a pickle, and scpo loads safetensors "
                    "only. On the hub, a safetensors conversion is often a pull request: pass "
                    "its revision (--set model.revision=refs/pr/N) and download it once online; "
                    "for your own directory, save the model with save_pretrained (which writes "
                    "model.safetensors)") from e
            raise OSError(
                f"could not load reward model {name_or_path!r} (revision {revision or 'main'}) "
                f"from the hub or disk ({first[:200]}); pass a local directory instead "
                "(model.global_model, or model.minority_dir for given country models), or "
                "check the id and the network (HF_HUB_OFFLINE must be unset to download)") from e
        rm = cls(model, tokenizer, name=name_or_path, revision=revision, max_length=max_length,
                 mode=mode, lora_r=lora_r, bf16=bf16,
                 gradient_checkpointing=gradient_checkpointing, chat_template=chat_template,
                 dropout=dropout, **extra)
        rm.commit = loaded_commit(name_or_path, revision)
        rm.normalizer_restored = restored
        return rm

    @classmethod
    def from_model(cls, model: torch.nn.Module, tokenizer: Any, *, name: str = "in-memory",
                   **options: Any) -> HFRewardModel:
        """Wrap an already-built model (tests use tiny models built from a config)."""
        return cls(model, tokenizer, name=name, **options)

    @classmethod
    def from_config(cls, m: ModelConfig) -> HFRewardModel:
        """The global RM named by ``model.global_model`` with the config's options."""
        if not m.global_model:
            raise ValueError("model.global_model must name the global RM (hub id or directory), "
                             "e.g. OpenAssistant/reward-model-deberta-v3-base")
        return cls.from_pretrained(
            m.global_model, max_length=m.max_length, mode=m.mode, lora_r=m.lora_r, bf16=m.bf16,
            gradient_checkpointing=m.gradient_checkpointing,
            chat_template=getattr(m, "chat_template", False),
            trust_remote_code=m.trust_remote_code, revision=getattr(m, "revision", None),
            dropout=m.dropout)

    def options(self) -> dict[str, Any]:
        """Everything besides the weights that decides the scores (and how training runs)."""
        return {"name": self.name, "revision": self.revision, "max_length": self.max_length,
                "mode": self.mode.name, "lora_r": self.lora_r, "bf16": self.bf16,
                "gradient_checkpointing": self.gradient_checkpointing,
                "chat_template": self.chat_template, "dropout": self.dropout}

    def card_options(self) -> dict[str, Any]:
        """The options a model card records: how the model reads its inputs."""
        return {"mode": self.mode.name, "max_length": self.max_length, "lora_r": self.lora_r,
                "chat_template": self.chat_template}

    # ---- the RewardModel interface ----

    def fingerprint(self) -> str:
        """Options + the tokenizer + sha256 of every weight, cached until fit() changes them.

        Hashing reads every byte once, ~1 s per GB here: ~1 s for DeBERTa-v3-base in fp32,
        ~16 s for Tulu 8B in bf16, once per trained model.
        """
        if self._fingerprint is None:
            opts = json.dumps(self.options(), sort_keys=True)
            digest = hashlib.sha256(opts.encode())
            digest.update(tokenizer_id(self.tokenizer).encode())
            digest.update(weights_hash(full_state_dict(self.model)).encode())
            box = [digest.hexdigest()[:20]]
            if is_sharded(self.model):  # only rank 0 saw the weights: share its hash
                torch.distributed.broadcast_object_list(box, src=0)
            self._fingerprint = f"{self.name}@{self.revision or 'main'}:{box[0]}"
        return self._fingerprint

    def _inputs(self, feature: dict[str, list[int]]) -> dict[str, list[int]]:
        return {k: feature[k] for k in self.input_names}

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """r(x, y) per text, float64; batches sorted by length, padded per batch."""
        if len(prompts) != len(responses):
            raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
        feats = [self._inputs(f) for f in encode_for_scoring(
            self.tokenizer, list(prompts), list(responses), mode=self.mode,
            max_length=self.max_length, chat_template=self.chat_template)]
        order = np.argsort([-len(f["input_ids"]) for f in feats], kind="stable")
        world, rank = scoring_shards(self.model, self.split_scoring)
        mine = order[rank::world]  # every rank gets long and short texts alike
        out = np.full(len(feats), np.nan)
        amp = autocast_enabled(self.device, self.bf16, self.mode)
        with scoring_context(self.model, self.mode), torch.autocast(
                self.device.type, dtype=torch.bfloat16, enabled=amp):
            for start in range(0, len(mine), self.score_batch_size):
                idx = mine[start:start + self.score_batch_size]
                batch = self.tokenizer.pad([feats[i] for i in idx], return_tensors="pt")
                logits = self.model(**batch.to(model_device(self.model))).logits
                out[idx] = logits[:, 0].detach().float().cpu().numpy()
        if world > 1:
            parts: list[Any] = [None] * world
            torch.distributed.all_gather_object(parts, (mine, out[mine]))
            for idx, values in parts:
                out[idx] = values
        return out

    def fit(self, pairs: pd.DataFrame, weights: np.ndarray, train: TrainConfig,
            method: MethodConfig, seed: int,
            eval_pairs: pd.DataFrame | None = None) -> TrainHistory:
        """Weighted Bradley-Terry fine-tuning with the HF Trainer (``scpo.models.hf_train``)."""
        from scpo.evaluate import accuracy, pairwise_correct
        from scpo.models.hf_train import train_pairs  # the Trainer: seconds to import, when used

        history = train_pairs(self, pairs, weights, train, method, seed)
        self.weights_changed()
        if eval_pairs is not None and len(eval_pairs) and history:
            correct, _ = pairwise_correct(*self.score_pairs(eval_pairs))
            history[-1]["val_accuracy"] = accuracy(correct, "val")
        return history

    def copy(self) -> HFRewardModel:
        """Independent trainable weights; the frozen ones (a LoRA base) and the tokenizer are
        shared, as training never modifies them: a LoRA copy of an 8B RM costs its adapters
        and score head, not another 16 GB."""
        new = copy.copy(self)
        frozen = {id(p): p for p in self.model.parameters() if not p.requires_grad}
        new.model = copy.deepcopy(self.model, memo=frozen).to(self.device)
        return new

    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def dropout_at_scoring(self) -> bool:
        return self.mode.dropout_at_scoring

    @property
    def reads_chat(self) -> bool:
        return bool(self.chat_template)

    def weights_changed(self) -> None:
        self._fingerprint = None

    def torch_module(self) -> torch.nn.Module:
        return self.model

    def check_mixable(self, other: RewardModel) -> None:
        """Full weights (no LoRA factors), the same options (but where the weights came from)
        and the same tokenizer: the same weights fed other inputs compute something else."""
        assert isinstance(other, HFRewardModel)
        for rm in (self, other):
            if rm.lora_r or hasattr(rm.model, "peft_config"):
                raise ValueError(f"{rm.name!r} is a LoRA (peft) model: mixing the factors A and B "
                                 "does not mix their product B A, so this would not be the model "
                                 "soup. Merge the adapters into full weights first (export, then "
                                 "HFRewardModel.from_pretrained), or mix the scores "
                                 "(steered_reward)")
        skip = ("name", "revision")  # where the weights came from, not what they compute
        a = {k: v for k, v in self.options().items() if k not in skip}
        b = {k: v for k, v in other.options().items() if k not in skip}
        if a != b:
            diff = {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys())
                    if a.get(k) != b.get(k)}
            raise ValueError(f"the models score differently built inputs, options (global, "
                             f"country) {diff}; load the country model with the global RM's "
                             "options")
        if tokenizer_pipeline(self.tokenizer) != tokenizer_pipeline(other.tokenizer):
            raise ValueError("the models' tokenizers differ (the same weights would read other "
                             "token ids); load the country model with the global RM's tokenizer")

    def offload(self) -> None:
        """Full fine-tuning on a GPU: the global RM's weights wait in host memory, so the GPU
        holds only the model in training (each copy goes to the GPU as it is made). A LoRA
        base stays: every copy shares it. Scoring an offloaded model runs where its weights
        are."""
        if self.device.type != "cpu" and not any(not p.requires_grad
                                                 for p in self.model.parameters()):
            self.model.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def save(self, path: str | Path) -> None:
        """scpo's own save, read back by ``load``: tokenizer + ``scpo_hf.json`` + a full HF
        checkpoint (safetensors), or, with LoRA, the trained adapters and score head alone
        (megabytes instead of the base), loaded back over the global RM bit for bit."""
        save_checkpoint(self, Path(path), merge=False)

    @classmethod
    def load(cls, path: str | Path) -> HFRewardModel:
        """Read what ``save`` (or ``export``) wrote, with the saved options (mode, max_length,
        LoRA rank, ...). Saved adapters go back onto the global RM named in the file, so it
        must be reachable as when training (hub cache or directory)."""
        from safetensors.torch import load_file

        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} not found: not a checkpoint written by "
                                    "HFRewardModel.save; use from_pretrained for plain HF dirs.")
        meta = json.loads(meta_path.read_text())
        adapters = meta.get("weights") == "adapters"
        opts = {"max_length": meta["max_length"], "mode": meta["mode"], "bf16": meta["bf16"],
                "gradient_checkpointing": meta["gradient_checkpointing"],
                "chat_template": meta["chat_template"], "dropout": meta.get("dropout", True)}
        if adapters:  # the global RM with fresh adapters, then the trained ones
            rm = cls.from_pretrained(meta["name"], revision=meta["revision"],
                                     lora_r=meta["lora_r"], **opts)
            file = path / ADAPTER_FILE
            try:
                state = load_file(file)
            except Exception as e:  # safetensors' own error types vary by version
                raise ValueError(f"{file}: not a readable safetensors file ({e}); save the "
                                 "model again") from e
            trainable = {k for k, p in rm.model.named_parameters() if p.requires_grad}
            extra, absent = sorted(set(state) - trainable), sorted(trainable - set(state))
            if extra or absent:  # absent adapters would silently stay fresh: the global RM
                raise ValueError(
                    f"{file}: {len(extra)} weights the model lacks (e.g. {extra[:1]}) and "
                    f"{len(absent)} it needs missing (e.g. {absent[:1]}); was it saved from "
                    f"another global RM or LoRA rank than {meta['name']!r}, r={meta['lora_r']}?")
            rm.model.load_state_dict(state, strict=False)
        else:  # full weights (a merged LoRA model is one): load them as they are
            rm = cls.from_pretrained(str(path), **opts)
            rm.lora_r = meta["lora_r"]
        rm.name, rm.revision = meta["name"], meta["revision"]
        return rm

    def export(self, path: str | Path, card: dict[str, Any], overwrite: bool = False) -> Path:
        """A checkpoint anyone can load with AutoModelForSequenceClassification, plus a
        README.md model card (global RM, tau, beta, pairs kept, seeds, test accuracies);
        ``overwrite``: into a user's non-empty folder (``scpo.outdir``)."""
        return export_model(self, Path(path), card, overwrite=overwrite)
