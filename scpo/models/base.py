"""The interface every reward model implements, and what the tiers' training shares."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from scpo.config import MethodConfig, TrainConfig
from scpo.pairs import distinct_texts

if TYPE_CHECKING:
    import torch

# One entry per logged step: {"step": int, "loss": float, "lr": float}. When ``fit`` was given
# eval pairs, the last entry also holds {"val_accuracy": float}: the trained model's accuracy
# on them (a tie counts as wrong), on every tier.
TrainHistory = list[dict[str, Any]]


class RewardModel(abc.ABC):
    """r_theta(x, y): scores texts, trains on weighted pairs, saves itself.

    ``scpo.models.build_global`` makes one, ``scpo.models.load`` reads one back; what a caller
    may ask of any tier is a member here, so no caller looks at which tier it holds.
    """

    can_export = False  # ``export`` writes a standard Hugging Face checkpoint with a model card
    commit: str | None = None  # the hub commit its weights came from; None: not from the hub

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

    @abc.abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the weights as safetensors (plus a small JSON of what is needed to load, which
        ``scpo.models.load`` reads to tell the kinds apart)."""

    @property
    @abc.abstractmethod
    def n_trainable(self) -> int:
        """How many numbers a training step changes (a head; a model's unfrozen weights)."""

    @property
    def dropout_at_scoring(self) -> bool:
        """Whether scoring draws dropout masks (the released code's scoring): its scores then
        follow the torch seed, and a run scores such a model once per seed."""
        return False

    @property
    def reads_chat(self) -> bool:
        """Whether a prompt is read as a JSON chat list through the tokenizer's chat template
        (``model.chat_template``) rather than as one text: what a caller that writes the
        prompts itself (a TRL reward function) must hand it."""
        return False

    def offload(self) -> None:
        """Called once the global RM's scores are computed and it is only copied from: a
        model may move its weights out of accelerator memory. Nothing to do by default."""
        return None

    def export(self, path: str | Path, card: dict[str, Any], overwrite: bool = False) -> Path:
        """A standard checkpoint with a model card (``can_export``); other tiers refuse."""
        raise ValueError(f"{type(self).__name__} is not a standard Hugging Face checkpoint (a "
                         "head on frozen sentence embeddings); only the hf and partial tiers' "
                         "models export")

    # ---- what steering by the weights' mix (``scpo.companion.steer``) asks ----

    def torch_module(self) -> torch.nn.Module:
        """The torch module whose state dict is this model's weights."""
        raise TypeError(f"{type(self).__name__} has no weights to mix; mix its scores with "
                        "scpo.companion.steer.steered_reward instead")

    @property
    def linear_in_weights(self) -> bool:
        """Whether the reward is linear in the weights, so that mixing two models' weights
        mixes their rewards (a linear head on a frozen encoder)."""
        return False

    def check_mixable(self, other: RewardModel) -> None:
        """Raise unless ``other``'s weights mean what this model's mean: the same inputs (encoder
        or tokenizer and options), so that their weights can be mixed."""
        self.torch_module()  # a model without weights to mix says so

    # ---- what the reader's browser runs (``scpo.companion.browser``) ----

    @property
    def frozen_encoder(self) -> Any:
        """The frozen sentence encoder under a head (the embedding tier's ``Encoder``), or
        None: a model without one cannot be split into an encoder and a small head."""
        return None

    def head_arrays(self) -> dict[str, Any]:
        """What turns a sentence embedding into a reward, as plain float32 arrays (the
        embedding tier's head); other tiers refuse."""
        raise ValueError(f"{type(self).__name__} is not a head on frozen sentence embeddings; "
                         "only the embedding tier's models run in a reader's browser")

    def weights_changed(self) -> None:
        """Called after the weights were changed in place (training, mixing): forget whatever
        was derived from them (a cached fingerprint)."""
        return None

    def score_pairs(self, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(r(x, y+), r(x, y-)) for every pair, scoring each distinct text once."""
        texts, ic, ir = text_rows(pairs)
        s = self.score(texts["prompt"].tolist(), texts["response"].tolist())
        return np.asarray(s)[ic].astype(np.float64), np.asarray(s)[ir].astype(np.float64)


class UnknownCountryWarning(UserWarning):
    """A conditioned model was asked for a country it was not trained on."""


def country_list(countries: Sequence[str]) -> list[str]:
    """The countries a conditioned model is built for, as a list: distinct names, at least one."""
    names = list(countries)
    if not names or len(set(names)) != len(names) or not all(isinstance(c, str) for c in names):
        raise ValueError(f"countries must be distinct names, at least one; got {names!r}")
    return names


class ConditionedRM(abc.ABC):
    """r(x, y | c): one reward model for several countries, told which one it scores for.

    It is not a ``RewardModel`` (its score needs a country for every text); ``for_country(c)``
    is the ``RewardModel`` that scores for c, and scores like any per-country model. A country
    it was not trained on is answered all the same, counted in ``unknown`` and warned
    (``UnknownCountryWarning``).
    """

    countries: list[str]  # the countries it was built for
    can_export = False  # see RewardModel

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Identifies the weights and the countries (their order)."""

    @abc.abstractmethod
    def score(self, prompts: list[str], responses: list[str],
              countries: Sequence[str]) -> np.ndarray:
        """r(x, y | c) per text, float64; ``countries`` names the country of each text."""

    @abc.abstractmethod
    def score_pairs(self, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(r(x, y+ | c), r(x, y- | c)) with c the pairs' ``country`` column, each text once."""

    @abc.abstractmethod
    def fit(self, pairs: pd.DataFrame, weights: np.ndarray, train: TrainConfig,
            method: MethodConfig, seed: int,
            eval_pairs: pd.DataFrame | None = None) -> TrainHistory:
        """``RewardModel.fit`` on pairs of every country (their ``country`` column); a pair of
        a country it has no place for is an error."""

    @abc.abstractmethod
    def for_country(self, country: str) -> RewardModel:
        """The model asked for ``country``: a ``RewardModel``."""

    @abc.abstractmethod
    def copy(self) -> ConditionedRM:
        """An independent copy."""

    @abc.abstractmethod
    def save(self, path: str | Path) -> None:
        """Its weights and countries, read back by ``scpo.models.load``."""

    @property
    @abc.abstractmethod
    def n_trainable(self) -> int:
        """How many numbers a training step changes."""

    def export(self, path: str | Path, card: dict[str, Any], overwrite: bool = False) -> Path:
        """A standard checkpoint with a model card (``can_export``); other tiers refuse."""
        raise ValueError(f"{type(self).__name__} is not a standard Hugging Face checkpoint (a "
                         "head on frozen sentence embeddings); only the hf and partial tiers' "
                         "models export")

    @property
    def frozen_encoder(self) -> Any:
        """As ``RewardModel.frozen_encoder``."""
        return None

    def head_arrays(self) -> dict[str, Any]:
        """As ``RewardModel.head_arrays``; with ``delta`` and ``countries`` besides."""
        raise ValueError(f"{type(self).__name__} is not a head on frozen sentence embeddings; "
                         "only the embedding tier's models run in a reader's browser")


def for_country(model: RewardModel | ConditionedRM, country: str | None) -> RewardModel:
    """The reward model that scores for ``country``: a conditioned model asked for it (it needs
    one), any other model as it is (it scores alike for every country)."""
    if not isinstance(model, ConditionedRM):
        return model
    if country is None:
        raise ValueError(f"a conditioned model scores for a country: name one of "
                         f"{model.countries} (--country)")
    return model.for_country(country)


def text_rows(pairs: pd.DataFrame, keys: Sequence[str] = ()
              ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The distinct (prompt, response) texts of ``pairs`` (``scpo.pairs.distinct_texts``: each
    is scored or embedded once) and, for every pair, the rows of its y+ and its y-. ``keys``:
    columns that tell texts apart too (a conditioned model's ``country``)."""
    if keys:
        cols = ["prompt", "response", *keys]
        texts = pd.concat([pairs[["prompt", "chosen", *keys]].set_axis(cols, axis=1),
                           pairs[["prompt", "rejected", *keys]].set_axis(cols, axis=1)]
                          ).drop_duplicates(ignore_index=True)
    else:
        texts = distinct_texts(pairs)
    row = {k: i for i, k in enumerate(zip(*(texts[c] for c in texts.columns)))}

    def rows(side: str) -> np.ndarray:
        return np.array([row[k] for k in zip(pairs["prompt"], pairs[side],
                                             *(pairs[c] for c in keys))], dtype=np.int64)

    return texts, rows("chosen"), rows("rejected")


def check_training_pairs(pairs: pd.DataFrame, weights: Any) -> np.ndarray:
    """The weights as float64, once the pairs have their columns, there is at least one, and
    each has one finite weight >= 0: what every tier's ``fit`` checks first."""
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in pairs.columns]
    if missing:
        raise ValueError(f"fit: pairs lack column(s) {missing}; need prompt, chosen, rejected")
    if len(pairs) == 0:
        raise ValueError("fit: no training pairs, nothing to fit (did the filter keep none? "
                         "raise tau)")
    w = np.asarray(weights, dtype=np.float64)
    n = len(pairs)
    if w.shape != (n,):
        raise ValueError(f"fit: {w.shape} weights for {n} pairs; need {n} finite values >= 0, "
                         "one per pair")
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        raise ValueError(f"fit: weight {float(w[bad[0]])!r} at row {bad[0]} ({bad.size} bad); "
                         f"need {n} finite values >= 0, one per pair")
    return w
