"""The interface every reward model implements."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scpo.config import MethodConfig, TrainConfig

# One entry per logged step: {"step": int, "loss": float, "lr": float}, plus optional
# {"val_accuracy": float} when an eval set was given.
TrainHistory = list[dict[str, Any]]


class RewardModel(abc.ABC):
    """r_theta(x, y): scores texts, trains on weighted pairs, saves and loads itself."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Identifies the weights: the score-cache key. Changes whenever training changes them."""

    @abc.abstractmethod
    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """r(x, y) for each (prompt, response), float64, in eval mode with no gradients."""

    @abc.abstractmethod
    def fit(
        self,
        pairs: pd.DataFrame,
        weights: np.ndarray,
        train: TrainConfig,
        method: MethodConfig,
        seed: int,
        eval_pairs: pd.DataFrame | None = None,
    ) -> TrainHistory:
        """Minimise the weighted Bradley-Terry loss (``scpo.method.weighted_bt_loss``) on
        ``pairs`` (columns prompt, chosen, rejected) with per-pair ``weights``, in place.

        Seeded end to end by ``seed``: same seed, same data -> the same weights.
        """

    @abc.abstractmethod
    def copy(self) -> RewardModel:
        """An independent copy (a minority model starts from a copy of the global RM)."""

    def park(self) -> None:
        """Called once the global RM's scores are computed and it is only copied from: a
        model may move its weights out of accelerator memory. Nothing to do by default."""
        return None

    @abc.abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the weights as safetensors (plus a small JSON of what is needed to load)."""

    @classmethod
    @abc.abstractmethod
    def load(cls, path: str | Path) -> RewardModel:
        """Read what ``save`` wrote."""

    def score_pairs(self, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(r(x, y+), r(x, y-)) for every pair, scoring each distinct text once."""
        texts = pd.concat([
            pairs[["prompt", "chosen"]].set_axis(["prompt", "response"], axis=1),
            pairs[["prompt", "rejected"]].set_axis(["prompt", "response"], axis=1),
        ])
        uniq = texts.drop_duplicates(ignore_index=True)
        s = self.score(uniq["prompt"].tolist(), uniq["response"].tolist())
        lookup = {(p, r): v for p, r, v in zip(uniq["prompt"], uniq["response"], s)}
        rc = np.array([lookup[(p, r)] for p, r in zip(pairs["prompt"], pairs["chosen"])])
        rr = np.array([lookup[(p, r)] for p, r in zip(pairs["prompt"], pairs["rejected"])])
        return rc.astype(np.float64), rr.astype(np.float64)
