"""Best-of-N: which response a reward model picks among a prompt's candidates, and its worth.

Pairwise accuracy says how often a reward model orders two responses as people do. A deployer
who reranks N candidate responses (best-of-N, or a policy trained to chase the reward) gets the
one it ranks first, and that is what this module scores. For an item i (a prompt with
candidates j = 1..N_i, N_i >= 2) and a model's rewards r_ij:

    pick_i  = the first j, in the item's candidate order, with r_ij = max_k r_ik

Candidates are ordered by their id (as text); a tie at the top reward is broken by that order
and counted (``n_tied`` > 1). The pick is then scored by what the data knows of every
candidate, a value v_ij:

    value   = v_i,pick
    best    = max_j v_ij                random = (1/N_i) sum_j v_ij  (a uniformly random pick)
    regret  = best - value              (0: the best candidate was picked)
    gain    = value - random            (0: no better than a random pick)
    top     = [value = best]            chance: top_chance = n_best / N_i
    win     = (1/N_i) sum_j ([value > v_ij] + 1/2 [value = v_ij])        chance: exactly 1/2

(n_best: the candidates at the top value.) ``top`` is the win rate against the best candidate
and ``win`` the win rate against a uniformly random one (itself included, a tie).

The values: on the simulator, each response's noise-free utility under its rater's country,
``country_truth`` = u_c . a(y), and under the global consensus, ``global_truth`` = u_global . a(y)
(``scpo.simulate.attach_response_truth``, the sums of the pairs' truth margins); on
PRISM-format data, the user's own ``score`` of each response of the turn. ``top`` on the scores
is the top-choice agreement: the pick is a response the user scored highest. When several
responses share the user's top score, a pick of any of them agrees, and its chance n_best / N_i
counts them the same way; such turns are counted (``score_n_best`` > 1).

Items: each turn of a test user with its 2-4 rated responses (``turn_items``, from
``scpo.prism.test_turns``); on the simulator also each prompt's held-out test pool, every text
of which has a known truth (``pool_items``: N = the pool, the same texts for every country).
Means come with a cluster bootstrap over users (over prompts for the pool),
``scpo.evaluate.bootstrap_means``. CARB's items are best-of-N already: ``scpo.companion.carb``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scpo.companion.steer import steered_reward
from scpo.evaluate import _finite, _same_length, bootstrap_means, percentile_interval
from scpo.models import RewardModel, reads_chat
from scpo.scoring import score_texts

VALUES = ("country_truth", "global_truth", "score")  # what a candidate can be worth
METRICS = ("value", "best", "random", "regret", "gain", "top", "top_chance", "win")
ITEM_COLUMNS = ("country", "item", "user_id", "candidate", "prompt", "response")


# ---- the pick and its worth (pure) ----

def _codes(item: Any) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the items in order of first appearance, and the item labels."""
    codes, labels = pd.factorize(pd.Series(np.asarray(item).ravel()), sort=False)
    return codes.astype(np.int64), np.asarray(labels)


def _group_max(codes: np.ndarray, n_items: int, x: np.ndarray) -> np.ndarray:
    top = np.full(n_items, -np.inf)
    np.maximum.at(top, codes, x)
    return top


def _pick(codes: np.ndarray, n_items: int, r: np.ndarray) -> dict[str, np.ndarray]:
    at_top = r == _group_max(codes, n_items, r)[codes]
    first = np.full(n_items, len(r))
    np.minimum.at(first, codes[at_top], np.flatnonzero(at_top))
    return {"row": first, "n": np.bincount(codes, minlength=n_items),
            "n_tied": np.bincount(codes, weights=at_top, minlength=n_items).astype(np.int64)}


