"""A cultural-preference simulator that writes PRISM-format files and keeps the truth aside.

Why: on a machine with no hub access SCPO must still run end to end, and a teacher must be able
to show *why* it works. Only a simulation knows which preferences are consensus, which are
cultural and which come from outlier raters.

Every response carries latent attributes a (``ATTRIBUTES``, a_k in {-1, 0, +1}); utilities are
linear in them:

    u_global                               the consensus, shared by everyone
    u_c    = u_global + d_c                a country; d_c is sparse (the "culture"),
                                           0 for the majority countries (US, UK)
    u_user = s * u_c + user_noise * z      s = 1, or -outlier_strength for an outlier rater
    score  = slider(score_center + offset_user + score_scale * (u_user . a + rating_noise * e))

A response is 2-4 sentences from the phrase banks in ``scpo/sim_banks``, each expressing one
attribute at a high (+1) or low (-1) level, or neutral filler. Each prompt has a fixed pool of
responses that interactions draw from, so the number of distinct texts (the embedding cost)
stays small however many users there are.

Held-out texts (``held_out_texts``, the default): each prompt's pool is split into a test pool
and a train pool, and the users the PRISM loader will put in the test split (the same
``scpo.pairs.paper_test_rows`` arithmetic over the survey rows) see only test-pool texts. Test
accuracy then measures new texts as well as new raters, as on PRISM, whose test users saw new
responses. ``held_out_texts=False`` keeps one shared pool: test users rate the very texts the
training users rated, so test accuracy measures new raters of seen texts only.

Files of one simulation directory: ``utterances.jsonl`` and ``survey.jsonl`` in PRISM's format
(``scpo.prism.load_prism`` reads them like the real data), and the truth beside them:
``truth_texts.jsonl`` (each text's attributes and pool: "train", "test" or "shared"),
``truth_responses.jsonl`` (utterance -> text), ``truth_users.jsonl`` (country, outlier flag,
test-user flag, utility) and ``world.json`` (config, u_global, d_c, u_c, counts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scpo.cache import write_dir_atomically
from scpo.config import coerce, load_preset
from scpo.pairs import MAJORITY_COUNTRIES, PAPER_COUNTRIES, paper_test_rows

SIM_VERSION = 2  # bump whenever the generator changes, so cached simulations are not reused
BANK_DIR = Path(__file__).parent / "sim_banks"
ATTRIBUTES = (
    "family", "religion", "directness", "formality", "caution", "humour", "tradition", "freedom",
)
MODEL_NAMES = tuple(f"sim-lm-{c}" for c in "abcdefgh")  # who "wrote" a response (metadata only)
COARSE_STEP = 10  # a coarse rater only uses multiples of this on the slider
TRUTH_FILES = ("truth_texts.jsonl", "truth_responses.jsonl", "truth_users.jsonl", "world.json")
# Independent random streams: changing a noise knob leaves the texts and conversations as they
# were (same embeddings, a controlled comparison), and nested knobs nest (outlier sets grow).
STREAMS = ("texts", "world", "users", "conversations", "ratings")
MIN_POOL = 4  # an opening turn shows 4 different responses to one prompt


@dataclass(frozen=True)
class SimConfig:
    seed: int = 0  # one seed for everything; same seed -> byte-identical files
    # --- texts
    n_prompts: int = 30  # prompts drawn from the bank (36 available)
    responses_per_prompt: int = 160  # fixed response pool per prompt; >= 4 (an opening turn)
    min_sentences: int = 2  # sentences per response, drawn uniformly in [min, max]
    max_sentences: int = 4
    filler_prob: float = 0.2  # chance that a sentence is neutral filler, not an attribute
    # --- population
    countries: tuple[str, ...] = tuple(PAPER_COUNTRIES)  # the minority countries
    majority_users: int = 1500  # split evenly over United States / United Kingdom
    users_per_country: int = 200  # users of each minority country
    conversations_per_user: int = 3  # each opens with a turn of 4 rated responses
    max_later_turns: int = 2  # later turns per conversation ~ uniform{0..max}, 2 responses each
    # --- utilities
    global_scale: float = 1.0  # sd of the entries of u_global (the consensus)
    deviation_size: float = 1.0  # |d_c| on the attributes a country deviates on; 0 = no culture
    deviation_k: int = 2  # number of attributes each country deviates on (sparsity)
    user_noise: float = 0.5  # sd of a user's own utility around the country's
    rating_noise: float = 0.5  # sd of the per-rating noise, in utility units
    outlier_rate: float = 0.05  # round(rate * n) raters per country are outliers
    outlier_strength: float = 2.0  # an outlier's utility is -strength * u_c (plus user noise)
    # --- the 1-100 slider
    score_center: float = 50.0  # where a neutral response lands
    score_scale: float = 12.0  # slider points per unit of utility
    user_offset_sd: float = 10.0  # raters use different parts of the slider (points)
    coarse_rater_rate: float = 0.3  # raters who only use multiples of 10 (a source of ties)
    # --- the train/test split (must match data.test_frac / data.split_seed of the loader)
    held_out_texts: bool = True  # test users see their own responses; False = one shared pool
    test_frac: float = 0.15  # survey rows (users) the loader puts in test; the test text pool
    split_seed: int = 0  # the loader's split seed (which users are test users)

    def __post_init__(self) -> None:
        object.__setattr__(self, "countries", tuple(self.countries))  # a list would do too

        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"SimConfig: {msg}")

        n_bank = len(load_banks()[1])
        need(1 <= self.n_prompts <= n_bank, f"n_prompts={self.n_prompts} must be in [1, {n_bank}]"
             " (the prompt bank's size)")
        need(self.responses_per_prompt >= 4, f"responses_per_prompt={self.responses_per_prompt}"
             " must be >= 4: an opening turn shows 4 different responses")
        need(1 <= self.min_sentences <= self.max_sentences <= len(ATTRIBUTES),
             f"need 1 <= min_sentences <= max_sentences <= {len(ATTRIBUTES)}, got "
             f"{self.min_sentences}, {self.max_sentences}")
        need(0.0 <= self.filler_prob < 1.0, f"filler_prob={self.filler_prob} must be in [0, 1)")
        bad = [c for c in self.countries if c in MAJORITY_COUNTRIES]
        need(not bad and len(set(self.countries)) == len(self.countries) > 0,
             f"countries={list(self.countries)} must be distinct, non-empty and exclude the "
             f"majority {MAJORITY_COUNTRIES}")
        for name in ("majority_users", "users_per_country", "conversations_per_user"):
            need(getattr(self, name) >= 1, f"{name}={getattr(self, name)} must be >= 1")
        need(self.max_later_turns >= 0, f"max_later_turns={self.max_later_turns} must be >= 0")
        need(0 <= self.deviation_k <= len(ATTRIBUTES),
             f"deviation_k={self.deviation_k} must be in [0, {len(ATTRIBUTES)}]")
        for name in ("global_scale", "deviation_size", "user_noise", "rating_noise",
                     "outlier_strength", "user_offset_sd"):
            need(getattr(self, name) >= 0, f"{name}={getattr(self, name)} must be >= 0")
        for name in ("outlier_rate", "coarse_rater_rate"):
            need(0.0 <= getattr(self, name) <= 1.0,
                 f"{name}={getattr(self, name)} must be in [0, 1]")
        need(self.score_scale > 0, f"score_scale={self.score_scale} must be > 0")
        need(0.0 <= self.test_frac < 1.0, f"test_frac={self.test_frac} must be in [0, 1)")
        n_users = self.majority_users + self.users_per_country * len(self.countries)
        need(math.ceil(self.test_frac * n_users) < n_users,
             f"test_frac={self.test_frac} of {n_users} users leaves no training user")
        if self.held_out_texts:
            n_test = n_test_texts(self)
            need(n_test >= MIN_POOL and self.responses_per_prompt - n_test >= MIN_POOL,
                 f"held_out_texts: responses_per_prompt={self.responses_per_prompt} with "
                 f"test_frac={self.test_frac} gives a test pool of {n_test} and a train pool of "
                 f"{self.responses_per_prompt - n_test} texts per prompt; each needs >= "
                 f"{MIN_POOL} (an opening turn shows {MIN_POOL} responses). Raise "
                 f"responses_per_prompt (>= {2 * MIN_POOL}), lower test_frac or set "
                 "held_out_texts=False")


def n_test_texts(config: SimConfig) -> int:
    """Texts per prompt reserved for test users: max(4, round(test_frac * pool))."""
    return max(MIN_POOL, round(config.test_frac * config.responses_per_prompt))


def split_test_rows(config: SimConfig, n_users: int) -> np.ndarray:
    """Positions (in ``users`` / survey.jsonl order) of the users the PRISM loader will test on.

    The loader splits survey rows with ``paper_test_rows``; calling the very same function here
    is what keeps the simulator's test pool and the loader's test split from disagreeing.
    """
    return paper_test_rows(n_users, config.test_frac, config.split_seed)


def sim_knobs(knobs: dict[str, Any], **overrides: Any) -> SimConfig:
    """The defaults above with ``knobs`` (a preset's ``data.sim``) and ``overrides`` on top; an
    unknown knob raises with the valid names."""
    valid = {f.name for f in dataclasses.fields(SimConfig)}
    unknown = sorted((set(knobs) | set(overrides)) - valid)
    if unknown:
        raise KeyError(f"unknown simulator knob(s) {unknown}; valid: {sorted(valid)}")
    hints = typing.get_type_hints(SimConfig)
    return SimConfig(**{k: coerce(hints[k], v, f"data.sim.{k}")
                        for k, v in {**knobs, **overrides}.items()})


def sim_config(preset: str = "default", **overrides: Any) -> SimConfig:
    """The simulation of an scpo preset (its ``[data.sim]`` table; "default": ~4,800 distinct
    texts, ~200 users per minority country; "tiny": a few hundred texts), with overrides."""
    return sim_knobs(load_preset(preset).data.sim, **overrides)


def load_banks() -> tuple[dict[str, Any], list[dict[str, str]]]:
    """(phrases, prompts) from ``sim_banks``, checked so a broken edit names file and field."""
    phrases = json.loads((BANK_DIR / "phrases.json").read_text(encoding="utf-8"))
    prompts = json.loads((BANK_DIR / "prompts.json").read_text(encoding="utf-8"))["prompts"]
    where = BANK_DIR / "phrases.json"
    for attr in ATTRIBUTES:
        for level in ("high", "low"):
            got = phrases.get("attributes", {}).get(attr, {}).get(level, [])
            if len(got) < 2:
                raise ValueError(f"{where}: attributes.{attr}.{level} needs >= 2 phrasings, "
                                 f"has {len(got)}")
    fillers = phrases.get("fillers", {})
    if len(fillers.get("open", [])) + len(fillers.get("close", [])) < len(ATTRIBUTES):
        raise ValueError(f"{where}: fillers.open + fillers.close need >= {len(ATTRIBUTES)} "
                         "sentences in all")
    for i, p in enumerate(prompts):
        missing = [k for k in ("text", "topic", "category") if not p.get(k)]
        if missing:
            raise ValueError(f"{BANK_DIR / 'prompts.json'}: prompts[{i}] lacks {missing}")
    return phrases, prompts


def config_hash(config: SimConfig) -> str:
    """Names a simulation: the config, the generator version and the phrase banks' bytes."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": SIM_VERSION, "config": dataclasses.asdict(config)},
                        sort_keys=True).encode())
    for name in ("phrases.json", "prompts.json"):
        h.update((BANK_DIR / name).read_bytes())
    return h.hexdigest()[:16]


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS.index(stream)])


