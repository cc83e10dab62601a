"""Tables from tidy results: what the CLI prints and the book shows.

Accuracies are shown in percent. "mean ± sd" is over seeds (training variance); the bootstrap
CI (test-set variance, users resampled) is reported as its half-width averaged over seeds.
Numbers from the paper are kept apart in ``PAPER_REPORTED`` and always labelled as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from scpo import evaluate
from scpo.variants import KNOWN

# Reported in the paper (OpenAssistant RM, PRISM, 7-country macro average; spec §6).
# Never our output: the book prints these next to ours under the label "reported in the paper".
PAPER_REPORTED = pd.DataFrame({
    "overall": {"global": 58.55, "baseline": 62.12, "filtered": 46.87, "inverse_weighted": 56.62,
                "scpo_w": 61.13, "scpo_fw": 62.72, "scpo_fw_tuned": 63.42},
    "pure_minority": {"global": 0.0, "baseline": 27.37, "filtered": 63.01,
                      "inverse_weighted": 46.70, "scpo_w": 18.21, "scpo_fw": 40.57,
                      "scpo_fw_tuned": np.nan},
})
PAPER_REPORTED.index.name = "variant"
# A cell of PAPER_REPORTED that the paper's table shows but that is true by definition, not a
# result: the global RM is wrong on every pure-minority pair by construction (spec §3)
BY_CONSTRUCTION = {("global", "pure_minority")}
# The paper's (and its released code's) setting that a run may or may not share (spec §1, §3-§4,
# §7); what a page says is "as in the paper" is checked against these
PAPER_SETTING = {"tau": 0.7, "beta": 1.10, "test_frac": 0.15, "split_seed": 0,
                 "prompt_context": "turn"}


def _order(variants) -> list[str]:
    return [v for v in KNOWN if v in set(variants)]


# The book's tables in words: a code name -> (group, column) of a two-level header. The code
# names stay what the CLI prints and the tests read; ``readable`` is for people.
COLUMNS = {
    "overall (%)": ("Overall", "accuracy (%)"),
    "overall CI ±": ("Overall", "95 % CI ±"),
    "pure_minority (%)": ("Pure minority", "accuracy (%)"),
    "pure_minority CI ±": ("Pure minority", "95 % CI ±"),
    "country_truth (%)": ("Agrees with the truth", "country's (%)"),
    "global_truth (%)": ("Agrees with the truth", "consensus (%)"),
    "1 - JSD": ("Opinion alignment", "1 − JSD"),
    "kept (pooled)": ("Training pairs kept (%)", "all countries"),
    "kept (macro)": ("Training pairs kept (%)", "mean of countries"),
    "accuracy": ("", "Observed labels (%)"),
    "country_truth_accuracy": ("", "Country's truth (%)"),
    "global_truth_accuracy": ("", "Global consensus (%)"),
    "overall": ("", "Overall"),
    "pure_minority": ("", "Pure minority"),
    "macro avg": ("", "Mean of countries"),
}
PERCENT = {"kept (pooled)", "kept (macro)"}  # fractions the book shows in percent
DECIMALS = {"1 - JSD": 3}  # every other float: one decimal


def readable(table: pd.DataFrame, index: str = "Variant") -> pd.DataFrame:
    """``table`` as the book shows it: variants by their label in the one order of
    ``scpo.variants``, columns in words (``COLUMNS``; two header levels where they group),
    fractions in percent (``PERCENT``) and floats to one decimal (``DECIMALS``)."""
    out = table.copy()
    for c in out.columns:
        if c in PERCENT:
            out[c] = 100 * out[c]
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = out[c].round(DECIMALS.get(c, 1))
    if set(out.index) <= set(KNOWN):
        out = out.loc[_order(out.index)]
        out.index = [KNOWN[v].label for v in out.index]
        out.index.name = index
    names = [COLUMNS.get(c, ("", str(c))) for c in out.columns]
    if any(group for group, _ in names):
        out.columns = pd.MultiIndex.from_tuples(names)
    else:
        out.columns = [name for _, name in names]
    return out


def per_country(results: pd.DataFrame, test_set: str = "overall",
                value: str = "accuracy") -> pd.DataFrame:
    """variant x (countries + "macro avg"): mean over seeds, in percent for accuracies."""
    r = results[results["test_set"] == test_set]
    t = r.pivot_table(index="variant", columns="country", values=value, aggfunc="mean")
    macro = evaluate.macro_average(r, value=value, by=("variant", "seed"))
    t["macro avg"] = macro.groupby("variant")[value].mean()
    scale = 100.0 if value.endswith("accuracy") else 1.0
    return (t.loc[_order(t.index)] * scale).round(2)


def macro_summary(results: pd.DataFrame, test_set: str = "overall",
                  value: str = "accuracy") -> pd.DataFrame:
    """Per variant: macro average over countries, mean and sd over seeds (percent)."""
    r = results[results["test_set"] == test_set]
    macro = evaluate.macro_average(r, value=value, by=("variant", "seed"))
    s = evaluate.seed_summary(macro, value=value, by=("variant",)).set_index("variant")
    scale = 100.0 if value.endswith("accuracy") else 1.0
    s[["mean", "sd"]] *= scale
    return s.loc[_order(s.index)]


def ci_halfwidth(results: pd.DataFrame, test_set: str = "overall") -> pd.Series:
    """Per variant: the macro average's 95 % CI half-width (percent).

    Each country's half-width (hi - lo) / 2 is averaged over seeds; countries are independent
    samples, so the macro average's half-width is sqrt(sum_c h_c^2) / C (normal approximation).
    """
    r = results[results["test_set"] == test_set].assign(h=lambda d: (d.ci_high - d.ci_low) / 2)
    h = r.groupby(["variant", "country"])["h"].mean()
    out = h.groupby("variant").apply(lambda x: np.sqrt(np.nansum(x**2)) / x.notna().sum())
    return (out * 100).loc[_order(out.index)]


def _pm(s: pd.DataFrame) -> pd.Series:
    return s.apply(lambda row: f"{row['mean']:.1f} ± {row['sd']:.1f}"
                   if np.isfinite(row["sd"]) else f"{row['mean']:.1f}", axis=1)


def main_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per variant: overall and pure-minority macro accuracy (mean ± sd over seeds), CI
    half-width, kept-pair ratio (pooled and macro), and truth accuracies when present."""
    out = pd.DataFrame(index=_order(results["variant"].unique()))
    out.index.name = "variant"
    for ts in ("overall", "pure_minority"):
        out[f"{ts} (%)"] = _pm(macro_summary(results, ts))
        out[f"{ts} CI ±"] = ci_halfwidth(results, ts).round(2)
    for col in ("country_truth_accuracy", "global_truth_accuracy", "jsd_alignment"):
        if col in results.columns and results[col].notna().any():
            name = col.replace("_accuracy", " (%)").replace("jsd_alignment", "1 - JSD")
            out[name] = _pm(macro_summary(results, "overall", col)) if "accuracy" in col else \
                macro_summary(results, "overall", col)["mean"].round(4)
    ov = results[(results["test_set"] == "overall") & (results["seed"] == results["seed"].min())]
    kept = evaluate.kept_ratio(ov, by=("variant",)).set_index("variant")
    out["kept (pooled)"] = kept["pooled"].round(3)
    out["kept (macro)"] = kept["macro"].round(3)
    return out


