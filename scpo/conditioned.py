"""One reward model for every country: r(x, y | c), steered at inference by naming c.

The per-country models of ``scpo.experiment`` are one copy of the global RM per country. Here a
single model is trained on every country's SCPO-weighted pairs at once and told which country
it scores for:

- embedding tier, ``CountryHeadRM``: r(x, y | c) = head_glo(z) + delta_c . z, where z is the
  head's standardised embedding (e - mean) / std, head_glo a trained copy of the global head
  and delta_c in R^d one learned vector per country, started at 0 (so the untrained model IS
  the global RM). A country it never saw gets delta = 0: the shared head, counted and warned.
- hf and partial tiers, ``PromptConditionedRM``: an ordinary reward model trained on prompts
  whose first line names the country (``with_country``, template ``DEFAULT_TEMPLATE``). It
  exports as a standard checkpoint; its card says how to write the country into the prompt.

    pairs, counts = conditioned_training_set(prep, countries, tau, beta)  # one weighted table
    out = run_conditioned(prep, countries, seeds)      # rows as run_country's, variant
                                                       # "conditioned" ("conditioned_loo")
    cross_country(model, prep, countries)              # asked-for country x test country

Both models answer ``score(prompts, responses, countries)`` and ``score_pairs(pairs)`` (a
``country`` column); ``model.for_country(c)`` is a view that scores like any ``RewardModel``,
so ``scpo.experiment.evaluate_variant`` evaluates it as it does a per-country model.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
import warnings
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from scpo import evaluate
from scpo.config import MethodConfig, TrainConfig
from scpo.experiment import Prepared, country_splits, evaluate_variant, prepare_without
from scpo.models.base import RewardModel, TrainHistory
from scpo.models.embedding import (
    EmbeddingRM,
    Encoder,
    Head,
    read_head_files,
    write_head_files,
)
from scpo.models.modes import prompt_messages
from scpo.outdir import claim
from scpo.variants import VARIANTS, training_weights

DEFAULT_TEMPLATE = "Country: {country}\n\n{prompt}"
VARIANT, VARIANT_LOO = "conditioned", "conditioned_loo"  # the results' variant names
GLOBAL_LOO = "global_loo"  # a global RM trained without the left-out countries (if retrained)
META_FILE = "scpo_conditioned.json"  # countries and template, beside the model's own files


class UnknownCountryWarning(UserWarning):
    """A conditioned model was asked for a country it was not trained on."""


def _check_countries(countries: Sequence[str]) -> list[str]:
    names = list(countries)
    if not names or len(set(names)) != len(names) or not all(isinstance(c, str) for c in names):
        raise ValueError(f"countries must be distinct names, at least one; got {names!r}")
    return names


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


# ---- training data ----

def _left_out(leave_out: str | Collection[str] | None, countries: list[str]) -> set[str]:
    out = {leave_out} if isinstance(leave_out, str) else set(leave_out or ())
    stray = sorted(out - set(countries))
    if stray:
        raise ValueError(f"leave_out names {stray}, which are not among the countries "
                         f"{countries}; leave out one of those")
    if out >= set(countries):
        raise ValueError(f"leave_out {sorted(out)} leaves no country to train on; keep at least "
                         f"one of {countries}")
    return out


def conditioned_training_set(prep: Prepared, countries: Sequence[str], tau: float, beta: float,
                             leave_out: str | Collection[str] | None = None
                             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pairs, counts): every training country's kept training pairs in one table, with its
    ``country`` and SCPO weight ``weight``, and per country what was kept of what.

    The weights are ``scpo_fw``'s (filter p_glo < tau, W = min(exp(delta / beta), 1)) from the
    SHARED global RM's scores ``rg_chosen`` / ``rg_rejected``, so each country's pairs carry
    exactly the weights its per-country model trains with; pairs of weight 0 are dropped and
    counted. ``leave_out`` countries contribute nothing (their counts row says so).
    """
    countries = _check_countries(countries)
    out = _left_out(leave_out, countries)
    parts, rows = [], []
    for c in countries:
        train = country_splits(prep, c)["train"]
        w = training_weights(VARIANTS["scpo_fw"], train["rg_chosen"].to_numpy(),
                             train["rg_rejected"].to_numpy(), tau, beta)
        keep = (w > 0) & (c not in out)
        parts.append(train[keep].assign(weight=w[keep]))
        rows.append({"country": c, "n_train": len(train), "n_kept": int(keep.sum()),
                     "kept_ratio": float(keep.mean()) if len(train) else float("nan"),
                     "weight_sum": float(w[keep].sum()),
                     "n_train_users": int(train["user_id"].nunique()),
                     "n_users_trained": int(train.loc[keep, "user_id"].nunique()),
                     "left_out": c in out})
    counts = pd.DataFrame(rows)
    pairs = pd.concat(parts, ignore_index=True)
    if pairs.empty:
        raise ValueError(f"no training pair: at tau={tau} the filter keeps 0 of "
                         f"{int(counts.loc[~counts.left_out, 'n_train'].sum())} training pairs of "
                         f"{counts.loc[~counts.left_out, 'country'].tolist()} (left out: "
                         f"{sorted(out)}); raise tau or add countries")
    empty = counts.loc[(counts.n_kept == 0) & ~counts.left_out, "country"].tolist()
    if empty:
        warnings.warn(f"the filter at tau={tau} keeps no training pair of {empty}: the model "
                      "learns nothing of them (a country vector stays 0); raise tau",
                      stacklevel=2)
    return pairs, counts


