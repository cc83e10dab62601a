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


def published_table(results: pd.DataFrame,
                    card: dict[str, dict[str, float]] | None = None) -> pd.DataFrame:
    """Per country, from a run of the preset "published": accuracy (%) of the global RM and of
    the given country RM in eval mode with its 95 % CI (first seed; eval scores repeat), of the
    given RM with dropout on as mean ± sd over seeds, the test pairs, and, labelled as such, the
    overall accuracies recorded on the authors' model cards (``scpo.published.CARD_RECORDED``)."""
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


# ---- the ladder study: the book's statements, checked per fine-tuning depth ----

# (key, statement, test set ("country_truth": the simulator's truth on the overall pairs),
#  variant A, variant B, direction: +1 "A beats B", -1 "A is below B", 0 "A loses < 1 point")
LADDER_CLAIMS = [
    ("filter_moves", "Filtering alone moves toward the minority: filtered only beats the "
     "baseline on pure-minority pairs", "pure_minority", "filtered", "baseline", 1),
    ("weights_pull_back", "Adding the weights pulls filtering back: filtered only beats SCPO "
     "(F+W) on pure-minority pairs", "pure_minority", "filtered", "scpo_fw", 1),
    ("w_least", "SCPO (W) moves least: it scores below SCPO (F+W) on pure-minority pairs",
     "pure_minority", "scpo_w", "scpo_fw", -1),
    ("fw_keeps", "SCPO (F+W) keeps the baseline's overall accuracy (loses less than one point)",
     "overall", "scpo_fw", "baseline", 0),
    ("filter_vs_random", "The filter's pairs beat as many random pairs on pure-minority pairs",
     "pure_minority", "filtered", "random_subset", 1),
    ("truth", "On the simulator's country truth, SCPO (F+W) beats filtering alone (overall "
     "test pairs)", "country_truth", "scpo_fw", "filtered", 1),
]
KEEP_POINTS = 1.0  # "keeps the accuracy": loses less than this many points
LEVEL = 0.95  # of the seed-level interval of a mean difference


@dataclass(frozen=True)
class Verdict:
    """What the runs say about one statement (``claim_verdict``)."""

    verdict: str  # "holds", "reversed", "mixed", "within noise" or "not measured"
    agreeing: int  # measured runs on the statement's side of its threshold
    runs: int  # measured runs (a NaN difference is not measured, not a disagreement)
    not_measured: int  # runs whose difference is NaN
    mean: float  # the mean over seeds of each seed's mean difference (points)
    low: float  # the seed-level 95 % interval of that mean (-inf..inf with one seed)
    high: float


def seed_interval(diffs: np.ndarray, seeds: np.ndarray) -> tuple[float, float]:
    """(mean, half-width): each seed's mean difference, then the mean of those and the
    half-width of its Student-t interval at ``LEVEL`` (t quantile with n_seeds - 1 degrees of
    freedom x sd / sqrt(n_seeds)); inf with fewer than two seeds, where no interval exists."""
    from scipy.stats import t

    means = pd.Series(np.asarray(diffs, dtype=float)).groupby(np.asarray(seeds)).mean()
    n = len(means)
    if n < 2:
        return float(means.mean()) if n else np.nan, np.inf
    q = float(t.ppf((1 + LEVEL) / 2, n - 1))
    return float(means.mean()), q * float(means.std(ddof=1)) / np.sqrt(n)