def _worth(codes: np.ndarray, n_items: int, v: np.ndarray,
           rows: np.ndarray) -> dict[str, np.ndarray]:
    n = np.bincount(codes, minlength=n_items)
    best, random = _group_max(codes, n_items, v), np.bincount(codes, weights=v) / n
    picked = v[rows]
    below = np.bincount(codes, weights=v < picked[codes], minlength=n_items)
    level = np.bincount(codes, weights=v == picked[codes], minlength=n_items)
    n_best = np.bincount(codes, weights=v == best[codes], minlength=n_items)
    return {"value": picked, "best": best, "random": random, "regret": best - picked,
            "gain": picked - random, "top": (picked == best).astype(float),
            "top_chance": n_best / n, "win": (below + 0.5 * level) / n,
            "n_best": n_best.astype(np.int64)}


def pick(item: Any, reward: Any) -> pd.DataFrame:
    """Each item's pick: one row per item (in order of first appearance) with ``item``,
    ``row`` (the position of its pick in the arrays), ``n`` (candidates) and ``n_tied``
    (candidates at the top reward; > 1 is a tie, broken by taking the first row among them).

    Rows are the items' candidates in their order (``candidate_order`` sorts a table so).
    """
    r = _finite(reward, "reward")
    codes, labels = _codes(item)
    _same_length(item=codes, reward=r)
    if r.size == 0:
        raise ValueError("pick: no candidates; an item needs >= 1 candidate")
    return pd.DataFrame({"item": labels, **_pick(codes, len(labels), r)})


def pick_worth(item: Any, value: Any, rows: Any) -> pd.DataFrame:
    """The worth of each item's pick (``rows``: positions of the picks, in the item order of
    ``pick``) under its N candidates' values v_j, one row per item::

        value = v_pick      best = max_j v_j      random = (1/N) sum_j v_j
        regret = best - value      gain = value - random
        top = [value = best], its chance top_chance = n_best / N (n_best: the v_j = best)
        win = (#{j: v_j < value} + #{j: v_j = value} / 2) / N, against a random candidate

    and n_best. ``top`` counts a pick at any of several tied best values as the best."""
    v = _finite(value, "value")
    codes, labels = _codes(item)
    _same_length(item=codes, value=v)
    rows = np.asarray(rows, dtype=np.int64).ravel()
    if len(rows) != len(labels) or not np.array_equal(codes[rows], np.arange(len(labels))):
        raise ValueError(f"pick_worth: rows must give one pick per item, in item order "
                         f"({len(labels)} items, {len(rows)} rows); pass pick(...)['row']")
    return pd.DataFrame({"item": labels, **_worth(codes, len(labels), v, rows)})


def candidate_order(items: pd.DataFrame) -> pd.DataFrame:
    """``items`` sorted by item, then candidate id as text: the order ``pick`` breaks ties by."""
    return (items.assign(_c=items["candidate"].astype(str))
            .sort_values(["item", "_c"], kind="stable").drop(columns="_c")
            .reset_index(drop=True))


def check_items(items: pd.DataFrame, where: str = "items") -> pd.DataFrame:
    """An item table: ``ITEM_COLUMNS``, every item of one country, user and prompt, >= 2
    candidates, distinct candidate ids; errors name the column or the item."""
    missing = [c for c in ITEM_COLUMNS if c not in items.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing}; an item table has "
                         f"{list(ITEM_COLUMNS)} and value columns among {list(VALUES)}")
    g = items.groupby("item", sort=False)
    for col in ("country", "user_id", "prompt"):
        many = g[col].nunique()
        if (many > 1).any():
            raise ValueError(f"{where}: item {many[many > 1].index[0]!r} has {int(many.max())} "
                             f"values of {col!r}; an item is one prompt of one {col}")
    small = g.size()
    if (small < 2).any():
        raise ValueError(f"{where}: {int((small < 2).sum())} item(s) with one candidate (e.g. "
                         f"{small[small < 2].index[0]!r}): there is no choice to make; drop them "
                         "(and count them) before")
    if items.duplicated(["item", "candidate"]).any():
        dup = items.loc[items.duplicated(["item", "candidate"]), "item"].iloc[0]
        raise ValueError(f"{where}: item {dup!r} lists a candidate id twice")
    return items


