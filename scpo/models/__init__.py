"""Reward models behind one door: built, loaded and asked the same way on every tier.

Outside this package a reward model is a ``RewardModel`` (or a ``ConditionedRM``, one model for
every country), made by ``build_global`` (the run's global RM), ``build_conditioned`` or
``external_model`` (found by ``model_location``), read back by ``load``, ``load_any`` or
``load_checkpoint`` and asked for a country by ``for_country``; no module outside this package
names a tier's class.
The tiers (``model.backend``) are ``TIERS``:

- ``base``         the ``RewardModel`` and ``ConditionedRM`` interfaces; what training shares
- ``embedding``    ``EmbeddingRM``: a frozen sentence encoder (cached embeddings) + a small
                   trainable head. The CPU default (Sun et al. 2025, "Reusing Embeddings")
- ``hf``           ``HFRewardModel``: any ``AutoModelForSequenceClassification`` reward model,
                   fully fine-tuned (or with LoRA): the paper's tier
- ``partial``      ``PartialRM``: that model's top k layers trained on cached hidden states
- ``conditioned``  one model for every country: a country vector per country (embedding tier)
                   or the country written into the prompt (hf and partial tiers)
- ``build``        making them: a run's global RM (cached), its conditioned model, given ones
- ``saved``        reading any saved one back, by the metadata file its save wrote
- ``modes``        how the hf tier's inputs are built, scored and trained: ``fixed``, ``released``
- ``hf_train``     its training: the Hugging Face ``Trainer`` with the weighted Bradley-Terry loss
- ``device``       which GPU and rank; scoring split over a launch's ranks; FSDP-sharded weights
- ``export``       checkpoints and model cards (LoRA merged in fp32)
"""

from scpo.models.base import (
    ConditionedRM,
    RewardModel,
    TrainHistory,
    UnknownCountryWarning,
    for_country,
)
from scpo.models.build import (
    EXTERNAL_TIER,
    TIERS,
    build_conditioned,
    build_global,
    external_model,
    model_location,
    reads_chat,
    trains_global,
)
from scpo.models.saved import load, load_any, load_checkpoint

__all__ = ["EXTERNAL_TIER", "TIERS", "ConditionedRM", "RewardModel", "TrainHistory",
           "UnknownCountryWarning", "build_conditioned", "build_global", "external_model",
           "for_country", "load", "load_any", "load_checkpoint", "model_location", "reads_chat",
           "trains_global"]