def country_sizes(results: pd.DataFrame) -> pd.DataFrame:
    """Per country: training users and pairs, test users and pairs, and pure-minority test
    pairs, read from a run's result rows (the first seed's; they do not change with the seed)."""
    r = results[results["seed"] == results["seed"].min()].drop_duplicates(["country", "test_set"])
    ov = r[r["test_set"] == "overall"].set_index("country")
    pm = r[r["test_set"] == "pure_minority"].set_index("country")
    return pd.DataFrame({"training users": ov["n_train_users"], "training pairs": ov["n_train"],
                         "test users": ov["n_users"], "test pairs": ov["n_pairs"],
                         "pure-minority test pairs": pm["n_pairs"].reindex(ov.index)}
                        ).astype(int)


def paper_comparison(results: pd.DataFrame) -> pd.DataFrame:
    """Our macro averages next to the paper's, the latter labelled "reported in the paper"."""
    ours = {ts: macro_summary(results, ts)["mean"].round(2) for ts in ("overall", "pure_minority")}
    t = pd.DataFrame({
        "overall, ours": ours["overall"],
        "overall, reported in the paper": PAPER_REPORTED["overall"],
        "pure minority, ours": ours["pure_minority"],
        "pure minority, reported in the paper": PAPER_REPORTED["pure_minority"],
    })
    return t.loc[_order(t.index)]


