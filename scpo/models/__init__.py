"""Reward models behind one small interface (``RewardModel``).

- ``base``       the ``RewardModel`` interface every tier implements
- ``embedding``  ``EmbeddingRM``: a frozen sentence encoder (cached embeddings) + a small
                 trainable head. The CPU default (Sun et al. 2025, "Reusing Embeddings")
- ``hf``         ``HFRewardModel``: any ``AutoModelForSequenceClassification`` reward model,
                 fully fine-tuned (or with LoRA): the paper's tier
- ``partial``    ``PartialRM``: that model's top k layers trained on cached hidden states
- ``modes``      how its inputs are built, scored and trained: the ``fixed`` and ``released`` modes
- ``hf_train``   its training: the Hugging Face ``Trainer`` with the weighted Bradley-Terry loss
- ``device``     which GPU and rank; scoring split over a launch's ranks; FSDP-sharded weights
- ``export``     checkpoints and model cards (LoRA merged in fp32)
- ``reward_fn``  an exported RM as a TRL reward function, scored as it was trained
"""

from scpo.models.base import RewardModel, TrainHistory

__all__ = ["RewardModel", "TrainHistory"]
