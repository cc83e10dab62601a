"""One reward model for every country, r(x, y | c), told at inference which country it scores for.

- embedding tier, ``CountryHeadRM``: r(x, y | c) = head_glo(z) + delta_c . z, where z is the
  head's standardised embedding (e - mean) / std, head_glo a trained copy of the global head
  and delta_c in R^d one learned vector per country, started at 0 (so the untrained model IS
  the global RM). A country it never saw gets delta = 0: the shared head, counted and warned.
- hf and partial tiers, ``PromptConditionedRM``: an ordinary reward model trained on prompts
  whose first line names the country (``with_country``, template ``DEFAULT_TEMPLATE``). It
  exports as a standard checkpoint; its card says how to write the country into the prompt.

Both are ``ConditionedRM``s: ``score(prompts, responses, countries)`` and ``score_pairs(pairs)``
(a ``country`` column); ``model.for_country(c)`` is a ``CountryView``, the ``RewardModel`` that
scores for c. ``scpo.models.build_conditioned`` makes one from a run's global RM and
``scpo.models.load`` reads one back; training and evaluating them is ``scpo.companion.conditioned``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from scpo.config import MethodConfig, TrainConfig
from scpo.models.base import (
    ConditionedRM,
    RewardModel,
    TrainHistory,
    UnknownCountryWarning,
    check_training_pairs,
    country_list,
    text_rows,
)
from scpo.models.embedding import (
    EmbeddingRM,
    Encoder,
    Head,
    head_accuracy,
    head_hash,
    read_head_files,
    train_head,
    write_head_files,
)
from scpo.models.modes import prompt_messages

DEFAULT_TEMPLATE = "Country: {country}\n\n{prompt}"
META_FILE = "scpo_conditioned.json"  # countries and template, beside the model's own files
HEAD_META, HEAD_WEIGHTS = "country_head_rm.json", "country_head.safetensors"
VIEW_FILE = "scpo_country.json"  # a saved CountryView: the country it was asked for
VARIANT = "conditioned"  # how a card names a conditioned model


def _announce_unknown(who: str, countries: Sequence[str], known: Collection[str],
                      counter: Counter, strict: bool, fallback: str, what: str = "text") -> None:
    """Count the texts (or pairs) asked for a country the model was not trained on and warn
    (or, when ``strict``, as in training, raise): a left-out country is answered, never
    silently."""
    unknown = Counter(c for c in countries if c not in known)
    if not unknown:
        return
    names = sorted(unknown)
    if strict:
        raise ValueError(f"{who}: pairs of countries {names} it has no place for (it knows "
                         f"{sorted(known)}); build the model with every training country")
    counter.update(unknown)
    warnings.warn(f"{who}: {sum(unknown.values())} {what}(s) of countries {names} it was not "
                  f"trained on, scored with {fallback} (counted in .unknown)",
                  UnknownCountryWarning, stacklevel=4)


# ---- embedding tier ----

class CountryHead(nn.Module):
    """r = net(z) + delta_c . z with z = (e - mean) / std, on inputs [e | one-hot(c)].

    The country rides along as a one-hot block so that ``embedding.train_head`` trains this
    head as it trains any other (one input tensor per text); an all-zero block (a country the
    model does not know) selects no delta: the shared head.
    """

    def __init__(self, shared: Head, n_countries: int):
        super().__init__()
        self.shared = shared
        self.kind = shared.kind
        self.delta = nn.Parameter(torch.zeros(n_countries, shared.mean.shape[0]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[z | one-hot(c)]: the embedding standardised, the country block as it is."""
        d = self.delta.shape[1]
        return torch.cat([self.shared.features(x[:, :d]), x[:, d:]], dim=1)

    def reward(self, feats: torch.Tensor) -> torch.Tensor:
        d = self.delta.shape[1]
        z = feats[:, :d].contiguous()  # the shared head's matmul on the global RM's layout
        return self.shared.reward(z) + ((feats[:, d:] @ self.delta) * z).sum(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reward(self.features(x))


class CountryHeadRM(ConditionedRM):
    """A frozen ``Encoder`` + a ``CountryHead``: one embedding-tier RM for ``countries``.

    Training is the embedding tier's (``embedding.train_head``: AdamW with
    ``train.weight_decay`` on every trained weight, delta and the shared head alike, as a
    per-country head is decayed; linear decay, the same batches and loss normalisation); only
    the inputs carry the country.
    """

    def __init__(self, encoder: Encoder, head: CountryHead, countries: Sequence[str]):
        countries = country_list(countries)
        if head.delta.shape[0] != len(countries):
            raise ValueError(f"{head.delta.shape[0]} country vectors for {len(countries)} "
                             "countries; give one name per vector")
        self.encoder = encoder
        self.head = head.eval()
        self.countries = countries
        self.unknown: Counter[str] = Counter()  # texts scored with the shared head, by country
        self.history: TrainHistory = []  # of the last fit()

    @classmethod
    def from_global(cls, global_rm: RewardModel, countries: Sequence[str]) -> CountryHeadRM:
        """A copy of the global head with every delta at 0: scores what the global RM scores."""
        if type(global_rm) is not EmbeddingRM:
            raise TypeError(f"from_global needs the embedding tier's global RM (EmbeddingRM), "
                            f"got {type(global_rm).__name__}; for the hf and partial tiers use "
                            "PromptConditionedRM")
        head = CountryHead(copy.deepcopy(global_rm.head), len(countries))
        return cls(global_rm.encoder, head, countries)

    def _inputs(self, prompts: list[str], responses: list[str], countries: list[str],
                strict: bool) -> torch.Tensor:
        """[e | one-hot(c)] per text; an unknown country gets an all-zero block (delta = 0)."""
        if not len(prompts) == len(responses) == len(countries):
            raise ValueError(f"{len(prompts)} prompts, {len(responses)} responses and "
                             f"{len(countries)} countries; pass one country per text")
        _announce_unknown("CountryHeadRM", countries, self.countries, self.unknown, strict,
                          "the shared head (delta = 0)")
        emb = torch.from_numpy(self.encoder.encode(prompts, responses))
        index = {c: i for i, c in enumerate(self.countries)}
        onehot = torch.zeros(len(prompts), len(self.countries))
        rows = [(i, index[c]) for i, c in enumerate(countries) if c in index]
        if rows:
            onehot[torch.tensor(rows).T.unbind()] = 1.0
        return torch.cat([emb, onehot], dim=1)

    def _pair_tensors(self, pairs: pd.DataFrame, strict: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs of the distinct (prompt, response, country) and the rows of y+ and y-."""
        missing = [c for c in ("prompt", "chosen", "rejected", "country") if c not in pairs]
        if missing:
            raise KeyError(f"pairs lack column(s) {missing}; need prompt, chosen, rejected and "
                           "country (the country each pair is scored for)")
        texts, ic, ir = text_rows(pairs, keys=("country",))
        x = self._inputs(texts["prompt"].tolist(), texts["response"].tolist(),
                         texts["country"].tolist(), strict)
        return x, torch.from_numpy(ic), torch.from_numpy(ir)

    def score(self, prompts: list[str], responses: list[str],
              countries: Sequence[str]) -> np.ndarray:
        """r(x, y | c) per text, float64; ``countries`` names the country of each text."""
        x = self._inputs(list(prompts), list(responses), list(countries), strict=False)
        self.head.eval()
        with torch.inference_mode():
            return self.head(x).double().numpy()

    def score_pairs(self, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(r(x, y+ | c), r(x, y- | c)) with c the ``country`` column, each text once."""
        x, ic, ir = self._pair_tensors(pairs, strict=False)
        self.head.eval()
        with torch.inference_mode():
            r = self.head(x).double().numpy()
        return r[ic.numpy()], r[ir.numpy()]

    def fit(self, pairs: pd.DataFrame, weights: np.ndarray, train: TrainConfig,
            method: MethodConfig, seed: int,
            eval_pairs: pd.DataFrame | None = None) -> TrainHistory:
        """``embedding.train_head`` on the pairs' [embedding | country] inputs."""
        w = check_training_pairs(pairs, weights)
        x, ic, ir = self._pair_tensors(pairs)
        history = train_head(self.head, x, ic, ir, w, lr=train.lr, max_steps=train.max_steps,
                             batch_size=train.batch_size, weight_decay=train.weight_decay,
                             normalize=method.normalize, seed=seed)
        if eval_pairs is not None and len(eval_pairs):
            history[-1]["val_accuracy"] = head_accuracy(self.head, *self._pair_tensors(eval_pairs))
        self.history = history
        return history

    def for_country(self, country: str) -> CountryView:
        return CountryView(self, country)

    def fingerprint(self) -> str:
        """The head's (shared weights and deltas) and the order of the countries."""
        order = hashlib.sha256(json.dumps(self.countries).encode()).hexdigest()[:8]
        return f"{self.encoder.fingerprint()}-{head_hash(self.head)}-{order}"

    @property
    def n_trainable(self) -> int:
        """Trained numbers: the shared head + one d-vector per country."""
        return sum(p.numel() for p in self.head.parameters())

    def copy(self) -> CountryHeadRM:
        return CountryHeadRM(self.encoder, copy.deepcopy(self.head), self.countries)

    @property
    def frozen_encoder(self) -> Encoder:
        return self.encoder

    def head_arrays(self) -> dict[str, Any]:
        """The shared head's arrays, and ``delta`` [countries, d] with the ``countries`` in
        its row order: r(x, y | c) = shared(z) + delta_c . z."""
        return {"shared": self.head.shared.arrays(),
                "delta": self.head.delta.detach().float().numpy().copy(),
                "countries": list(self.countries)}

    def save(self, path: str | Path) -> None:
        """``country_head_rm.json`` (encoder, head kind, countries) then, atomically and last,
        ``country_head.safetensors`` (shared head, standardisation, deltas)."""
        write_head_files(Path(path), HEAD_META, HEAD_WEIGHTS, self.encoder, self.head,
                         {"head": self.head.kind, "dim": int(self.head.delta.shape[1]),
                          "countries": self.countries})

    @classmethod
    def load(cls, path: str | Path, encoder: Encoder | None = None,
             cache_root: str | Path | None = None) -> CountryHeadRM:
        """Read ``save``'s files; a given ``encoder`` must match the saved fingerprint."""
        meta, encoder, state = read_head_files(Path(path), HEAD_META, HEAD_WEIGHTS,
                                               "CountryHeadRM", encoder, cache_root)
        d = meta["dim"]
        with torch.random.fork_rng(devices=[]):  # the fresh weights are overwritten below
            head = CountryHead(Head(meta["head"], torch.zeros(d), torch.ones(d)),
                               len(meta["countries"]))
        head.load_state_dict(state, strict=True)
        return cls(encoder, head, meta["countries"])


# ---- hf and partial tiers: the country written into the prompt ----

def check_template(template: str) -> str:
    """A template with the fields {country} and {prompt} and no other."""
    if not isinstance(template, str) or "{country}" not in template or "{prompt}" not in template:
        raise ValueError(f"template must contain {{country}} and {{prompt}}, got {template!r}; "
                         f"e.g. {DEFAULT_TEMPLATE!r}")
    try:
        template.format(country="", prompt="")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"template {template!r} has a field other than {{country}} and "
                         f"{{prompt}} ({e!r}); double any literal brace ({{{{ }}}})") from e
    return template


def country_prompt(prompt: str, country: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The prompt that names ``country``. A conversation (a JSON chat list, the prompt of
    ``data.prompt_context = "history"`` with a chat template) gets the country line in its first
    user message, where a plain prompt gets it too: one convention for both, and no system role,
    which some chat templates refuse."""
    msgs = prompt_messages(prompt)
    if msgs == [{"role": "user", "content": prompt}]:
        return template.format(country=country, prompt=prompt)
    i = next((i for i, m in enumerate(msgs) if m["role"] == "user"), 0)
    msgs[i] = {**msgs[i], "content": template.format(country=country, prompt=msgs[i]["content"])}
    return json.dumps(msgs)


def with_country(pairs: pd.DataFrame, template: str = DEFAULT_TEMPLATE,
                 country: str | None = None) -> pd.DataFrame:
    """``pairs`` with each prompt naming its ``country`` column (or ``country`` for all)."""
    check_template(template)
    if country is None and "country" not in pairs.columns:
        raise KeyError("pairs have no country column; add one or pass country=...")
    names = [country] * len(pairs) if country is not None else pairs["country"].tolist()
    return pairs.assign(prompt=[country_prompt(p, c, template)
                                for p, c in zip(pairs["prompt"], names)])


class PromptConditionedRM(ConditionedRM):
    """An ordinary RM (``HFRewardModel`` or ``PartialRM``) trained on prompts that name the
    country; steered by writing the country into the prompt. A country it was not trained on
    is still written (the text model may generalise from the name); counted and warned."""

    def __init__(self, model: RewardModel, countries: Sequence[str],
                 template: str = DEFAULT_TEMPLATE):
        self.model = model
        self.countries = country_list(countries)
        self.template = check_template(template)
        self.unknown: Counter[str] = Counter()

    @property
    def can_export(self) -> bool:
        return self.model.can_export

    def _named(self, pairs: pd.DataFrame, strict: bool) -> pd.DataFrame:
        if "country" not in pairs.columns:
            raise KeyError("pairs have no country column: name the country each pair is for")
        _announce_unknown("PromptConditionedRM", pairs["country"].tolist(), self.countries,
                          self.unknown, strict, "its name in the prompt all the same", "pair")
        return with_country(pairs, self.template)

    def score(self, prompts: list[str], responses: list[str],
              countries: Sequence[str]) -> np.ndarray:
        if len(countries) != len(prompts):
            raise ValueError(f"PromptConditionedRM.score needs one country per text ("
                             f"{len(prompts)}), got {len(countries)}; or use "
                             "model.for_country(c)")
        _announce_unknown("PromptConditionedRM", list(countries), self.countries, self.unknown,
                          False, "its name in the prompt all the same")
        named = [country_prompt(p, c, self.template) for p, c in zip(prompts, countries)]
        return self.model.score(named, list(responses))

    def score_pairs(self, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.model.score_pairs(self._named(pairs, strict=False))

    def fit(self, pairs: pd.DataFrame, weights: np.ndarray, train: TrainConfig,
            method: MethodConfig, seed: int,
            eval_pairs: pd.DataFrame | None = None) -> TrainHistory:
        """The model's own ``fit`` on the pairs with their countries in the prompts."""
        val = self._named(eval_pairs, strict=True) if eval_pairs is not None else None
        return self.model.fit(self._named(pairs, strict=True), weights, train, method, seed,
                              eval_pairs=val)

    def for_country(self, country: str) -> CountryView:
        return CountryView(self, country)

    def fingerprint(self) -> str:
        what = json.dumps([self.template, self.countries]).encode()
        return f"{self.model.fingerprint()}-{hashlib.sha256(what).hexdigest()[:8]}"

    @property
    def n_trainable(self) -> int:
        return self.model.n_trainable

    def copy(self) -> PromptConditionedRM:
        return PromptConditionedRM(self.model.copy(), self.countries, self.template)

    def _write_meta(self, path: Path) -> None:
        meta = {"countries": self.countries, "template": self.template}
        (path / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")

    def save(self, path: str | Path) -> None:
        """The model's own save + ``scpo_conditioned.json`` (countries, template)."""
        self.model.save(path)
        self._write_meta(Path(path))

    def export(self, path: str | Path, card: dict[str, Any], overwrite: bool = False) -> Path:
        """A standard checkpoint (``scpo.models.export``) whose card gives the template and a
        section on steering; ``scpo_conditioned.json`` lets ``load`` steer it again."""
        path = Path(path)
        card = {"variant": VARIANT, **card, "countries": self.countries,
                "country_template": self.template}
        self.model.export(path, card, overwrite=overwrite)
        from scpo.models.device import is_main_process
        from scpo.models.export import EXPORTED, FILES
        from scpo.outdir import claim, write_file_atomically

        if not is_main_process():  # rank 0 wrote the checkpoint
            return path
        # the export's own directory (or the user's, with overwrite): these files join its list
        claim(path, what=EXPORTED, overwrite=overwrite, legacy=FILES).add([META_FILE])
        self._write_meta(path)
        readme = path / "README.md"
        text = readme.read_text() + steering_section(self.template, self.countries)
        write_file_atomically(readme, lambda p: p.write_text(text))
        return path

    @classmethod
    def load(cls, path: str | Path, model: RewardModel) -> PromptConditionedRM:
        """What ``save`` or ``export`` wrote, around ``model``, its text model read back
        (``scpo.models.load`` reads both)."""
        path = Path(path)
        if not (path / META_FILE).exists():
            raise FileNotFoundError(f"{path / META_FILE} not found: not a conditioned model "
                                    "written by PromptConditionedRM.save or export")
        meta = json.loads((path / META_FILE).read_text())
        return cls(model, meta["countries"], meta["template"])


def steering_section(template: str, countries: list[str]) -> str:
    """The model card's how-to: write the country into the prompt with the template."""
    example = countries[0]
    return ("\n## Steering: write the country into the prompt\n\n"
            f"One model for {len(countries)} countries ({', '.join(countries)}). It reads the "
            "country from the prompt: write the country into the prompt like this to steer it "
            "(a conversation: into its first user message), then score as above.\n\n"
            f"```python\nTEMPLATE = {json.dumps(template)}\n"
            f"prompt = TEMPLATE.format(country={json.dumps(example)}, prompt=prompt)\n```\n\n"
            "A country not in the list is read from its name alone, untrained.\n")


# ---- a conditioned model asked for one country ----

class CountryView(RewardModel):
    """A conditioned model asked for one country: scores, trains and saves like a per-country
    ``RewardModel`` (what ``scpo.experiment`` evaluates and GlobalOpinionQA's 1 - JSD calls).
    Training it trains the conditioned model on pairs of this country; saving it saves the
    conditioned model and the country (``scpo.models.load`` gives the view back)."""

    def __init__(self, model: ConditionedRM, country: str):
        self.model, self.country = model, country

    @property
    def can_export(self) -> bool:
        return self.model.can_export

    @property
    def n_trainable(self) -> int:
        return self.model.n_trainable

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return self.model.score(prompts, responses, [self.country] * len(prompts))

    def score_pairs(self, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.model.score_pairs(pairs.assign(country=self.country))

    def fingerprint(self) -> str:
        return f"{self.model.fingerprint()}@{self.country}"

    def fit(self, pairs: pd.DataFrame, weights: np.ndarray, train: TrainConfig,
            method: MethodConfig, seed: int,
            eval_pairs: pd.DataFrame | None = None) -> TrainHistory:
        val = eval_pairs.assign(country=self.country) if eval_pairs is not None else None
        return self.model.fit(pairs.assign(country=self.country), weights, train, method, seed,
                              eval_pairs=val)

    def copy(self) -> CountryView:
        return CountryView(self.model.copy(), self.country)

    def save(self, path: str | Path) -> None:
        """The conditioned model's save + ``scpo_country.json`` (the country asked for)."""
        self.model.save(path)
        (Path(path) / VIEW_FILE).write_text(json.dumps({"country": self.country}) + "\n")

    def export(self, path: str | Path, card: dict[str, Any], overwrite: bool = False) -> Path:
        """The conditioned model's checkpoint (it serves every country; see its card)."""
        return self.model.export(path, card, overwrite=overwrite)