# ---- embedding tier ----

class CountryHead(nn.Module):
    """r = net(z) + delta_c . z with z = (e - mean) / std, on inputs [e | one-hot(c)].

    The country rides along as a one-hot block so that ``EmbeddingRM.fit`` trains this head
    as it trains any other (one input tensor per text); an all-zero block (a country the model
    does not know) selects no delta: the shared head.
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


class CountryHeadRM(EmbeddingRM):
    """A frozen ``Encoder`` + a ``CountryHead``: one embedding-tier RM for ``countries``.

    Training is ``EmbeddingRM.fit`` unchanged (AdamW with ``train.weight_decay`` on every
    trained weight, delta and the shared head alike, as a per-country head is decayed; linear
    decay, the same batches and loss normalisation); only the inputs carry the country.
    """

    def __init__(self, encoder: Encoder, head: CountryHead, countries: Sequence[str]):
        countries = _check_countries(countries)
        if head.delta.shape[0] != len(countries):
            raise ValueError(f"{head.delta.shape[0]} country vectors for {len(countries)} "
                             "countries; give one name per vector")
        super().__init__(encoder, head)
        self.countries = countries
        self.unknown: Counter[str] = Counter()  # texts scored with the shared head, by country

    @classmethod
    def from_global(cls, global_rm: EmbeddingRM, countries: Sequence[str]) -> CountryHeadRM:
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
        cols = ["prompt", "response", "country"]
        texts = pd.concat([pairs[["prompt", "chosen", "country"]].set_axis(cols, axis=1),
                           pairs[["prompt", "rejected", "country"]].set_axis(cols, axis=1)]
                          ).drop_duplicates(ignore_index=True)
        x = self._inputs(texts["prompt"].tolist(), texts["response"].tolist(),
                         texts["country"].tolist(), strict)
        row = {k: i for i, k in enumerate(zip(texts["prompt"], texts["response"],
                                              texts["country"]))}
        ic = torch.tensor([row[k] for k in zip(pairs["prompt"], pairs["chosen"],
                                               pairs["country"])])
        ir = torch.tensor([row[k] for k in zip(pairs["prompt"], pairs["rejected"],
                                               pairs["country"])])
        return x, ic, ir

    def score(self, prompts: list[str], responses: list[str],
              countries: Sequence[str] | None = None) -> np.ndarray:
        """r(x, y | c) per text, float64; ``countries`` names the country of each text."""
        if countries is None:
            raise TypeError("CountryHeadRM.score needs countries=[...] (one per text), or use "
                            "model.for_country(c).score(prompts, responses)")
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

    def for_country(self, country: str) -> CountryView:
        return CountryView(self, country)

    def fingerprint(self) -> str:
        """The head's (shared weights and deltas) and the order of the countries."""
        order = hashlib.sha256(json.dumps(self.countries).encode()).hexdigest()[:8]
        return f"{super().fingerprint()}-{order}"

    def n_parameters(self) -> int:
        """Trained numbers: the shared head + one d-vector per country."""
        return sum(p.numel() for p in self.head.parameters())

    def copy(self) -> CountryHeadRM:
        return CountryHeadRM(self.encoder, copy.deepcopy(self.head), self.countries)

    def save(self, path: str | Path) -> None:
        """``country_head_rm.json`` (encoder, head kind, countries) then, atomically and last,
        ``country_head.safetensors`` (shared head, standardisation, deltas)."""
        write_head_files(Path(path), "country_head_rm.json", "country_head.safetensors",
                         self.encoder, self.head,
                         {"head": self.head.kind, "dim": int(self.head.delta.shape[1]),
                          "countries": self.countries})

    @classmethod
    def load(cls, path: str | Path, encoder: Encoder | None = None,
             cache_root: str | Path | None = None) -> CountryHeadRM:
        """Read ``save``'s files; a given ``encoder`` must match the saved fingerprint."""
        meta, encoder, state = read_head_files(Path(path), "country_head_rm.json",
                                               "country_head.safetensors", "CountryHeadRM",
                                               encoder, cache_root)
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


