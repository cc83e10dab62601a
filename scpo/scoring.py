"""The global RM: obtain it once, score each distinct (prompt, response) once, share the scores.

Scores are cached on disk under the global RM's fingerprint and each text's hash, so every
variant, country, seed and notebook reuses them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from scpo.cache import ArrayCache, cached_compute
from scpo.config import Config, cache_dir
from scpo.data import global_pool
from scpo.models.base import RewardModel
from scpo.pairs import PairData, distinct_texts, text_key

# The code that trains a global RM on the global pool, per tier: a change to any of it trains
# the cached global RM again (its filter, weights and pure-minority pairs follow), as the pair
# table's cache keys on the loader's code (``scpo.data.LOADER_SOURCES``).
TRAINER_SOURCES = {
    "embedding": ("data.py", "method.py", "models/embedding.py"),
    "partial": ("data.py", "method.py", "models/embedding.py", "models/hf.py",
                "models/modes.py", "models/partial.py"),
}
PACKAGE = Path(__file__).parent


def trainer_code(backend: str) -> str:
    """sha256 of the source files that train ``backend``'s global RM (``TRAINER_SOURCES``)."""
    h = hashlib.sha256()
    for name in TRAINER_SOURCES.get(backend, ()):
        h.update(name.encode() + b"\0" + (PACKAGE / name).read_bytes())
    return h.hexdigest()[:16]


def _pool_hash(data: PairData) -> str:
    """The global pool's pairs, in order: what the global RM trains on, whatever setting chose
    them (GlobalOpinionQA's min_share_gap, a filter, a split)."""
    pool = global_pool(data)
    cols = [c for c in ("prompt", "chosen", "rejected", "messages") if c in pool.columns]
    rows = pd.util.hash_pandas_object(pool[cols].astype(str), index=False).to_numpy()
    return hashlib.sha256(rows.tobytes()).hexdigest()[:16]


def _global_head_key(data: PairData, cfg: Config, encoder_fp: str) -> str:
    what = {
        "pool": _pool_hash(data),
        "data": data.fingerprint, "source": data.source, "split": [cfg.data.test_frac,
        cfg.data.split_seed, "train-test-split-rows"], "prompt_context": cfg.data.prompt_context,
        "encoder": encoder_fp, "head": cfg.model.head,
        "lr": cfg.train.global_lr, "steps": cfg.train.global_steps,
        "batch": cfg.train.global_batch_size, "wd": cfg.train.weight_decay,
        "code": trainer_code(cfg.model.backend),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def trains_global_rm(cfg: Config) -> bool:
    """Whether the run trains its global RM on the global pool (else it is a given model)."""
    return cfg.model.backend == "embedding" or (cfg.model.backend == "partial"
                                                and not cfg.model.global_model)


def _without(key: str, without: Collection[str]) -> str:
    """A cache key for the global RM trained on the pool without ``without`` (if any)."""
    if not without:
        return key
    return hashlib.sha256(f"{key}|without|{sorted(without)}".encode()).hexdigest()[:16]


def get_global_rm(data: PairData, cfg: Config, root: Path | None = None,
                  without: Collection[str] = ()) -> RewardModel:
    """The global RM r_glo of the run (``without``: trained on the pool without those
    countries, see ``scpo.data.global_pool``; a given global RM is the same either way).

    ``hf`` backend: the given pretrained reward model (the paper's OpenAssistant or Tulu RM).
    ``embedding`` backend: a head trained on the global pool (``scpo.data.global_pool``), saved
    under the cache and reused by every later run with the same data and settings.
    ``partial`` backend: ``model.global_model`` if given, else the encoder's top layers and a
    score head trained on the global pool the same way, and cached the same way.
    """
    m = cfg.model
    if m.backend == "partial":
        return _global_partial(data, cfg, root, without)
    if m.backend == "hf":
        from scpo.models.device import start_process_group
        from scpo.models.hf import HFRewardModel

        rm = HFRewardModel.from_config(m)
        start_process_group(rm.device)  # under a launch, the run's scoring is split over the
        rm.split_scoring = True  # ranks (each scores the same texts at the same time)
        return rm
    if m.backend != "embedding":
        raise ValueError(f"unknown model.backend {m.backend!r}; choose 'embedding', 'partial' "
                         "or 'hf'")
    from scpo.models.embedding import EmbeddingRM, Encoder, train_global_rm

    encoder = Encoder(m.encoder, max_length=m.encoder_max_length)
    path = (root or cache_dir()) / "global_heads" / _without(
        _global_head_key(data, cfg, encoder.fingerprint()), without)
    if (path / "head.safetensors").exists():
        return EmbeddingRM.load(path, encoder=encoder)
    rm = train_global_rm(encoder, global_pool(data, without), cfg.train, cfg.method, seed=0,
                         head=m.head)
    rm.save(path)
    return rm


def _global_partial(data: PairData, cfg: Config, root: Path | None,
                    without: Collection[str] = ()) -> RewardModel:
    from scpo.models.embedding import Encoder
    from scpo.models.export import META_FILE
    from scpo.models.partial import PartialRM, train_global_partial

    m = cfg.model
    opts = {"train_layers": m.train_layers, "max_length": m.max_length, "dropout": m.dropout,
            "bf16": m.bf16, "chat_template": m.chat_template, "cache_root": root}
    if m.global_model:
        rm = PartialRM.from_pretrained(m.global_model, revision=m.revision,
                                       trust_remote_code=m.trust_remote_code, **opts)
        rm.check_split()
        return rm
    backbone = Encoder(m.encoder)
    what = {"head": _global_head_key(data, cfg, backbone.fingerprint()),
            **{k: v for k, v in opts.items() if k != "cache_root"}}
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    path = (root or cache_dir()) / "global_partial" / _without(key, without)
    if (path / META_FILE).exists():
        return PartialRM.load(path, cache_root=root)
    rm = train_global_partial(str(backbone.path), global_pool(data, without), cfg.train, cfg.method,
                              seed=0, **opts)
    rm.save(path)
    return rm


def score_texts(rm: RewardModel, texts: pd.DataFrame, root: Path | None = None) -> np.ndarray:
    """r(x, y) for each row of ``texts`` (columns prompt, response), through the score cache."""
    keys = [text_key(p, r) for p, r in zip(texts["prompt"], texts["response"])]
    cache = ArrayCache((root or cache_dir()) / "scores", rm.fingerprint())

    def compute(idx: list[int]) -> np.ndarray:
        sub = texts.iloc[idx]
        return rm.score(sub["prompt"].tolist(), sub["response"].tolist()).astype(np.float64)

    return np.asarray(cached_compute(cache, keys, compute), dtype=np.float64).reshape(-1)


def add_global_scores(pairs: pd.DataFrame, rm: RewardModel,
                      root: Path | None = None) -> pd.DataFrame:
    """Columns ``rg_chosen`` and ``rg_rejected``: r_glo of y+ and y-, each text scored once."""
    texts = distinct_texts(pairs)
    scores = score_texts(rm, texts, root)
    lookup = dict(zip(zip(texts["prompt"], texts["response"]), scores))
    out = pairs.copy()
    out["rg_chosen"] = [lookup[k] for k in zip(pairs["prompt"], pairs["chosen"])]
    out["rg_rejected"] = [lookup[k] for k in zip(pairs["prompt"], pairs["rejected"])]
    return out