def paper_cells(results: pd.DataFrame) -> pd.DataFrame:
    """``paper_comparison`` as a page shows it: ours to one decimal, the paper's to two, and
    "—" with why where there is no number (a variant the paper did not report, or one this
    run did not have); the global RM's pure-minority 0 is labelled true by construction."""
    t = paper_comparison(results)
    ran = set(results["variant"])
    out = pd.DataFrame(index=t.index)
    for col in t.columns:
        paper = "reported in the paper" in col
        ts = "overall" if col.startswith("overall") else "pure_minority"
        cells = []
        for v, x in t[col].items():
            if paper and (v, ts) in BY_CONSTRUCTION:
                cells.append("0 (by construction, not a result)")
            elif np.isfinite(x):
                cells.append(f"{x:.2f}" if paper else f"{x:.1f}")
            elif paper:
                cells.append("— (not in the paper)" if v not in PAPER_REPORTED.index
                             else "— (not reported)")
            else:
                cells.append("— (no such pairs)" if v in ran else "— (not run here)")
        out[col] = cells
    return out


def controls(results: pd.DataFrame) -> pd.DataFrame:
    """The like-for-like comparisons: each variant against its random controls of the same size
    (``variants.CONTROLS``: filtered vs random_subset, both unweighted; SCPO (F+W) vs
    random_fw_weights, the same weights on random pairs, and vs random_own_weights, random
    pairs with their own SCPO weights), per test set.

    Macro accuracies (%) and their difference, mean and sd over seeds of the per-seed
    difference of macro averages, the number of countries whose seed-mean favours the variant,
    and (when ``weight_sum`` is recorded) the control's training weight over the variant's,
    summed over countries and seeds: 1 when matched in weight. Pairs absent from ``results``
    are left out.
    """
    from scpo.variants import CONTROLS

    rows = []
    for control, variant in CONTROLS.items():
        if not {control, variant} <= set(results["variant"]):
            continue
        for ts in ("overall", "pure_minority"):
            r = results[results["test_set"] == ts]
            macro = evaluate.macro_average(r[r["variant"].isin([variant, control])],
                                           by=("variant", "seed"))
            m = macro.pivot(index="seed", columns="variant", values="accuracy") * 100
            diff = m[variant] - m[control]
            per_c = r.pivot_table(index="country", columns="variant", values="accuracy",
                                  aggfunc="mean")
            weight = (r.groupby("variant")["weight_sum"].sum()
                      if "weight_sum" in r.columns else pd.Series(dtype=float))
            rows.append({"variant": variant, "control": control, "test_set": ts,
                         "variant (%)": m[variant].mean(), "control (%)": m[control].mean(),
                         "difference": diff.mean(),
                         "sd over seeds": diff.std(ddof=1) if len(diff) > 1 else np.nan,
                         "countries favouring variant": int((per_c[variant] > per_c[control])
                                                            .sum()),
                         "countries": len(per_c),
                         "weight, control / variant": (weight.get(control, np.nan)
                                                       / weight.get(variant, np.nan))})
    return pd.DataFrame(rows)


CONTROL_COLUMNS = {"variant (%)": "A (%)", "control (%)": "B (%)", "difference": "A − B",
                   "sd over seeds": "sd", "countries favouring variant": "countries A > B",
                   "weight, control / variant": "weight B / A"}