def slider(points: np.ndarray, step: int | np.ndarray = 1) -> np.ndarray:
    """PRISM's 1-100 slider: round to the rater's step (half to even), clip to [1, 100]."""
    return np.clip(np.round(np.asarray(points, float) / step) * step, 1, 100).astype(int)


def make_texts(config: SimConfig) -> pd.DataFrame:
    """The response pools: one row per distinct (prompt, response), attributes as columns, and
    ``pool`` ("train" / "test" with held-out texts, else "shared").

    The pool split is drawn from the "texts" stream after every text, so the texts are the same
    whatever the split knobs (cached embeddings are reused), and each prompt's test pool is the
    head of one seeded permutation: a larger test_frac only adds texts to it.
    """
    phrases, bank = load_banks()
    banks = phrases["attributes"]
    fillers = phrases["fillers"]["open"] + phrases["fillers"]["close"]  # openers go first
    n_open = len(phrases["fillers"]["open"])
    rng = _rng(config.seed, "texts")
    picked = np.sort(rng.choice(len(bank), config.n_prompts, replace=False))
    rows = []
    for p, b in enumerate(picked):
        prompt, topic = bank[b]["text"], bank[b]["topic"]
        seen: set[str] = set()
        for _ in range(50 * config.responses_per_prompt):
            n = int(rng.integers(config.min_sentences, config.max_sentences + 1))
            n_attr = int(rng.binomial(n, 1.0 - config.filler_prob))
            attrs = rng.choice(len(ATTRIBUTES), n_attr, replace=False)  # in random order
            levels = rng.choice([-1, 1], n_attr)
            body = [rng.choice(banks[ATTRIBUTES[k]]["high" if v > 0 else "low"])
                    for k, v in zip(attrs, levels)]
            fill = rng.choice(len(fillers), n - n_attr, replace=False)
            sentences = ([fillers[i] for i in fill if i < n_open] + body
                         + [fillers[i] for i in fill if i >= n_open])
            text = " ".join(sentences).replace("{topic}", topic)
            model = str(rng.choice(MODEL_NAMES))
            if text in seen:
                continue
            seen.add(text)
            a = dict.fromkeys(ATTRIBUTES, 0)
            a.update({ATTRIBUTES[k]: int(v) for k, v in zip(attrs, levels)})
            rows.append({"text_id": f"p{p:02d}-r{len(seen) - 1:03d}", "prompt_id": p,
                         "category": bank[b]["category"], "prompt": prompt, "response": text,
                         "model_name": model, **a})
            if len(seen) == config.responses_per_prompt:
                break
        else:
            raise ValueError(f"could not draw {config.responses_per_prompt} distinct responses "
                             f"for prompt {prompt!r}; lower responses_per_prompt or add phrasings")
    texts = pd.DataFrame(rows)
    texts["pool"] = "train" if config.held_out_texts else "shared"
    if config.held_out_texts:
        prompt_id, n_test = texts["prompt_id"].to_numpy(), n_test_texts(config)
        for p in range(config.n_prompts):
            mine = np.flatnonzero(prompt_id == p)
            texts.loc[mine[rng.permutation(len(mine))[:n_test]], "pool"] = "test"
    return texts


