"""Making reward models: what a run starts from, on whichever tier its config names.

    build_global(cfg, data)                  # the run's global RM r_glo (trained ones cached)
    build_conditioned(global_rm, countries)  # one untrained model for every country
    external_model(cfg.model, where, mode)   # a country RM given by model.minority_models
    model_location(country, m.minority_models, m.minority_dir)  # ... and where it is

The tiers (a run's ``model.backend``, the ladder chapter's "rungs"): ``embedding`` trains a head
on frozen sentence embeddings, ``partial`` a transformer's top layers, ``hf`` the whole
transformer (or LoRA adapters). On the first two the global RM is trained on the global pool
(``scpo.data.global_pool``) unless one is given; on ``hf`` it is always given.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from pathlib import Path

import pandas as pd

from scpo.config import Config, ModelConfig, cache_dir
from scpo.data import global_pool
from scpo.models.base import ConditionedRM, RewardModel
from scpo.pairs import PairData

TIERS = ("embedding", "partial", "hf")
EXTERNAL_TIER = "hf"  # country RMs given by model.minority_models are read on this tier
# The code that trains a global RM on the global pool, per tier: a change to any of it trains
# the cached global RM again (its filter, weights and pure-minority pairs follow), as the pair
# table's cache keys on the loader's code (``scpo.data.LOADER_SOURCES``).
TRAINER_SOURCES = {
    "embedding": ("data.py", "method.py", "models/base.py", "models/build.py",
                  "models/embedding.py"),
    "partial": ("data.py", "method.py", "models/base.py", "models/build.py",
                "models/embedding.py", "models/hf.py", "models/modes.py", "models/partial.py"),
}
PACKAGE = Path(__file__).parents[1]


def trainer_code(tier: str) -> str:
    """sha256 of the source files that train ``tier``'s global RM (``TRAINER_SOURCES``)."""
    h = hashlib.sha256()
    for name in TRAINER_SOURCES.get(tier, ()):
        h.update(name.encode() + b"\0" + (PACKAGE / name).read_bytes())
    return h.hexdigest()[:16]


def _pool_hash(data: PairData) -> str:
    """The global pool's pairs, in order: what the global RM trains on, whatever setting chose
    them (GlobalOpinionQA's min_share_gap, a filter, a split)."""
    pool = global_pool(data)
    cols = [c for c in ("prompt", "chosen", "rejected", "messages") if c in pool.columns]
    rows = pd.util.hash_pandas_object(pool[cols].astype(str), index=False).to_numpy()
    return hashlib.sha256(rows.tobytes()).hexdigest()[:16]


def global_head_key(data: PairData, cfg: Config, encoder_fp: str) -> str:
    """The cache key of a global RM trained on ``data``'s pool with ``cfg``'s settings."""
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


def trains_global(m: ModelConfig) -> bool:
    """Whether the run trains its global RM on the global pool (else it is a given model)."""
    return m.backend == "embedding" or (m.backend == "partial" and not m.global_model)


def reads_chat(m: ModelConfig) -> bool:
    """Whether the tier's model reads a conversation as a chat list (a chat template), not as
    one joined text: what ``data.prompt_context = "history"`` hands it."""
    return m.backend in ("hf", "partial") and m.chat_template


def _without(key: str, without: Collection[str]) -> str:
    """A cache key for the global RM trained on the pool without ``without`` (if any)."""
    if not without:
        return key
    return hashlib.sha256(f"{key}|without|{sorted(without)}".encode()).hexdigest()[:16]


def build_global(cfg: Config, data: PairData, root: Path | None = None,
                 without: Collection[str] = ()) -> RewardModel:
    """The global RM r_glo of the run (``without``: trained on the pool without those
    countries, see ``scpo.data.global_pool``; a given global RM is the same either way).

    ``hf`` tier: the given pretrained reward model (the paper's OpenAssistant or Tulu RM).
    ``embedding`` tier: a head trained on the global pool, saved under the cache (``root``,
    default ``scpo.config.cache_dir()``) and reused by every later run with the same data and
    settings. ``partial`` tier: ``model.global_model`` if given, else the encoder's top layers
    and a score head trained on the global pool the same way, and cached the same way.
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
        raise ValueError(f"unknown model.backend {m.backend!r}; choose one of {list(TIERS)}")
    from scpo.models.embedding import WEIGHTS_FILE, EmbeddingRM, Encoder, train_global_rm

    encoder = Encoder(m.encoder, max_length=m.encoder_max_length)
    path = (root or cache_dir()) / "global_heads" / _without(
        global_head_key(data, cfg, encoder.fingerprint()), without)
    if (path / WEIGHTS_FILE).exists():
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
    what = {"head": global_head_key(data, cfg, backbone.fingerprint()),
            **{k: v for k, v in opts.items() if k != "cache_root"}}
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    path = (root or cache_dir()) / "global_partial" / _without(key, without)
    if (path / META_FILE).exists():
        return PartialRM.load(path, cache_root=root)
    rm = train_global_partial(str(backbone.path), global_pool(data, without), cfg.train,
                              cfg.method, seed=0, **opts)
    rm.save(path)
    return rm


def model_location(country: str, models: dict[str, str], local_dir: str | None) -> str:
    """Where a country's given RM is: ``models[country]`` (a hub id or a directory), or, with
    ``local_dir``, the directory ``local_dir/<last part of the id>`` (the layout of
    ``huggingface-cli download <id> --local-dir <local_dir>/<name>``)."""
    if country not in models:
        raise KeyError(
            f"model.minority_models has no reward model for {country!r} (it lists "
            f"{sorted(models) or 'none'}); add {country!r} = '<hub id or directory>' to it or "
            "leave the country out.")
    where = models[country]
    if local_dir:
        path = Path(local_dir) / where.rstrip("/").split("/")[-1]
        if not path.is_dir():
            raise FileNotFoundError(
                f"model.minority_dir={local_dir!r}: no directory {path} for {country!r} "
                f"(expected a local copy of {where}); download it there or unset minority_dir.")
        return str(path)
    return where


def external_model(m: ModelConfig, where: str, mode: str | None = None) -> RewardModel:
    """A country RM given by ``model.minority_models`` (at ``where``: a hub id or directory),
    read on the ``EXTERNAL_TIER`` with the run's options and scored as ``mode`` (None: the
    run's ``model.mode``), never trained."""
    from scpo.models.hf import HFRewardModel

    return HFRewardModel.from_pretrained(
        where, max_length=m.max_length, mode=mode or m.mode, bf16=m.bf16,
        chat_template=m.chat_template, trust_remote_code=m.trust_remote_code)


def build_conditioned(global_rm: RewardModel, countries: Sequence[str],
                      template: str | None = None) -> ConditionedRM:
    """An untrained conditioned model for ``countries``, started from ``global_rm`` and of its
    tier: the embedding tier's country-vector head (every vector at 0: it scores what the global
    RM scores), else a copy of the global RM reading the country from the prompt (``template``,
    default ``DEFAULT_TEMPLATE``)."""
    from scpo.models.conditioned import DEFAULT_TEMPLATE, CountryHeadRM, PromptConditionedRM
    from scpo.models.embedding import EmbeddingRM

    if isinstance(global_rm, EmbeddingRM):
        return CountryHeadRM.from_global(global_rm, countries)
    return PromptConditionedRM(global_rm.copy(), countries, template or DEFAULT_TEMPLATE)