class PromptConditionedRM(RewardModel):
    """An ordinary RM (``HFRewardModel`` or ``PartialRM``) trained on prompts that name the
    country; steered by writing the country into the prompt. A country it was not trained on
    is still written (the text model may generalise from the name); counted and warned."""

    def __init__(self, model: RewardModel, countries: Sequence[str],
                 template: str = DEFAULT_TEMPLATE):
        self.model = model
        self.countries = _check_countries(countries)
        self.template = check_template(template)
        self.unknown: Counter[str] = Counter()

    def _named(self, pairs: pd.DataFrame, strict: bool) -> pd.DataFrame:
        if "country" not in pairs.columns:
            raise KeyError("pairs have no country column: name the country each pair is for")
        _announce_unknown("PromptConditionedRM", pairs["country"].tolist(), self.countries,
                          self.unknown, strict, "its name in the prompt all the same", "pair")
        return with_country(pairs, self.template)

    def score(self, prompts: list[str], responses: list[str],
              countries: Sequence[str] | None = None) -> np.ndarray:
        if countries is None or len(countries) != len(prompts):
            raise ValueError(f"PromptConditionedRM.score needs one country per text ("
                             f"{len(prompts)}), got {countries!r}; or use model.for_country(c)")
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

    def n_parameters(self) -> int:
        return trainable_parameters(self.model)

    @property
    def n_trainable(self) -> int:
        return self.n_parameters()

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
        self._write_meta(path)
        readme = path / "README.md"
        readme.write_text(readme.read_text() + steering_section(self.template, self.countries))
        return path

    @classmethod
    def load(cls, path: str | Path) -> PromptConditionedRM:
        """What ``save`` or ``export`` wrote, as an hf-tier (or partial-tier) model."""
        from scpo.models.export import META_FILE as HF_META
        from scpo.models.hf import HFRewardModel
        from scpo.models.partial import PartialRM

        path = Path(path)
        if not (path / META_FILE).exists():
            raise FileNotFoundError(f"{path / META_FILE} not found: not a conditioned model "
                                    "written by PromptConditionedRM.save or export")
        meta = json.loads((path / META_FILE).read_text())
        hf_meta = json.loads((path / HF_META).read_text())
        kind = PartialRM if hf_meta.get("backend") == "partial" else HFRewardModel
        return cls(kind.load(path), meta["countries"], meta["template"])


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


# ---- steering, runs and the cross-country matrix ----