def make_world(config: SimConfig) -> dict[str, np.ndarray]:
    """u_global and each country's u_c = u_global + d_c (d_c = 0 for the majority countries)."""
    rng = _rng(config.seed, "world")
    k = len(ATTRIBUTES)
    u_global = np.round(config.global_scale * rng.standard_normal(k), 6)
    world = {"global": u_global}
    for country in MAJORITY_COUNTRIES:
        world[country] = u_global.copy()
    for country in config.countries:
        order, signs = rng.permutation(k), rng.choice([-1.0, 1.0], k)
        d = np.zeros(k)
        d[order[:config.deviation_k]] = config.deviation_size * signs[order[:config.deviation_k]]
        world[country] = np.round(u_global + d, 6)
    return world


def make_users(config: SimConfig, world: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per rater: country, outlier flag, slider habits, utility u_user and whether the
    loader will make them a test user (``test_user``; rows in survey.jsonl order)."""
    rng = _rng(config.seed, "users")
    m = len(MAJORITY_COUNTRIES)
    plan = [(c, config.majority_users // m + (i < config.majority_users % m))
            for i, c in enumerate(MAJORITY_COUNTRIES)]
    plan += [(c, config.users_per_country) for c in config.countries]
    frames = []
    for country, n in plan:
        outlier = np.zeros(n, dtype=bool)
        outlier[rng.permutation(n)[:round(config.outlier_rate * n)]] = True
        z = rng.standard_normal((n, len(ATTRIBUTES)))
        offset = config.user_offset_sd * rng.standard_normal(n)
        coarse = rng.random(n) < config.coarse_rater_rate
        s = np.where(outlier, -config.outlier_strength, 1.0)
        u = np.round(s[:, None] * world[country] + config.user_noise * z, 6)
        frames.append(pd.DataFrame({"country": country, "outlier": outlier,
                                    "coarse": coarse, "offset": np.round(offset, 6)})
                      .join(pd.DataFrame(u, columns=list(ATTRIBUTES))))
    users = pd.concat(frames, ignore_index=True)
    users.insert(0, "user_id", [f"user{i}" for i in range(len(users))])
    users["test_user"] = False
    users.loc[split_test_rows(config, len(users)), "test_user"] = True
    return users


def make_utterances(config: SimConfig, texts: pd.DataFrame, users: pd.DataFrame
                    ) -> tuple[list[dict], list[dict]]:
    """(PRISM utterance rows, truth rows): every user's conversations, each turn rated.

    A user with ``test_user`` True draws from the "test" pool, anyone else from the "train"
    pool; "shared" texts are open to everyone.
    """
    conv_rng, rating_rng = _rng(config.seed, "conversations"), _rng(config.seed, "ratings")
    attrs = texts[list(ATTRIBUTES)].to_numpy(float)
    col = {c: texts[c].tolist() for c in ("text_id", "prompt", "response", "model_name",
                                          "category")}
    prompt_id, pool = texts["prompt_id"].to_numpy(), texts["pool"].to_numpy()
    pools = {(p, test): np.flatnonzero((prompt_id == p)
                                       & np.isin(pool, ["test" if test else "train", "shared"]))
             for p in range(config.n_prompts) for test in (False, True)}
    test_user = users["test_user"].to_numpy(bool)
    rows: list[dict] = []
    truth: list[dict] = []
    n_conv = n_int = 0
    for user, is_test in zip(users.itertuples(index=False), test_user):
        u = np.array([getattr(user, a) for a in ATTRIBUTES])
        step = COARSE_STEP if user.coarse else 1
        for _ in range(config.conversations_per_user):
            conv_id = f"c{n_conv}"
            n_conv += 1
            p = int(conv_rng.integers(config.n_prompts))
            kind = col["category"][pools[p, bool(is_test)][0]]  # PRISM's conversation_type
            turns = [(p, 4)]
            for _ in range(int(conv_rng.integers(config.max_later_turns + 1))):
                # a follow-up is a fresh, different prompt: the simulator keeps no dialogue state
                others = [q for q in range(config.n_prompts) if q != p] or [p]
                turns.append((others[int(conv_rng.integers(len(others)))], 2))
            for turn, (q, k) in enumerate(turns):
                picks = conv_rng.choice(pools[q, bool(is_test)], k, replace=False)
                utility = attrs[picks] @ u
                noisy = utility + config.rating_noise * rating_rng.standard_normal(k)
                scores = slider(config.score_center + user.offset + config.score_scale * noisy,
                                step)
                best = int(np.argmax(scores))
                int_id = f"int{n_int}"
                n_int += 1
                for w, (i, score) in enumerate(zip(picks, scores)):
                    ut_id = f"ut{len(rows)}"
                    rows.append({
                        "utterance_id": ut_id, "user_id": user.user_id,
                        "conversation_id": conv_id, "interaction_id": int_id, "turn": turn,
                        "within_turn_id": w, "user_prompt": col["prompt"][i],
                        "model_response": col["response"][i], "model_provider": "simulated",
                        "model_name": col["model_name"][i], "score": int(score),
                        "if_chosen": w == best, "conversation_type": kind,
                        "included_in_balanced_subset": False,
                    })
                    truth.append({"utterance_id": ut_id, "text_id": col["text_id"][i],
                                  "user_utility": round(float(utility[w]), 6)})
    return rows, truth


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


# what ``simulate`` writes: in a simulation of an older scpo, whose marker listed no files,
# only these are replaced (scpo.outdir.owned_files)
FILES = ("utterances.jsonl", "survey.jsonl", "truth_texts.jsonl", "truth_responses.jsonl",
         "truth_users.jsonl", "world.json")


def simulate(config: SimConfig, out_dir: str | Path) -> Path:
    """Write one simulation (PRISM-format files + truth files, ``FILES``) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = make_texts(config)
    world = make_world(config)
    users = make_users(config, world)
    rows, truth = make_utterances(config, texts, users)
    _write_jsonl(out / "utterances.jsonl", rows)
    _write_jsonl(out / "survey.jsonl", [
        {"user_id": uid, "survey_only": False,
         "num_completed_conversations": config.conversations_per_user,
         "location": {"birth_country": c, "reside_country": c},
         "included_in_balanced_subset": False}
        for uid, c in zip(users["user_id"], users["country"])])
    _write_jsonl(out / "truth_texts.jsonl", [
        {"text_id": t.text_id, "prompt_id": t.prompt_id, "prompt": t.prompt,
         "response": t.response, "pool": t.pool,
         "attributes": {a: int(getattr(t, a)) for a in ATTRIBUTES}}
        for t in texts.itertuples(index=False)])
    _write_jsonl(out / "truth_responses.jsonl", truth)
    _write_jsonl(out / "truth_users.jsonl", [
        {"user_id": r.user_id, "country": r.country, "outlier": bool(r.outlier),
         "coarse": bool(r.coarse), "offset": float(r.offset), "test_user": bool(r.test_user),
         "utility": {a: float(getattr(r, a)) for a in ATTRIBUTES}}
        for r in users.itertuples(index=False)])
    countries = {c: {"majority": c in MAJORITY_COUNTRIES,
                     "deviation": dict(zip(ATTRIBUTES, np.round(world[c] - world["global"], 6)
                                           .tolist())),
                     "utility": dict(zip(ATTRIBUTES, world[c].tolist()))}
                 for c in [*MAJORITY_COUNTRIES, *config.countries]}
    meta = {"simulator_version": SIM_VERSION, "config_hash": config_hash(config),
            "config": dataclasses.asdict(config), "attributes": list(ATTRIBUTES),
            "global_utility": dict(zip(ATTRIBUTES, world["global"].tolist())),
            "countries": countries,
            "counts": {"texts": len(texts), "users": len(users), "utterances": len(rows),
                       "outlier_users": int(users["outlier"].sum()),
                       "test_users": int(users["test_user"].sum()),
                       "texts_by_pool": {k: int(n) for k, n in
                                         texts["pool"].value_counts().sort_index().items()}}}
    (out / "world.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return out


def ensure_simulation(config: SimConfig, root: str | Path) -> Path:
    """``root/<config hash>/``, simulated only if absent; written to a temp dir, then renamed,
    so an interrupted run never leaves a half-written simulation that looks complete."""
    root = Path(root)
    final = root / config_hash(config)
    if (final / "world.json").exists():
        return final
    if final.exists():
        raise FileExistsError(f"{final} exists but holds no complete simulation (no world.json); "
                              "delete it and run again.")
    write_dir_atomically(final, lambda tmp: simulate(config, tmp))
    return final


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; is {path.parent} a simulation directory? "
                                "Write one with `scpo simulate --out DIR`.")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {n}: not valid JSON ({e})") from None
    return rows


def load_truth(sim_dir: str | Path) -> dict[str, Any]:
    """The truth files: texts and users as DataFrames (attributes / utilities as columns),
    ``responses`` (utterance_id -> text_id) and ``world`` (world.json)."""
    d = Path(sim_dir)
    texts = pd.DataFrame(_read_jsonl(d / "truth_texts.jsonl"))
    users = pd.DataFrame(_read_jsonl(d / "truth_users.jsonl"))
    responses = pd.DataFrame(_read_jsonl(d / "truth_responses.jsonl"))
    world_path = d / "world.json"
    if not world_path.exists():
        raise FileNotFoundError(f"{world_path} is missing; is {d} a simulation directory?")
    world = json.loads(world_path.read_text(encoding="utf-8"))
    texts = texts.join(pd.DataFrame(list(texts.pop("attributes")))[list(ATTRIBUTES)])
    users = users.join(pd.DataFrame(list(users.pop("utility")))[list(ATTRIBUTES)])
    return {"texts": texts, "users": users, "responses": responses, "world": world}


def _margin(d: np.ndarray, u: np.ndarray) -> np.ndarray:
    """u . d per row, summed in attribute order: equal utilities give bit-equal margins
    whatever the arrays' memory layout (numpy's own reductions may sum in another order)."""
    u = np.broadcast_to(u, d.shape)
    total = np.zeros(len(d))
    for k in range(d.shape[1]):
        total += d[:, k] * u[:, k]
    return total


def _utilities(world: dict[str, Any], countries: Any) -> tuple[np.ndarray, np.ndarray]:
    """(u_c per row, u_global) from world.json, in ``ATTRIBUTES`` order; a country the
    simulation does not have is an error naming it."""
    unknown = sorted(set(countries) - set(world["countries"]))
    if unknown:
        raise ValueError(f"countries {unknown} are not in this simulation (it has "
                         f"{sorted(world['countries'])})")
    u_country = np.array([[world["countries"][c]["utility"][a] for a in ATTRIBUTES]
                          for c in countries]).reshape(-1, len(ATTRIBUTES))
    return u_country, np.array([world["global_utility"][a] for a in ATTRIBUTES])


def attach_response_truth(rows: pd.DataFrame, sim_dir: str | Path) -> pd.DataFrame:
    """Add each response's noise-free utility: ``country_truth`` = u_c . a(y) (c = the row's
    ``country``) and ``global_truth`` = u_global . a(y).

    Rows name their text by ``text_id`` or, failing that, ``utterance_id``; an id the
    simulation does not know is an error. Summed as the pairs' truth margins are
    (``attach_truth``): equal attributes give bit-equal utilities, and a pair's margin is the
    difference of its two responses' utilities (up to rounding).
    """
    truth = load_truth(sim_dir)
    text_attrs = truth["texts"].set_index("text_id")[list(ATTRIBUTES)]
    if "text_id" in rows.columns:
        text = rows["text_id"].astype(str)
    elif "utterance_id" in rows.columns:
        ut_to_text = truth["responses"].set_index("utterance_id")["text_id"]
        ids = rows["utterance_id"].astype(str)
        missing = pd.unique(ids[~ids.isin(ut_to_text.index)])
        if len(missing):
            raise ValueError(f"{len(missing)} utterance id(s) not in the simulation at {sim_dir} "
                             f"(e.g. {list(missing[:3])}); were these rows read from it?")
        text = ut_to_text.loc[ids]
    else:
        raise ValueError("attach_response_truth: rows need a 'text_id' or 'utterance_id' column "
                         f"naming their response; have {list(rows.columns)}")
    missing = pd.unique(text[~text.isin(text_attrs.index)])
    if len(missing):
        raise ValueError(f"{len(missing)} text id(s) not in the simulation at {sim_dir} (e.g. "
                         f"{list(missing[:3])})")
    a = text_attrs.loc[text].to_numpy(float)
    u_country, u_global = _utilities(truth["world"], rows["country"].astype(str).to_numpy())
    return rows.assign(country_truth=_margin(a, u_country), global_truth=_margin(a, u_global))


def attach_truth(pairs: pd.DataFrame, sim_dir: str | Path) -> pd.DataFrame:
    """Add the noise-free truth of every pair built from the simulation in ``sim_dir``.

    With d = a(y+) - a(y-): ``country_truth_margin`` = u_c . d (c = the rater's country),
    ``global_truth_margin`` = u_global . d, ``user_truth_margin`` = u_user . d (the rater's own,
    noise-free) and ``outlier_rater``. Pairs are matched on chosen_id / rejected_id (utterance
    ids) and user_id; an id the simulation does not know is an error, never a silent NaN.
    """
    truth = load_truth(sim_dir)
    text_attrs = truth["texts"].set_index("text_id")[list(ATTRIBUTES)]
    ut_to_text = truth["responses"].set_index("utterance_id")["text_id"]
    users = truth["users"].set_index("user_id")
    world = truth["world"]

    def lookup(index: pd.Index, keys: pd.Series, what: str) -> None:
        missing = pd.unique(keys[~keys.isin(index)])
        if len(missing):
            raise ValueError(f"{len(missing)} {what} not in the simulation at {sim_dir} (e.g. "
                             f"{list(missing[:3])}); were these pairs built from that directory?")

    uid = pairs["user_id"].astype(str)
    cid, rid = pairs["chosen_id"].astype(str), pairs["rejected_id"].astype(str)
    lookup(ut_to_text.index, pd.concat([cid, rid]), "utterance id(s)")
    lookup(users.index, uid, "user id(s)")
    country = users.loc[uid, "country"].to_numpy()
    if "country" in pairs.columns:
        wrong = np.flatnonzero(pairs["country"].astype(str).to_numpy() != country)
        if wrong.size:
            i = wrong[0]
            raise ValueError(f"{wrong.size} pair(s) disagree with {sim_dir} on the rater's "
                             f"country (first: row {i}, user {uid.iat[i]}: pair says "
                             f"{pairs['country'].iat[i]!r}, simulation {country[i]!r})")
    d = (text_attrs.loc[ut_to_text.loc[cid]].to_numpy(float)
         - text_attrs.loc[ut_to_text.loc[rid]].to_numpy(float))
    u_country, u_global = _utilities(world, country)
    u_user = users.loc[uid, list(ATTRIBUTES)].to_numpy(float)
    out = pairs.copy()
    out["country_truth_margin"] = _margin(d, u_country)
    out["global_truth_margin"] = _margin(d, u_global)
    out["user_truth_margin"] = _margin(d, u_user)
    out["outlier_rater"] = users.loc[uid, "outlier"].to_numpy(bool)
    return out