def evaluate_picks(items: pd.DataFrame, reward: Any, values: Sequence[str] = VALUES,
                   check: bool = True) -> pd.DataFrame:
    """One row per item: country, item, user_id, n, n_tied, and for each value column of
    ``items`` among ``values`` the pick's worth, ``<value>_<metric>`` and ``<value>_n_best``
    (``pick``, ``pick_worth``). ``items`` must be in ``candidate_order`` and pass
    ``check_items`` (``check=False``: the caller checked them); ``reward`` one per row."""
    if check:
        check_items(items)
    r = _finite(reward, "reward")
    _same_length(items=items["item"], reward=r)
    codes, labels = _codes(items["item"])
    picks = _pick(codes, len(labels), r)
    first = np.unique(codes, return_index=True)[1]  # codes count up from 0 in row order
    out: dict[str, Any] = {"country": items["country"].to_numpy()[first], "item": labels,
                           "user_id": items["user_id"].astype(str).to_numpy()[first],
                           "n": picks["n"], "n_tied": picks["n_tied"]}
    for name in (v for v in values if v in items.columns):
        worth = _worth(codes, len(labels), _finite(items[name], name), picks["row"])
        out.update({f"{name}_{col}": x for col, x in worth.items()})
    return pd.DataFrame(out)


def dial_picks(items: pd.DataFrame, r_glo: Any, r_country: Any, alphas: Sequence[float],
               values: Sequence[str] = VALUES) -> pd.DataFrame:
    """``evaluate_picks`` along the steering dial r_a = r_glo + a (r_country - r_glo)
    (``scpo.companion.steer.steered_reward``), one block of rows per alpha (column ``alpha``)."""
    if len(alphas) == 0:
        raise ValueError("alphas is empty; pass the grid to evaluate, e.g. [0, 0.5, 1]")
    return pd.concat([evaluate_picks(items, steered_reward(r_glo, r_country, a), values)
                      .assign(alpha=float(a)) for a in alphas], ignore_index=True)


# ---- means over items, with intervals over users ----

def metric_columns(per_item: pd.DataFrame) -> list[str]:
    """The ``<value>_<metric>`` columns of an ``evaluate_picks`` table that hold values (items
    of several kinds stacked: a value only some of them have is all NaN in the others)."""
    return [f"{v}_{m}" for v in VALUES for m in METRICS
            if f"{v}_{m}" in per_item.columns and per_item[f"{v}_{m}"].notna().any()]