@dataclass
class CountryView:
    """A conditioned model asked for one country: scores like a per-country ``RewardModel``
    (what ``evaluate_variant`` and GlobalOpinionQA's 1 - JSD call)."""

    model: CountryHeadRM | PromptConditionedRM
    country: str

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return self.model.score(prompts, responses, [self.country] * len(prompts))

    def score_pairs(self, pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.model.score_pairs(pairs.assign(country=self.country))

    def fingerprint(self) -> str:
        return f"{self.model.fingerprint()}@{self.country}"


def trainable_parameters(rm: RewardModel) -> int:
    """Numbers a training step changes: a head, or a model's parameters that need gradients."""
    return rm.n_trainable


def conditioned_model(prep: Prepared, countries: Sequence[str],
                      template: str = DEFAULT_TEMPLATE) -> CountryHeadRM | PromptConditionedRM:
    """An untrained conditioned model of the run's tier, started from its global RM."""
    if prep.cfg.model.backend == "embedding":
        return CountryHeadRM.from_global(prep.global_rm, countries)
    return PromptConditionedRM(prep.global_rm.copy(), countries, template)


@dataclass
class ConditionedRun:
    """What ``run_conditioned`` produced."""

    results: pd.DataFrame  # run_country's columns, variant "conditioned" / "conditioned_loo"
    counts: pd.DataFrame  # per country: training pairs, kept, weight sum, left out
    max_steps: int  # optimizer steps of each seed's model
    n_parameters: int  # trained numbers of the one conditioned model
    per_country_parameters: int  # ... of the per-country models it replaces, together
    train_seconds: dict[int, float] = field(default_factory=dict)  # seed -> fit() time
    histories: dict[int, TrainHistory] = field(default_factory=dict)  # seed -> fit() log
    models: dict[int, CountryHeadRM | PromptConditionedRM] = field(default_factory=dict)
    exported: dict[int, str] = field(default_factory=dict)  # seed -> checkpoint directory
    # left-out countries that the run's global pool held, so the model started from (and was
    # filtered and weighted by) a global RM trained without them (experiment.prepare_without)
    pool_without: list[str] = field(default_factory=list)

    def card(self, seed: int) -> dict[str, Any]:
        """The model card's record of one seed's model (``scpo.models.export`` fields)."""
        res = self.results[self.results["seed"] == seed]
        return {"tau": float(res["tau"].iloc[0]), "beta": float(res["beta"].iloc[0]),
                "lr": float(res["lr"].iloc[0]), "max_steps": self.max_steps,
                "pairs_kept": int(self.counts["n_kept"].sum()),
                "pairs_kept_by_country": dict(zip(self.counts["country"],
                                                  self.counts["n_kept"].astype(int).tolist())),
                "left_out": self.counts.loc[self.counts["left_out"], "country"].tolist(),
                "seeds": [int(seed)],
                "test_accuracy": {c: {r.test_set: {"accuracy": float(r.accuracy),
                                                   "ci95": [float(r.ci_low), float(r.ci_high)],
                                                   "n_pairs": int(r.n_pairs)}
                                      for r in g.itertuples()}
                                  for c, g in res.groupby("country", sort=False)}}


def run_conditioned(prep: Prepared, countries: Sequence[str] | None = None,
                    seeds: Sequence[int] | None = None, *,
                    leave_out: str | Collection[str] | None = None,
                    template: str = DEFAULT_TEMPLATE, keep_models: bool = False,
                    export_dir: str | Path | None = None, overwrite: bool = False,
                    progress: bool = False) -> ConditionedRun:
    """One conditioned model per seed, trained on every country's SCPO pairs (tier:
    ``prep.cfg.model.backend``), evaluated on each country's test pairs asked for that country.

    Rows have exactly ``run_country``'s columns (variant "conditioned", or "conditioned_loo"
    for a ``leave_out`` country, which the model never saw: n_kept 0), so the two concatenate.
    A left-out country stays unseen by the global RM too: where the run's global pool holds it
    (GlobalOpinionQA), the model starts from, and is filtered and weighted by, a global RM
    trained without it (``experiment.prepare_without``; ``pool_without`` names them), whose own
    rows are variant "global_loo". Every model is tested on the run's test pairs (its
    pure-minority pairs are those of the run's global RM).
    Budget: ``train.max_steps`` x the number of training countries steps of ``train.batch_size``
    pairs at ``train.lr``: as many steps and pairs as the per-country models together (not
    epochs: per-country runs count steps too). ``export_dir`` (hf and partial tiers) writes each
    seed's model as a standard checkpoint under ``<export_dir>/conditioned/seed<k>``
    (``overwrite``: into a folder of the user's, ``scpo.outdir``).
    """
    cfg = prep.cfg
    countries = _check_countries(countries if countries is not None else prep.countries)
    seeds = list(seeds if seeds is not None else cfg.run.seeds)
    if not seeds:
        raise ValueError("seeds is empty; pass at least one training seed")
    if export_dir is not None and cfg.model.backend == "embedding":
        raise ValueError("export_dir needs model.backend 'hf' or 'partial': the embedding tier's "
                         "model is a head on frozen embeddings, not a standard checkpoint")
    if export_dir is not None:  # refused before training if the folder is the user's
        claim(export_dir, overwrite=overwrite, what="exported checkpoints")
    tau, beta, lr = cfg.method.tau, cfg.method.beta, cfg.train.lr
    tests = {c: country_splits(prep, c)["test"] for c in countries}  # fails before training
    start, pool_without = prepare_without(prep, _left_out(leave_out, countries))
    pairs, counts = conditioned_training_set(start, countries, tau, beta, leave_out)
    trained = counts.loc[~counts["left_out"], "country"].tolist()
    train = dataclasses.replace(cfg.train, max_steps=cfg.train.max_steps * len(trained))
    per_country = len(trained) * trainable_parameters(prep.global_rm)
    out: ConditionedRun | None = None
    rows: list[dict[str, Any]] = []
    for seed in tqdm(seeds, desc="conditioned", disable=not progress):
        model = conditioned_model(start, trained, template)
        t0 = time.perf_counter()
        hist = model.fit(pairs, pairs["weight"].to_numpy(copy=True), train, cfg.method, seed)
        seconds = time.perf_counter() - t0
        if out is None:
            out = ConditionedRun(pd.DataFrame(), counts, train.max_steps, model.n_parameters(),
                                 per_country, pool_without=pool_without)
        out.train_seconds[seed], out.histories[seed] = seconds, hist
        new = []
        for c, n in zip(countries, counts.itertuples()):
            with warnings.catch_warnings():  # a left-out country: its variant name says so
                warnings.simplefilter("ignore", UnknownCountryWarning)
                evaluated = evaluate_variant(prep, model.for_country(c), tests[c], seed, c)
            new += [{"country": c, "variant": VARIANT_LOO if n.left_out else VARIANT,
                     "seed": seed, **r, "n_train": n.n_train, "n_kept": n.n_kept,
                     "kept_ratio": n.kept_ratio, "n_train_users": n.n_train_users,
                     "n_users_trained": n.n_users_trained, "weight_sum": n.weight_sum,
                     "tau": tau, "beta": beta, "lr": lr} for r in evaluated]
            if c in pool_without:  # the global RM it started from, on the same test pairs
                new += [{"country": c, "variant": GLOBAL_LOO, "seed": seed, **r,
                         "n_train": n.n_train, "n_kept": 0, "kept_ratio": 0.0,
                         "n_train_users": n.n_train_users, "n_users_trained": 0,
                         "weight_sum": 0.0, "tau": tau, "beta": beta, "lr": lr}
                        for r in evaluate_variant(prep, start.global_rm, tests[c], seed, c)]
        rows += new
        out.results = pd.DataFrame(rows)
        if export_dir is not None:
            path = Path(export_dir) / VARIANT / f"seed{seed}"
            out.exported[seed] = str(model.export(path, out.card(seed), overwrite=overwrite))
        if keep_models:
            out.models[seed] = model
        del model
    assert out is not None  # seeds is not empty
    return out


def cross_country(model: CountryHeadRM | PromptConditionedRM, prep: Prepared,
                  countries: Sequence[str] | None = None) -> pd.DataFrame:
    """Overall accuracy of ``model`` asked for country A (rows, "asked_for") on the test pairs
    of country B (columns, "tested_on"): the cross-country chapter's matrix for one model,
    computed as that chapter does (``evaluate.pairwise_correct`` then ``evaluate.accuracy``
    per test country). Steerable: each column best on its diagonal."""
    countries = _check_countries(countries if countries is not None else prep.countries)
    test = pd.concat([country_splits(prep, c)["test"] for c in countries], ignore_index=True)
    tested_on = test["country"].to_numpy()
    matrix = {}
    for a in countries:
        correct, _ = evaluate.pairwise_correct(*model.for_country(a).score_pairs(test))
        matrix[a] = {b: evaluate.accuracy(correct[tested_on == b], "overall", b)
                     for b in countries}
    return (pd.DataFrame.from_dict(matrix, orient="index")
            .rename_axis(index="asked_for", columns="tested_on"))
