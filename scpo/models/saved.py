"""Reading a saved reward model back, whatever its kind: by the metadata file its ``save`` wrote.

    load(path, share_with=global_rm)   # a model scpo saved or exported (every kind)
    load_any("org/model")              # ... or any Hugging Face reward model
    load_checkpoint(path)              # an export as one whole model (a TRL reward)

Each kind is told by the metadata file its ``save`` writes, looked for in this order:
``scpo_country.json`` (a conditioned model asked for a country: its ``CountryView``),
``scpo_conditioned.json`` (the hf and partial tiers' conditioned model, beside its text
model's files), ``country_head_rm.json`` (the embedding tier's conditioned model),
``embedding_rm.json`` (the embedding tier), ``scpo_hf.json`` (the hf tier, or the partial tier
when its ``backend`` says so).
"""

from __future__ import annotations

import json
from pathlib import Path

from scpo.models.base import ConditionedRM, RewardModel

# the metadata file of each kind, in the order they are looked for (a conditioned model's
# directory also holds its text model's scpo_hf.json; a view's, its conditioned model's)
KINDS = ("scpo_country.json", "scpo_conditioned.json", "country_head_rm.json",
         "embedding_rm.json", "scpo_hf.json")


def saved_kind(path: str | Path) -> str | None:
    """The metadata file that says what ``path`` holds, or None if scpo saved nothing there."""
    return next((k for k in KINDS if (Path(path) / k).is_file()), None)


def load(path: str | Path, *, share_with: RewardModel | None = None,
         cache_root: str | Path | None = None) -> RewardModel | ConditionedRM:
    """Whatever scpo saved or exported at ``path``: a reward model of any tier, a conditioned
    model, or one asked for a country. ``share_with``: a live model (the run's global RM) whose
    frozen parts the loaded one shares, when it has them (the embedding tier's encoder and its
    cache); ``cache_root``: where the partial tier's hidden states are cached."""
    path = Path(path)
    kind = saved_kind(path)
    if kind is None:
        raise FileNotFoundError(f"{path}: no model scpo saved (none of {list(KINDS)}); save one "
                                "with a RewardModel's save, or pass a Hugging Face model to "
                                "scpo.models.load_any")
    return _read(path, kind, share_with, cache_root)


def _read(path: Path, kind: str, share_with: RewardModel | None,
          cache_root: str | Path | None) -> RewardModel | ConditionedRM:
    """The model of ``kind`` (one of ``KINDS``) at ``path``."""
    from scpo.models.conditioned import CountryHeadRM, PromptConditionedRM
    from scpo.models.embedding import EmbeddingRM
    from scpo.models.export import META_FILE
    from scpo.models.hf import HFRewardModel
    from scpo.models.partial import PartialRM

    if kind == KINDS[0]:  # a conditioned model asked for a country
        country = json.loads((path / kind).read_text())["country"]
        inner = next((k for k in KINDS[1:3] if (path / k).is_file()), None)
        if inner is None:
            raise FileNotFoundError(f"{path / kind} names country {country!r} but {path} holds "
                                    f"no conditioned model (none of {list(KINDS[1:3])}); save "
                                    "the model again")
        model = _read(path, inner, share_with, cache_root)
        assert isinstance(model, ConditionedRM)
        return model.for_country(country)
    encoder = share_with.encoder if isinstance(share_with, EmbeddingRM) else None
    if kind == "country_head_rm.json":
        return CountryHeadRM.load(path, encoder=encoder, cache_root=cache_root)
    if kind == "embedding_rm.json":
        return EmbeddingRM.load(path, encoder=encoder, cache_root=cache_root)
    partial = json.loads((path / META_FILE).read_text()).get("backend") == "partial"
    text_model = (PartialRM.load(path, cache_root=cache_root) if partial
                  else HFRewardModel.load(path))
    if kind == "scpo_conditioned.json":
        return PromptConditionedRM.load(path, text_model)
    return text_model


def load_any(where: str | Path, *, max_length: int = 512,
             mode: str = "fixed") -> RewardModel | ConditionedRM:
    """``load`` for what scpo saved or exported; else any Hugging Face reward model (a directory
    or a hub id), read with ``max_length`` and ``mode``."""
    if saved_kind(where) is not None:
        return load(where)
    from scpo.models.hf import HFRewardModel

    return HFRewardModel.from_pretrained(str(where), max_length=max_length, mode=mode)


def load_checkpoint(path: str | Path) -> RewardModel:
    """An hf-format checkpoint scpo exported (or saved) read as one whole Hugging Face model,
    whichever tier trained it: what code outside a run scores with (a TRL trainer's reward),
    without the partial tier's cache of hidden states that ``load`` would give it."""
    from scpo.models.hf import HFRewardModel

    return HFRewardModel.load(path)