def readable_controls(ctrl: pd.DataFrame) -> pd.DataFrame:
    """``controls`` as a page shows it, narrow enough for the text column: one row per
    comparison "A − B" (labels) and test set, short column names (``CONTROL_COLUMNS``; "sd"
    left out where there is one seed)."""
    if ctrl.empty:
        return ctrl
    from scpo.variants import VARIANTS

    out = ctrl.assign(comparison=[f"{VARIANTS[a].label} − {VARIANTS[b].label}"
                                  for a, b in zip(ctrl["variant"], ctrl["control"])],
                      test_set=ctrl["test_set"].str.replace("_", " "))
    cols = [c for c in CONTROL_COLUMNS if c in out.columns
            and not (c == "sd over seeds" and out[c].isna().all())]
    out = out.set_index(["comparison", "test_set"])[cols].rename(columns=CONTROL_COLUMNS)
    out.index.names = ["A − B", "test set"]
    return out.round(2)


def published_table(results: pd.DataFrame,
                    card: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """Per country, from a run of the preset "published": accuracy (%) of the global RM and of
    the given country RM in eval mode with its 95 % CI (first seed; eval scores repeat), of the
    given RM with dropout on as mean ± sd over seeds, the test pairs, and, labelled as such, the
    overall accuracies recorded on the authors' model cards
    (``scpo.companion.published.CARD_RECORDED``)."""
    first = results["seed"].min()
    out: dict[str, dict[str, Any]] = {}
    for (country, ts), g in results.groupby(["country", "test_set"], sort=False):
        row = out.setdefault(country, {})
        for v, name in (("global", "global RM"), ("published", "published, eval")):
            r = g[(g["variant"] == v) & (g["seed"] == first)]
            if len(r):
                a, lo, hi = 100 * r.iloc[0][["accuracy", "ci_low", "ci_high"]].astype(float)
                row[f"{ts}: {name}"] = f"{a:.2f} [{lo:.1f}, {hi:.1f}]"
        d = 100 * g.loc[g["variant"] == "published_dropout", "accuracy"].astype(float)
        if len(d):
            sd = d.std(ddof=1) if len(d) > 1 else 0.0
            row[f"{ts}: published, dropout on"] = f"{d.mean():.2f} ± {sd:.2f}"
        row[f"{ts}: test pairs"] = int(g["n_pairs"].iloc[0])
    for country, rec in (card or {}).items():
        if country in out:
            out[country]["overall: global RM, recorded on the authors' model card"] = \
                f"{rec['global_overall']:.2f}"
            out[country]["overall: SCPO RM, recorded on the authors' model card"] = \
                f"{rec['published_overall']:.2f}"
    return pd.DataFrame(out).T.fillna("")


def efficiency_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per variant and country, seed-averaged: pairs, gain over the global RM, the accuracy
    difference to the baseline, the companion's ``efficiency`` (gain per pair relative to the
    baseline's, ``evaluate.data_efficiency``) and the paper's definition, ``inverse_kept``
    (baseline pairs / variant pairs, ``evaluate.inverse_kept_fraction``)."""
    r = results[results["test_set"] == "overall"]
    m = r.groupby(["country", "variant"])[["accuracy", "n_kept"]].mean()
    rows = []
    for c in r["country"].unique():
        if not {"global", "baseline"} <= set(m.loc[c].index):
            continue
        g, b = m.loc[(c, "global"), "accuracy"], m.loc[(c, "baseline")]
        for v, row in m.loc[c].iterrows():
            if v == "global" or row["n_kept"] <= 0:
                continue
            rows.append({"country": c, "variant": v, "n_pairs": int(row["n_kept"]),
                         "gain": 100 * (row["accuracy"] - g),
                         "vs_baseline": 100 * (row["accuracy"] - b["accuracy"]),
                         "inverse_kept": evaluate.inverse_kept_fraction(row["n_kept"],
                                                                        b["n_kept"]),
                         "efficiency": evaluate.data_efficiency(
                             row["accuracy"], row["n_kept"], b["accuracy"], b["n_kept"], g)})
    return pd.DataFrame(rows)


# ---- verdicts: what a source's runs say about a statement "A - B" ----

KEEP_POINTS = 1.0  # "keeps the accuracy": loses less than this many points
LEVEL = 0.95  # of every verdict's interval
N_BOOT = 2000  # its bootstrap resamples
BOOT_SEED = 0  # and their seed: the same runs give the same intervals
RULE = (
    "Each difference A − B is in accuracy points: per country and seed, A's accuracy minus "
    "B's on the same test pairs; then the mean over seeds and over countries (each country "
    "counts once). Its 95 % interval is a paired, clustered bootstrap of that mean "
    f"({N_BOOT:,} resamples): within each country the test users are drawn with "
    "replacement (the same users for A and B, each with all their pairs) and, where there are "
    "several, the training seeds too; then the countries are averaged. So the interval "
    "carries both sources of noise, which test users were drawn and which seeds; with one "
    "seed, or seeds that repeat one scoring, it is the users' alone. A statement has a "
    "threshold: 0 for \"A beats B\" and \"A is below B\", −1 point for \"A keeps B's "
    "accuracy\" (loses less than one point). The verdict is *within noise* when the interval "
    "covers the threshold; otherwise *holds* when it lies on the stated side and at least two "
    "thirds of the country × seed runs agree, *reversed* when it lies on the other side and "
    "two thirds disagree, *mixed* in between; *not measured* where a source lacks A or B.")


@dataclass(frozen=True)
class Difference:
    """A - B over a source's runs (``paired_difference``), in points."""

    mean: float  # the mean over countries of the mean over seeds
    low: float  # its percentile interval from the paired, clustered bootstrap
    high: float
    runs: pd.Series  # (country, seed) -> that run's mean difference


def paired_difference(table: pd.DataFrame, a: str, b: str, value: str = "correct", *,
                      model: str = "variant", unit: str = "pair",
                      shared_clusters: bool = False, n_boot: int = N_BOOT,
                      seed: int = BOOT_SEED, level: float = LEVEL) -> Difference | None:
    """A - B (x 100: points) of ``value`` on the units both were scored on, with one interval
    for both sources of noise: ``scpo.evaluate.macro_bootstrap`` of the per-unit differences
    (clusters ``user_id``; within each country its users and its seeds are drawn, the same
    users for A and B), its percentile interval at ``level``.

    ``table`` has one row per (country, seed, ``model``, ``unit``): the per-pair outcomes of a
    run (``scpo.results.PREDICTIONS``), or best-of-N's per-item picks (``model="model"``,
    ``unit="item"``; ``shared_clusters`` for a pool whose prompts every country shares). A
    unit where A or B has no value (NaN: a truth tie) is left out. None when ``table`` lacks A
    or B (the comparison is not measured)."""
    keys = ["country", "seed", unit, "user_id"]
    t = table.loc[table[model].isin([a, b]), keys + [model, value]]
    if t.empty or not {a, b} <= set(t[model]):
        return None
    wide = t.set_index(keys + [model])[value].astype(float).unstack(model)
    d = (100 * (wide[a] - wide[b])).dropna()
    if d.empty:
        return None
    idx = d.index
    point, reps = evaluate.macro_bootstrap(
        d.to_numpy(), idx.get_level_values("country"), idx.get_level_values("user_id"),
        idx.get_level_values("seed"), n_boot=n_boot, seed=seed, shared_clusters=shared_clusters)
    low, high = evaluate.percentile_interval(reps, level)
    runs = d.groupby(level=["country", "seed"], sort=True).mean()
    return Difference(float(point), low, high, runs)


def said(diff: Difference | None, up: str, down: str, flat: str, unit: str = " points",
         digits: int = 1) -> str:
    """What a sentence may say of a difference, and the numbers it rests on: ``up`` when its
    interval lies above 0, ``down`` when below, ``flat`` when it covers 0 (within the noise),
    followed by "(d points [low, high])" (``unit``, ``digits`` decimals). The book's sentences
    that state an effect are made here, so that they follow the sign and the interval of their
    glued numbers."""
    if diff is None:
        return "not measured here"
    low, high = round(diff.low, digits), round(diff.high, digits)  # as the reader sees them
    word = up if low > 0 else down if high < 0 else flat
    f = f"+.{digits}f"
    return f"{word} ({diff.mean:{f}}{unit} [{low:{f}}, {high:{f}}])"


def said_over_seeds(values: Any, up: str, down: str, flat: str) -> str:
    """``said`` for a difference measured once per seed without per-pair outcomes (a
    benchmark's committed runs): ``up`` when every seed's is above 0, ``down`` when every one
    is below, ``flat`` otherwise; followed by "(min to max points over n seeds)"."""
    v = np.round(np.asarray(values, dtype=float), 1)  # as the reader sees them
    if not v.size or not np.isfinite(v).all():
        return "not measured here"
    word = up if (v > 0).all() else down if (v < 0).all() else flat
    return f"{word} ({v.min():+.1f} to {v.max():+.1f} points over {v.size} seeds)"


def interval_of(values: Any, countries: Any, clusters: Any, seeds: Any | None = None,
                shared_clusters: bool = False) -> Difference:
    """A ``Difference`` of per-unit values already in points (e.g. each test pair's home model
    minus the mean of the away models): ``evaluate.macro_bootstrap``'s mean and percentile
    interval (``N_BOOT``, ``BOOT_SEED``, ``LEVEL``)."""
    seeds = np.zeros(len(values)) if seeds is None else seeds
    point, reps = evaluate.macro_bootstrap(values, countries, clusters, seeds, n_boot=N_BOOT,
                                           seed=BOOT_SEED, shared_clusters=shared_clusters)
    low, high = evaluate.percentile_interval(reps, LEVEL)
    runs = pd.Series(np.asarray(values, dtype=float)).groupby(
        [np.asarray(countries), np.asarray(seeds)]).mean()
    return Difference(float(point), low, high, runs)


@dataclass(frozen=True)
class Verdict:
    """What a source's runs say about one statement (``claim_verdict``)."""

    verdict: str  # "holds", "reversed", "mixed", "within noise" or "not measured"
    agreeing: int  # runs (country x seed) on the statement's side of its threshold
    runs: int  # runs measured
    mean: float  # A - B, points (``Difference``)
    low: float  # its interval
    high: float


def claim_verdict(diff: Difference | None, direction: int) -> Verdict:
    """Whether "A - B" (``paired_difference``) supports a statement (``RULE``). The threshold is
    0 (direction +1: "A beats B", -1: "A is below B") or -``KEEP_POINTS`` (direction 0: "A loses
    less than one point to B"). "not measured" without a difference; "within noise" when its
    interval covers the threshold; else "holds" when the interval lies on the stated side and
    at least 2/3 of the runs agree, "reversed" when it lies on the other side and at least 2/3
    of the runs are against, "mixed" otherwise."""
    if diff is None or not len(diff.runs):
        return Verdict("not measured", 0, 0, np.nan, np.nan, np.nan)
    threshold = -KEEP_POINTS if direction == 0 else 0.0
    side = -1 if direction < 0 else 1  # where the statement puts A - B, from the threshold
    runs = diff.runs.to_numpy(dtype=float)
    agree, against = side * (runs - threshold) > 0, side * (runs - threshold) < 0
    if diff.low <= threshold <= diff.high:
        verdict = "within noise"
    elif (diff.low > threshold) == (side > 0):  # the interval lies on the stated side
        verdict = "holds" if agree.mean() >= 2 / 3 else "mixed"
    else:
        verdict = "reversed" if against.mean() >= 2 / 3 else "mixed"
    return Verdict(verdict, int(agree.sum()), len(runs), diff.mean, diff.low, diff.high)


def mean_ci_halfwidth(results: pd.DataFrame) -> pd.Series:
    """Per test set: the mean half-width (points) of the rows' 95 % bootstrap intervals, the
    scale of a difference one test set can resolve. The global RM's pure-minority rows are
    left out: it is wrong on every such pair by construction, so their interval is [0, 0]."""
    r = results[~((results["variant"] == "global") & (results["test_set"] == "pure_minority"))]
    return (100 * (r["ci_high"] - r["ci_low"]) / 2).groupby(r["test_set"]).mean()
