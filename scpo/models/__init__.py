"""Reward models behind one small interface (``RewardModel``).

- ``embedding.EmbeddingRM``: a frozen sentence encoder (cached embeddings) + a small trainable
  head. The CPU default (Sun et al. 2025, "Reusing Embeddings").
- ``hf.HFRewardModel``: any ``AutoModelForSequenceClassification`` reward model, fully
  fine-tuned (or with LoRA): the paper's tier.
"""

from scpo.models.base import RewardModel, TrainHistory

__all__ = ["RewardModel", "TrainHistory"]