def _over_seeds(per_item: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per item: several seeds' metrics averaged, their tied picks counted
    (``n_tied_picks``: the picks the tie rule decided)."""
    if "seed" not in per_item.columns:
        return per_item.assign(n_tied_picks=(per_item["n_tied"] > 1).astype(int))
    cols = metric_columns(per_item)
    d = per_item.assign(n_tied_picks=(per_item["n_tied"] > 1).astype(int))
    agg = {**dict.fromkeys(cols, "mean"), "n_tied_picks": "sum"}
    return d.groupby([*keys, "item", "user_id"], sort=False, dropna=False).agg(agg).reset_index()


def _row(key: Any, by: list[str], g: pd.DataFrame) -> dict[str, Any]:
    return {**dict(zip(by, key if isinstance(key, tuple) else (key,))), "n_items": len(g),
            "n_users": int(g["user_id"].nunique()), "n_tied_picks": int(g["n_tied_picks"].sum())}


def _interval(row: dict[str, Any], cols: list[str], means: np.ndarray, boots: np.ndarray,
              level: float) -> dict[str, Any]:
    for j, c in enumerate(cols):
        row[c] = float(means[j])
        row[f"{c}_low"], row[f"{c}_high"] = percentile_interval(boots[:, j], level)
    return row


def summarize(per_item: pd.DataFrame, by: Sequence[str] = ("country", "model"),
              n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Mean of every metric per group of ``by``, with a percentile interval from the cluster
    bootstrap over ``user_id`` (``scpo.evaluate.bootstrap_means``; the same draws for every
    metric of a group): one row per group with, for each metric column m, ``m``, ``m_low``,
    ``m_high``, and ``n_items``, ``n_users``, ``n_tied_picks`` (picks decided by the tie rule).

    With a ``seed`` column (several trained seeds), each item's metrics are first averaged
    over the seeds: the interval is over users, the seeds' spread is not in it.
    """
    by = list(by)
    d = _over_seeds(per_item, by)
    cols = metric_columns(d)
    rows = []
    for key, g in d.groupby(by, sort=False, dropna=False):
        x = g[cols].to_numpy(np.float64)
        boots = bootstrap_means(x, g["user_id"], n_boot=n_boot, seed=seed)
        rows.append(_interval(_row(key, by, g), cols, x.mean(axis=0), boots, level))
    return pd.DataFrame(rows)


def macro_summary(per_item: pd.DataFrame, by: Sequence[str] = ("model",), n_boot: int = 1000,
                  seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """The countries' macro average of every metric per group of ``by``: mean = (1/C) sum_c
    mean_c, each country counting once (several seeds: each country's mean over its seeds).
    Its interval is ``scpo.evaluate.macro_bootstrap``'s (the same draws for every metric of a
    group): each country's users drawn with replacement, and its seeds where there are
    several, then the countries averaged. Clusters that several countries share (the pool's
    prompts: every country reranks the same ones) are drawn once for all of them, as they were
    sampled once. Columns as ``summarize``'s plus ``n_countries``."""
    from scpo.evaluate import macro_bootstrap

    by = [b for b in by if b != "country"]
    d = _over_seeds(per_item, [*by, "country"])
    cols = metric_columns(d)
    shared = bool((per_item.groupby("user_id")["country"].nunique() > 1).any())
    items = dict(list(d.groupby(by, sort=False, dropna=False))) if by else {(): d}
    rows = []
    for key, g in (per_item.groupby(by, sort=False, dropna=False) if by else [((), per_item)]):
        seeds = g["seed"] if "seed" in g.columns else np.zeros(len(g))
        point, boots = macro_bootstrap(g[cols].to_numpy(np.float64), g["country"], g["user_id"],
                                       seeds, n_boot=n_boot, seed=seed, shared_clusters=shared)
        row = {**_row(key, by, items[key]), "n_countries": int(g["country"].nunique())}
        rows.append(_interval(row, cols, point, boots, level))
    return pd.DataFrame(rows)


# ---- the candidates ----

def item_rewards(rm: RewardModel, items: pd.DataFrame, root: Path | None = None) -> np.ndarray:
    """r(x, y) of every candidate of ``items``, each distinct text scored once through the
    score cache (``scpo.scoring.score_texts``)."""
    return score_texts(rm, items[["prompt", "response"]], root)


def picks_by_country(items: pd.DataFrame, models: Mapping[str, RewardModel],
                     values: Sequence[str] = VALUES, root: Path | None = None) -> pd.DataFrame:
    """``evaluate_picks`` of each country's model (country -> model) on that country's items,
    stacked; a country without items is an error naming it."""
    check_items(items)
    out = []
    for country, rm in models.items():
        mine = items[items["country"] == country].reset_index(drop=True)
        if mine.empty:
            raise ValueError(f"no best-of-N items of {country!r}; the items have "
                             f"{sorted(items['country'].unique())}")
        out.append(evaluate_picks(mine, item_rewards(rm, mine, root), values, check=False))
    return pd.concat(out, ignore_index=True)


def turns_of(prep: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``turn_items`` of a run's data (``scpo.scoring.RunInputs``: its simulation, PRISM's
    directory or the hub), with its split and prompts, for the run's countries; the report's
    counts (``n_turns``, ``single_response_turns``, ``turns_with_tied_top_score``) are those
    countries'."""
    cfg, model = prep.cfg.data, prep.cfg.model
    if prep.data.source == "goqa":
        raise ValueError("GlobalOpinionQA has no rated responses to pick among; best-of-N needs "
                         "PRISM-format data (PRISM or the simulator)")
    items, report = turn_items(prep.data.meta.get("sim_dir", cfg.data_dir),
                               revision=cfg.revision, test_frac=cfg.test_frac,
                               split_seed=cfg.split_seed, prompt_context=cfg.prompt_context)
    if cfg.prompt_context == "history" and reads_chat(model):  # as ``prepare`` gives its pairs
        items = items.assign(prompt=items["messages"])
    items = items[items["country"].isin(prep.countries)].reset_index(drop=True)
    report = {**report, "countries": list(prep.countries),
              "n_turns": int(items["item"].nunique()), "n_responses": len(items),
              **{k: sum(report[f"{k}_by_country"].get(c, 0) for c in prep.countries)
                 for k in ("single_response_turns", "turns_with_tied_top_score")}}
    return items, report


def turn_items(data_dir: str | Path | None, *, revision: str | None = None,
               test_frac: float = 0.15, split_seed: int = 0,
               prompt_context: str = "turn") -> tuple[pd.DataFrame, dict[str, Any]]:
    """The test users' turns of PRISM-format data (``scpo.prism.load_test_turns``: a directory,
    or the hub when ``data_dir`` is None) as best-of-N items, in ``candidate_order``: one item
    per turn with 2 or more rated responses; the user's ``score`` of each, and on a simulation
    (a directory with ``world.json``) each response's ``country_truth`` and ``global_truth``.
    Returns (items, report); the report counts the turns left out (one response) and those
    whose top user score is shared (in all and per country)."""
    from scpo.prism import load_test_turns

    turns, report = load_test_turns(data_dir, revision=revision, test_frac=test_frac,
                                    split_seed=split_seed, prompt_context=prompt_context)
    if data_dir is not None and (Path(data_dir) / "world.json").is_file():
        from scpo.simulate import attach_response_truth

        turns = attach_response_truth(turns, data_dir)
    items = candidate_order(turns.rename(columns={"interaction_id": "item",
                                                  "utterance_id": "candidate"}))
    top = items[items.groupby("item")["score"].transform("max") == items["score"]]
    tied = top.groupby("item").agg(country=("country", "first"), n=("score", "size"))
    tied = tied[tied["n"] > 1]
    report["turns_with_tied_top_score"] = len(tied)
    report["turns_with_tied_top_score_by_country"] = {
        str(c): int(n) for c, n in tied["country"].value_counts().sort_index().items()}
    return check_items(items, "test turns"), report


def pool_items(sim_dir: str | Path, countries: Sequence[str]) -> pd.DataFrame:
    """Each prompt's held-out test pool of a simulation as one item per country (the same
    texts, valued by each country's truth), in ``candidate_order``; ``user_id`` is the prompt
    (the bootstrap resamples prompts). Without held-out texts the pool is every text of the
    prompt (pool "shared"), which the training users rated too."""
    from scpo.simulate import attach_response_truth, load_truth

    texts = load_truth(sim_dir)["texts"]
    pool = texts[texts["pool"].isin(["test", "shared"])]
    rows = [pool.assign(country=c) for c in countries]
    if not rows:
        raise ValueError("pool_items: no countries given")
    d = pd.concat(rows, ignore_index=True)
    d = attach_response_truth(d, sim_dir)
    prompt = "prompt" + d["prompt_id"].astype(int).map("{:02d}".format)
    items = pd.DataFrame({"country": d["country"], "item": d["country"] + "/" + prompt,
                          "user_id": prompt, "candidate": d["text_id"], "prompt": d["prompt"],
                          "response": d["response"], "country_truth": d["country_truth"],
                          "global_truth": d["global_truth"]})
    return check_items(candidate_order(items), f"test pool of {sim_dir}")


# ---- tables ----

PERCENT = ("top", "top_chance", "win")  # fractions, shown in percent
LABELS = {"score_top": "top-choice agreement (%)", "score_top_chance": "its chance (%)",
          "score_value": "user's score of the pick", "score_random": "of a random pick",
          "country_truth_gain": "country truth: gain over random",
          "country_truth_regret": "country truth: regret",
          "country_truth_top": "country truth: best picked (%)",
          "global_truth_gain": "consensus: gain over random",
          "global_truth_regret": "consensus: regret",
          "global_truth_top": "consensus: best picked (%)"}


def cells(summary: pd.DataFrame, columns: Mapping[str, str], index: str | Sequence[str]
          ) -> pd.DataFrame:
    """A ``summarize`` / ``macro_summary`` table as the book shows it: each metric of
    ``columns`` (column -> label; those absent are skipped) as "mean [low, high]", fractions
    (``PERCENT`` metrics) in percent with one decimal, utilities and scores with two."""
    out = summary.set_index(index)
    shown = {}
    for col, name in columns.items():
        if col not in out.columns:
            continue
        k, fmt = (100.0, "{:.1f}") if col.endswith(PERCENT) else (1.0, "{:.2f}")
        shown[name] = [f"{fmt.format(k * m)} [{fmt.format(k * lo)}, {fmt.format(k * hi)}]"
                       for m, lo, hi in zip(out[col], out[f"{col}_low"], out[f"{col}_high"])]
    return pd.DataFrame(shown, index=out.index)


VALUE_LABELS = {"country_truth": "country's truth", "global_truth": "consensus",
                "score": "user's score"}


def worth_table(summary: pd.DataFrame, top: tuple[str, str] | None = None,
                index: str = "model") -> pd.DataFrame:
    """What each model's pick is worth (``summarize`` / ``macro_summary`` rows, one per
    model): the mean value of the pick under each value the items have, "mean [low, high]",
    and, when ``top`` = (value, label), how often the pick is that value's best candidate (%).
    Models are named and ordered as in ``scpo.variants``; below them, the same for a uniformly
    random candidate (``random``; its best-picked rate is the chance ``top_chance``) and the
    best candidate (``best``), which do not depend on the model (the first row's are shown)."""
    from scpo.variants import KNOWN

    have = [v for v in VALUE_LABELS if f"{v}_value" in summary.columns]
    cols = {f"{v}_value": VALUE_LABELS[v] for v in have}
    if top is not None:
        cols[f"{top[0]}_top"] = top[1]
    order = [m for m in KNOWN if m in set(summary[index])] + [
        m for m in summary[index] if m not in KNOWN]
    table = cells(summary, cols, index).loc[order]
    table.index = [KNOWN[m].label if m in KNOWN else m for m in order]
    first = summary.iloc[[0]]
    ref = {}
    for name, metric in (("a random candidate", "random"), ("the best candidate", "best")):
        row = first.assign(**{f"{v}_value{e}": first[f"{v}_{metric}{e}"] for v in have
                              for e in ("", "_low", "_high")})
        if top is not None:
            for e in ("", "_low", "_high"):
                row[f"{top[0]}_top{e}"] = (first[f"{top[0]}_top_chance{e}"] if metric == "random"
                                           else 1.0)
        ref[name] = cells(row, cols, index).iloc[0]
    return pd.concat([table, pd.DataFrame(ref).T]).rename_axis("pick of")


def cli_table(summary: pd.DataFrame) -> pd.DataFrame:
    """``scpo bon``'s table: per country, the items and users, the picks decided by the tie
    rule, and the metrics of ``LABELS`` the data has."""
    counts = summary.set_index("country")[["n_items", "n_users", "n_tied_picks"]].rename(
        columns={"n_items": "turns", "n_users": "users", "n_tied_picks": "tied picks"})
    return counts.join(cells(summary, LABELS, "country"))