def claim_verdict(diffs: np.ndarray, direction: int, seeds: np.ndarray) -> Verdict:
    """Whether "A - B" (points, one per country x seed run, ``seeds`` naming each run's seed)
    supports a statement. The threshold is 0 (direction +1: "A beats B", -1: "A is below B")
    or -``KEEP_POINTS`` (direction 0: "A loses less than one point to B").

    "not measured" when no run has a difference (NaN runs are counted apart, never against);
    "within noise" when the seed-level interval of the mean difference (``seed_interval``)
    covers the threshold, so the seeds cannot tell the difference from the threshold; else
    "holds" when the mean is on the stated side and at least 2/3 of the runs agree, "reversed"
    when it is on the other side and at least 2/3 of the runs are against, and "mixed"
    otherwise."""
    d = np.asarray(diffs, dtype=float)
    s = np.asarray(seeds)
    if d.shape != s.shape:
        raise ValueError(f"one seed per difference: {d.shape} differences, {s.shape} seeds")
    measured = np.isfinite(d)
    d, s = d[measured], s[measured]
    threshold = -KEEP_POINTS if direction == 0 else 0.0
    side = -1 if direction < 0 else 1  # where the statement puts A - B, from the threshold
    agree, against = side * (d - threshold) > 0, side * (d - threshold) < 0
    n_out = int((~measured).sum())
    if not d.size:
        return Verdict("not measured", 0, 0, n_out, np.nan, np.nan, np.nan)
    mean, half = seed_interval(d, s)
    if mean - half <= threshold <= mean + half:
        verdict = "within noise"
    elif side * (mean - threshold) > 0:
        verdict = "holds" if agree.mean() >= 2 / 3 else "mixed"
    else:
        verdict = "reversed" if against.mean() >= 2 / 3 else "mixed"
    return Verdict(verdict, int(agree.sum()), int(d.size), n_out, mean, mean - half,
                   mean + half)


def ladder_claims(results: pd.DataFrame, by: str = "rung") -> pd.DataFrame:
    """One row per (statement, rung): the mean difference A - B in points over the country x
    seed runs, the seed sd of the country-mean difference, its seed-level 95 % interval, the
    runs that agree (of those measured), the runs not measured, and the verdict
    (``claim_verdict``)."""
    rows = []
    for key, text, test_set, a, b, direction in LADDER_CLAIMS:
        truth = test_set == "country_truth"
        d = results[results["test_set"] == ("overall" if truth else test_set)]
        col = "country_truth_accuracy" if truth else "accuracy"
        for rung in dict.fromkeys(d[by]):
            w = d[d[by] == rung].pivot_table(index=["country", "seed"], columns="variant",
                                             values=col, dropna=False)
            diffs = 100 * (w[a] - w[b]) if {a, b} <= set(w.columns) else \
                pd.Series(np.nan, index=w.index)
            v = claim_verdict(diffs.to_numpy(), direction,
                              diffs.index.get_level_values("seed").to_numpy())
            rows.append({"claim": key, "statement": text, by: rung,
                         "difference": float(diffs.mean()),
                         "seed_sd": float(diffs.groupby(level="seed").mean().std()),
                         "ci_low": v.low, "ci_high": v.high, "runs_agreeing": v.agreeing,
                         "runs": v.runs, "not_measured": v.not_measured,
                         "verdict": v.verdict})
    return pd.DataFrame(rows)


def claim_cell(row: pd.Series) -> str:
    """One row of ``ladder_claims`` as the ladder page shows it: the verdict, the difference,
    its seed-level interval and the runs that agree."""
    if row["verdict"] == "not measured":
        return f"not measured ({row['not_measured']} runs)"
    missing = f", {row['not_measured']} not measured" if row["not_measured"] else ""
    return (f"{row['verdict']}: {row['difference']:+.1f} [{row['ci_low']:+.1f}, "
            f"{row['ci_high']:+.1f}] ({row['runs_agreeing']}/{row['runs']} runs{missing})")


def mean_ci_halfwidth(results: pd.DataFrame) -> pd.Series:
    """Per test set: the mean half-width (points) of the rows' 95 % bootstrap intervals, the
    scale of a difference one test set can resolve. The global RM's pure-minority rows are
    left out: it is wrong on every such pair by construction, so their interval is [0, 0]."""
    r = results[~((results["variant"] == "global") & (results["test_set"] == "pure_minority"))]
    return (100 * (r["ci_high"] - r["ci_low"]) / 2).groupby(r["test_set"]).mean()
