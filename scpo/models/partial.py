"""The middle rung: a Hugging Face reward model whose top k transformer layers (with the pooler
and the score head) are fine-tuned, its bottom layers frozen and run once per text.

The embeddings and the bottom L - k layers never change, so the hidden states that enter layer
L - k are computed once per distinct (prompt, response) and cached on disk (``scpo.cache``, one
ragged row [tokens, hidden] per text, keyed like the embeddings). Training and scoring then run
only the top k layers: at k = 1 of MiniLM's 6, about a sixth of a full forward and backward.

The model stays a whole ``AutoModelForSequenceClassification``: the top layers are trained in
place and the frozen ones are the checkpoint's own, so ``save`` and ``export`` write a standard
checkpoint that scores the same without scpo. Texts are encoded as the hf tier's ``fixed`` mode
does (a text pair, truncated to ``max_length``). Architectures whose encoder is
``base_model.embeddings`` + ``base_model.encoder.layer`` (BERT, RoBERTa, MiniLM, ELECTRA, ...) can
be split; ``check_split`` compares the split model with a whole forward pass before any use.

Both halves run in the precision the whole model runs in: under bf16 autocast where
``model.bf16`` and the device allow it (``modes.autocast_enabled``), the bottom layers too, so
the cached states, the scores and an exported checkpoint scored by scpo agree (bf16 and fp32
states are cached apart). With ``model.dropout`` on, only the trained top layers drop out:
the bottom states are computed once, in eval mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from scpo.cache import ArrayCache, cached_compute
from scpo.config import MethodConfig, TrainConfig, cache_dir
from scpo.method import weighted_bt_loss
from scpo.models.base import TrainHistory, check_training_pairs, text_rows
from scpo.models.embedding import _epoch_batches
from scpo.models.hf import HFRewardModel, tokenizer_id, weights_hash
from scpo.models.modes import autocast_enabled, encode_for_scoring
from scpo.pairs import text_key

MAX_GRAD_NORM = 1.0  # as the hf tier's Trainer (its default), so the rungs clip alike


class PassThrough(nn.Module):
    """Stands in for the embedding layer: the cached hidden states come in as inputs_embeds."""

    def forward(self, *args: Any, inputs_embeds: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        return inputs_embeds


def layer_stack(model: nn.Module) -> nn.ModuleList:
    """The encoder's transformer layers, or a clear error for a model that is not split here."""
    base = getattr(model, "base_model", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not hasattr(base, "embeddings"):
        raise ValueError(f"model.backend = 'partial' splits encoders laid out as base_model."
                         f"embeddings + base_model.encoder.layer (BERT, RoBERTa, MiniLM); "
                         f"{type(model).__name__} is not. Use model.backend = 'hf' (full or LoRA "
                         "fine-tuning) for it")
    return layers


@contextlib.contextmanager
def only_layers(model: nn.Module, start: int, stop: int, from_hidden: bool) -> Iterator[None]:
    """Run the model with layers [start, stop) alone; ``from_hidden``: the input is hidden states
    (inputs_embeds) that skip the embedding layer. Restored on exit."""
    base, layers = model.base_model, layer_stack(model)
    embeddings = base.embeddings
    base.encoder.layer = nn.ModuleList(list(layers)[start:stop])
    if from_hidden:
        base.embeddings = PassThrough()
    try:
        yield
    finally:
        base.encoder.layer, base.embeddings = layers, embeddings


def pad_hidden(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [n_i, d] -> zero-padded [b, max n_i, d] and the attention mask [b, max n_i]."""
    lengths = torch.tensor([len(r) for r in rows])
    hidden = nn.utils.rnn.pad_sequence(rows, batch_first=True)
    mask = (torch.arange(hidden.shape[1])[None, :] < lengths[:, None]).long()
    return hidden, mask


class PartialRM(HFRewardModel):
    """An ``HFRewardModel`` whose top ``train_layers`` layers, pooler and head train.

    Copies share the frozen layers and the hidden-state cache; only fixed mode, no LoRA.
    """

    score_batch_size = 64  # texts per scoring batch of the top layers
    progress = False  # a bar over fit's steps (the global RM's long fit sets it)

    def __init__(self, model: nn.Module, tokenizer: Any, *, train_layers: int = 1,
                 cache_root: str | Path | None = None, **options: Any) -> None:
        if options.get("mode", "fixed") != "fixed" or options.get("lora_r", 0):
            raise ValueError("model.backend = 'partial' trains in mode 'fixed' without LoRA (it "
                             f"freezes the bottom layers instead); got mode "
                             f"{options.get('mode')!r}, lora_r {options.get('lora_r')}")
        super().__init__(model, tokenizer, **options)
        n = len(layer_stack(self.model))
        if not 1 <= int(train_layers) <= n:
            raise ValueError(f"model.train_layers must be between 1 and the model's {n} layers, "
                             f"got {train_layers}")
        self.train_layers = int(train_layers)
        self.start = n - self.train_layers  # the first trained layer
        self.model.requires_grad_(True)
        frozen = [self.model.base_model.embeddings, *list(layer_stack(self.model))[:self.start]]
        for module in frozen:
            module.requires_grad_(False)
        self.cache_root = Path(cache_root) if cache_root is not None else None
        self._hidden: ArrayCache | None = None
        self.n_computed = 0  # texts run through the bottom layers (what the cache saves)
        self.history: TrainHistory = []

    def options(self) -> dict[str, Any]:
        return {**super().options(), "backend": "partial", "train_layers": self.train_layers}

    def card_options(self) -> dict[str, Any]:
        """The hf tier's, and how deep the fine-tuning went."""
        return {**super().card_options(), "train_layers": self.train_layers}

    # ---- the frozen bottom, once per text ----

    def bottom_fingerprint(self) -> str:
        """What decides the cached hidden states: the tokenizer, max_length and the weights of
        the embeddings and bottom layers (not the name: a copy or a reload shares the cache)."""
        base = self.model.base_model
        state = {f"embeddings.{k}": v for k, v in base.embeddings.state_dict().items()}
        for i, layer in enumerate(list(layer_stack(self.model))[:self.start]):
            state.update({f"layer{i}.{k}": v for k, v in layer.state_dict().items()})
        amp = autocast_enabled(self.device, self.bf16, self.mode)  # bf16 states differ
        h = hashlib.sha256((f"{self.max_length}|{self.chat_template}|{self.start}"
                            + ("|bf16" if amp else "")).encode())
        h.update(tokenizer_id(self.tokenizer).encode())
        h.update(weights_hash(state).encode())
        return h.hexdigest()[:16]

    @property
    def hidden_cache(self) -> ArrayCache:
        if self._hidden is None:
            root = (self.cache_root or cache_dir()) / "hidden"
            dim = int(self.model.config.hidden_size)
            self._hidden = ArrayCache(root, f"hid-{self.bottom_fingerprint()}", row_shape=(dim,),
                                      ragged=True)
        return self._hidden

    def _run_bottom(self, prompts: list[str], responses: list[str]) -> list[np.ndarray]:
        """Hidden states entering layer ``start``, one [tokens, hidden] float32 row per text."""
        feats = [self._inputs(f) for f in encode_for_scoring(
            self.tokenizer, prompts, responses, mode="fixed", max_length=self.max_length,
            chat_template=self.chat_template)]
        order = np.argsort([-len(f["input_ids"]) for f in feats], kind="stable")
        out: list[np.ndarray] = [np.zeros(0)] * len(feats)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), only_layers(self.model, 0, self.start, False), \
                    self._autocast(), tqdm(
                    total=len(feats), desc=f"layers 1-{self.start}", unit="text",
                    disable=os.environ.get("TQDM_DISABLE") == "1" or len(feats) < 256) as bar:
                for s in range(0, len(order), self.score_batch_size):
                    idx = order[s:s + self.score_batch_size]
                    batch = self.tokenizer.pad([feats[i] for i in idx], return_tensors="pt")
                    batch = batch.to(self.device)
                    hidden = self.model.base_model(**batch).last_hidden_state.float().cpu()
                    lengths = batch["attention_mask"].sum(dim=1).tolist()
                    for j, i in enumerate(idx):
                        out[i] = hidden[j, :lengths[j]].numpy().copy()
                    bar.update(len(idx))
        finally:
            self.model.train(was_training)
        self.n_computed += len(feats)
        return out

    def hidden(self, prompts: list[str], responses: list[str]) -> list[np.ndarray]:
        """The cached bottom hidden states of each text (computed for the misses only)."""
        prompts, responses = list(prompts), list(responses)
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        keys = [text_key(p, r) for p, r in zip(prompts, responses)]
        return cached_compute(self.hidden_cache, keys, lambda idx: self._run_bottom(
            [prompts[i] for i in idx], [responses[i] for i in idx]))

    def _autocast(self) -> torch.autocast:
        """bf16 autocast where the whole model would run under it (``autocast_enabled``),
        for the bottom layers as for the top ones: the split model then computes what the
        whole model (and an exported checkpoint scored as scpo scores it) computes."""
        amp = autocast_enabled(self.device, self.bf16, self.mode)
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp)

    def _top(self, rows: list[torch.Tensor]) -> torch.Tensor:
        """r for each cached row: the top layers, pooler and head on the padded batch."""
        hidden, mask = pad_hidden(rows)
        n = len(layer_stack(self.model))
        with only_layers(self.model, self.start, n, True), self._autocast():
            out = self.model(inputs_embeds=hidden.to(self.device),
                             attention_mask=mask.to(self.device))
        return out.logits[:, 0].float()

    def check_split(self) -> float:
        """Largest |r_split - r_whole| on two short texts; raises if the split model does not
        compute what the whole model computes (an architecture this split does not fit)."""
        prompts, responses = ["How do I greet a neighbour?", "Hi"], ["Say hello.", "Hello there!"]
        rows = [torch.from_numpy(h) for h in self._run_bottom(prompts, responses)]
        self.n_computed -= len(prompts)  # a check, not work the cache saves
        with torch.inference_mode():
            was_training = self.model.training
            self.model.eval()
            split = self._top(rows).cpu().numpy()
            self.model.train(was_training)
        whole = HFRewardModel.score(self, prompts, responses)
        gap = float(np.abs(split - whole).max())
        if not gap <= 1e-4 * max(1.0, float(np.abs(whole).max())):
            raise ValueError(f"{type(self.model).__name__} split at layer {self.start} scores "
                             f"{split} where the whole model scores {whole}; its layers do not "
                             "run on cached hidden states. Use model.backend = 'hf'")
        return gap

    # ---- the RewardModel interface ----

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """r(x, y) per text from the cached bottom states, in eval mode; batches by length."""
        rows = self.hidden(prompts, responses)
        out = np.full(len(rows), np.nan)
        order = np.argsort([-len(r) for r in rows], kind="stable")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                for s in range(0, len(order), self.score_batch_size):
                    idx = order[s:s + self.score_batch_size]
                    r = self._top([torch.from_numpy(rows[i]) for i in idx])
                    out[idx] = r.cpu().numpy()
        finally:
            self.model.train(was_training)
        return out

    def fit(self, pairs: pd.DataFrame, weights: np.ndarray, train: TrainConfig,
            method: MethodConfig, seed: int,
            eval_pairs: pd.DataFrame | None = None) -> TrainHistory:
        """AdamW, linear decay to 0 without warm-up, gradients clipped at norm 1 (as the hf
        tier's Trainer), on the weighted Bradley-Terry loss; y+ and y- in one forward pass.
        Seeded: the batch order and the dropout masks follow ``seed``. Logs about 50 times."""
        from scpo.evaluate import accuracy, pairwise_correct

        w = check_training_pairs(pairs, weights)
        steps, size = int(train.max_steps), int(train.batch_size)
        if steps < 1 or size < 1 or not train.lr >= 0:
            raise ValueError(f"need max_steps >= 1, batch_size >= 1, lr >= 0; got {steps}, "
                             f"{size}, {train.lr}")
        texts, ic, ir = text_rows(pairs)
        rows = [torch.from_numpy(h) for h in self.hidden(texts["prompt"].tolist(),
                                                         texts["response"].tolist())]
        w_t = torch.from_numpy(w).float().to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        history: TrainHistory = []
        every, window = max(1, steps // 50), []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # dropout masks
            gen = torch.Generator().manual_seed(seed)
            opt = torch.optim.AdamW(params, lr=float(train.lr),
                                    weight_decay=float(train.weight_decay))
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / steps)
            batches = _epoch_batches(len(pairs), size, gen)
            self.model.train()
            bar = tqdm(total=steps, unit="step", desc=f"training layers {self.start + 1}-"
                       f"{len(layer_stack(self.model))} ({size} pairs a step)",
                       disable=not self.progress or os.environ.get("TQDM_DISABLE") == "1")
            try:
                for step in range(1, steps + 1):
                    b = next(batches).tolist()
                    r = self._top([rows[ic[i]] for i in b] + [rows[ir[i]] for i in b])
                    loss = weighted_bt_loss(r[:len(b)], r[len(b):], w_t[b],
                                            normalize=method.normalize)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
                    step_lr = sched.get_last_lr()[0]
                    opt.step()
                    sched.step()
                    window.append(loss.item())
                    bar.update(1)
                    if step % every == 0 or step == steps:
                        history.append({"step": step, "loss": float(np.mean(window)),
                                        "lr": step_lr})
                        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
                        window = []
            finally:
                bar.close()
                self.model.eval()
        self.weights_changed()
        if eval_pairs is not None and len(eval_pairs):
            correct, _ = pairwise_correct(*self.score_pairs(eval_pairs))
            history[-1]["val_accuracy"] = accuracy(correct, "val")
        self.history = history
        return history

    @classmethod
    def load(cls, path: str | Path, cache_root: str | Path | None = None) -> PartialRM:
        """Read what ``save`` (or ``export``) wrote: a full checkpoint + its options."""
        from scpo.models.export import META_FILE

        meta_path = Path(path) / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} not found: not a checkpoint written by "
                                    "PartialRM.save")
        meta = json.loads(meta_path.read_text())
        if meta.get("backend") != "partial":
            raise ValueError(f"{meta_path}: saved by the {meta.get('backend', 'hf')} tier, not "
                             "the partial one; load it with HFRewardModel.load")
        rm = cls.from_pretrained(str(path), train_layers=meta["train_layers"],
                                 cache_root=cache_root,
                                 **{k: meta[k] for k in _INIT_OPTIONS if k in meta
                                    and k not in ("mode", "lora_r")})
        rm.name, rm.revision = meta["name"], meta["revision"]
        return rm


# options of HFRewardModel.options() that its constructor takes back
_INIT_OPTIONS = ("max_length", "mode", "lora_r", "bf16", "gradient_checkpointing",
                 "chat_template", "dropout")


def train_global_partial(backbone: str, pairs: pd.DataFrame, train: TrainConfig,
                         method: MethodConfig, *, seed: int = 0, **options: Any) -> PartialRM:
    """The partial tier's r_glo: the backbone as a one-output classifier (a fresh score head
    drawn from a fixed seed), its top layers and head trained with uniform weights on the
    global pool, with the global_* learning rate, steps and batch. ``options``: PartialRM's
    (train_layers, max_length, dropout, ...)."""
    rm = PartialRM.from_pretrained(backbone, **options)
    rm.check_split()
    glob = TrainConfig(lr=train.global_lr, max_steps=train.global_steps,
                       batch_size=train.global_batch_size, weight_decay=train.weight_decay)
    rm.progress = True  # minutes on a CPU: the terminal shows the steps
    try:
        rm.fit(pairs, np.ones(len(pairs)), glob, method, seed)
    finally:
        rm.progress = False
    return rm
