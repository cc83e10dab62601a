"""Does the paper hold up? Each number of the paper's two tables and each of its headline
claims, against every source of evidence a build has, judged by one rule.

Rows: the 7-country macro accuracies the paper reports (``report.PAPER_REPORTED``, overall and
pure minority), each read as the comparison the paper's numbers imply (a variant against the
baseline, the baseline against the global RM), then the headline claims (``CLAIMS``). Columns:
the paper, as reported, then each source (``SOURCES``): the authors' models rescored, PRISM on a
laptop, GlobalOpinionQA, the simulator and the ladder's rungs.

A cell is our number, its interval and the verdict of ``report.claim_verdict`` (the ladder's
rule) on the per country x seed differences: "holds", "within noise", "mixed", "reversed", or
"not measured" where the source lacks a variant; a source the build did not have is "not in this
build".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from scpo import report
from scpo.variants import KNOWN

# column -> what the reader is told it is
SOURCES = {
    "published": "the authors' models, rescored",
    "prism": "PRISM on a laptop",
    "goqa": "GlobalOpinionQA",
    "simulator": "the simulator",
    "ladder: head": "ladder: head only",
    "ladder: top": "ladder: top layers",
    "ladder: full": "ladder: every weight",
}
ABSENT = "not in this build"
# the authors' published models stand for the paper's SCPO (F+W), scored in eval mode
PUBLISHED_AS = {"published": "scpo_fw"}

# (key, statement, test set, A, B, direction): direction +1 "A beats B", -1 "A is below B",
# 0 "A loses less than report.KEEP_POINTS to B", as report.LADDER_CLAIMS
CLAIMS = [
    ("beats_global", "SCPO (F+W) beats the global RM overall", "overall", "scpo_fw", "global",
     1),
    ("gains", "SCPO (F+W) tuned gains over the baseline overall (\"up to ~7 points\")",
     "overall", "scpo_fw_tuned", "baseline", 1),
    ("efficiency", "At \"170–280 % data efficiency\" (filtering keeps 1/2 to 1/3 of the pairs) "
     "SCPO (F+W) keeps the baseline's overall accuracy", "overall", "scpo_fw", "baseline", 0),
    ("filter_oversteers", "Filtering alone over-steers: above the baseline on pure-minority "
     "pairs", "pure_minority", "filtered", "baseline", 1),
    ("filter_costs", "... and below the baseline overall", "overall", "filtered", "baseline",
     -1),
    ("weights_pull_back", "Filtering plus weighting is balanced: SCPO (F+W) below filtering "
     "alone on pure-minority pairs", "pure_minority", "filtered", "scpo_fw", 1),
    ("fw_keeps", "... while keeping the baseline's overall accuracy", "overall", "scpo_fw",
     "baseline", 0),
    ("tuned_best", "The tuned variant is best overall (above SCPO (F+W), the paper's next best)",
     "overall", "scpo_fw_tuned", "scpo_fw", 1),
]
# Rows this book adds (the paper reports pairwise accuracy only): what a country's RM changes in
# the response best-of-N picks (scpo.bon; the chapter "From reward to behaviour"), per country x
# seed in percentage points. (key, statement, items, metric, A, B, direction)
BEHAVIOUR = [
    ("bon_user_top", "Best-of-N: SCPO (F+W) picks the user's own top-rated response more often "
     "than the global RM (test turns)", "turns", "score_top", "scpo_fw", "global", 1),
    ("bon_country_top", "... and, among a prompt's pool, the country's best response (its "
     "noise-free truth) more often", "pool", "country_truth_top", "scpo_fw", "global", 1),
    ("bon_consensus_top", "... while picking the consensus's best as often (loses less than one "
     "point)", "pool", "global_truth_top", "scpo_fw", "global", 0),
]
NOT_IN_PAPER = "not in the paper"
PAPER_EFFICIENCY = (1.7, 2.8)  # reported in the paper: 170-280 %
SHORT = {"baseline": "baseline", "global": "global RM"}  # a row's reference, in a cell


def variant_rows() -> list[tuple[str, str, str, str, int]]:
    """(key, statement, test set, variant, reference) for each number of the paper's tables:
    a variant is compared with the baseline, the baseline with the global RM; the global RM's
    pure-minority 0 holds by construction and is left out."""
    rows = []
    for ts in ("overall", "pure_minority"):
        for v, value in report.PAPER_REPORTED[ts].items():
            if np.isnan(value) or (v == "global" and ts == "pure_minority"):
                continue
            ref = "global" if v == "baseline" else "baseline"
            where = "overall" if ts == "overall" else "pure minority"
            rows.append((f"{v}:{ts}", f"{KNOWN[v].label}, {where}", ts, v, ref))
    return rows


def paper_difference(test_set: str, a: str, b: str) -> float:
    """A − B in points as reported in the paper."""
    return float(report.PAPER_REPORTED.loc[a, test_set] - report.PAPER_REPORTED.loc[b, test_set])


def _runs(results: pd.DataFrame, test_set: str, value: str = "accuracy") -> pd.DataFrame:
    """country x seed -> variant: ``value`` in points."""
    r = results[results["test_set"] == test_set]
    return 100 * r.pivot_table(index=["country", "seed"], columns="variant", values=value,
                               aggfunc="mean")


def judge(results: pd.DataFrame, test_set: str, a: str, b: str, direction: int
          ) -> report.Verdict:
    """``report.claim_verdict`` on A − B of every country x seed run of ``results``."""
    w = _runs(results, test_set)
    if not {a, b} <= set(w.columns):
        nan = np.full(len(w), np.nan)
        return report.claim_verdict(nan, direction, w.index.get_level_values("seed").to_numpy())
    d = w[a] - w[b]
    return report.claim_verdict(d.to_numpy(), direction,
                                d.index.get_level_values("seed").to_numpy())


def evidence(sources: dict[str, pd.DataFrame | None]) -> pd.DataFrame:
    """The scorecard in long form: one row per (row of the card, source) with the number, its
    interval (low, high), the verdict, and for the paper's numbers the paper's value. Sources
    missing from ``sources`` (or None) are ``ABSENT``."""
    out = []
    for source in SOURCES:
        res = sources.get(source)
        if res is not None and source == "published":
            res = res.assign(variant=res["variant"].replace(PUBLISHED_AS))
        for key, text, ts, v, ref in variant_rows():
            row = {"key": key, "statement": text, "source": source, "paper": float(
                report.PAPER_REPORTED.loc[v, ts])}
            if res is None:
                out.append({**row, "verdict": ABSENT})
                continue
            direction = int(np.sign(paper_difference(ts, v, ref)))
            verdict = judge(res, ts, v, ref, direction)
            mean, half = _macro(res, ts, v)
            out.append({**row, "value": mean, "low": mean - half, "high": mean + half,
                        "verdict": verdict.verdict, "versus": ref})
        for key, text, ts, a, b, direction in CLAIMS:
            row = {"key": key, "statement": text, "source": source,
                   "paper": paper_difference(ts, a, b)}
            if res is None:
                out.append({**row, "verdict": ABSENT})
                continue
            v = judge(res, ts, a, b, direction)
            extra = {}
            if key == "efficiency" and {"scpo_fw", "baseline"} <= set(res["variant"]):
                inv = inverse_kept(res)
                extra = {"kept_low": float(inv.min()), "kept_high": float(inv.max())}
            out.append({**row, "value": v.mean, "low": v.low, "high": v.high,
                        "verdict": v.verdict, **extra})
    return pd.DataFrame(out)


def judge_picks(picks: pd.DataFrame, items: str, metric: str, a: str, b: str,
                direction: int) -> report.Verdict:
    """``report.claim_verdict`` on A − B of a best-of-N metric (``scpo.bon``'s per-item picks),
    each country x seed run's mean over its items, in percentage points."""
    if "items" in picks.columns:
        p = picks[picks["items"] == items]
    else:  # PRISM's picks: its test turns only
        p = picks if items == "turns" else picks.iloc[:0]
    if metric not in p.columns:
        p = p.iloc[:0].assign(**{metric: []})
    w = 100 * p.pivot_table(index=["country", "seed"], columns="model", values=metric,
                            aggfunc="mean")
    if w.empty or not {a, b} <= set(w.columns):
        return report.claim_verdict(np.full(len(w), np.nan), direction,
                                    w.index.get_level_values("seed").to_numpy())
    d = w[a] - w[b]
    return report.claim_verdict(d.to_numpy(), direction,
                                d.index.get_level_values("seed").to_numpy())


def behaviour_evidence(picks: dict[str, pd.DataFrame | None],
                       present: set[str]) -> pd.DataFrame:
    """The rows ``BEHAVIOUR`` in ``evidence``'s long form, from the behaviour chapter's picks
    per source (the simulator's, PRISM's). A source of this build (``present``) without picks
    is "not measured"; one the build did not have, ``ABSENT``."""
    out = []
    for source in SOURCES:
        p = picks.get(source)
        for key, text, items, metric, a, b, direction in BEHAVIOUR:
            row = {"key": key, "statement": text, "source": source, "paper": np.nan}
            if p is None:
                out.append({**row, "verdict": "not measured" if source in present else ABSENT})
                continue
            v = judge_picks(p, items, metric, a, b, direction)
            out.append({**row, "value": v.mean, "low": v.low, "high": v.high,
                        "verdict": v.verdict})
    return pd.DataFrame(out)


def _macro(results: pd.DataFrame, test_set: str, variant: str) -> tuple[float, float]:
    """The variant's macro accuracy (mean over seeds) and its 95 % CI half-width (points);
    NaN when the source lacks the variant."""
    r = results[(results["test_set"] == test_set) & (results["variant"] == variant)]
    if r.empty:
        return float("nan"), float("nan")
    mean = float(report.macro_summary(r, test_set).loc[variant, "mean"])
    return mean, float(report.ci_halfwidth(r, test_set).loc[variant])


def inverse_kept(results: pd.DataFrame) -> pd.Series:
    """Per country: the baseline's training pairs over SCPO (F+W)'s (the paper's data
    efficiency, ``evaluate.inverse_kept_fraction``), first seed."""
    from scpo.evaluate import inverse_kept_fraction

    r = results[(results["test_set"] == "overall") & (results["seed"] == results["seed"].min())]
    n = r.pivot_table(index="country", columns="variant", values="n_kept", aggfunc="mean")
    return pd.Series({c: inverse_kept_fraction(n.loc[c, "scpo_fw"], n.loc[c, "baseline"])
                      for c in n.index}, dtype=float)


def cell(row: pd.Series) -> str:
    """One cell as the page shows it: the number, its interval, the verdict."""
    if row["verdict"] == ABSENT or not np.isfinite(row.get("value", np.nan)):
        return row["verdict"]
    if ":" in row["key"]:  # a number of the paper's tables: accuracy ± CI half-width
        text = f"{row['value']:.1f} ± {row['high'] - row['value']:.1f}"
        if row["verdict"] == "not measured":  # the number, but nothing to compare it with
            return f"{text} (no {SHORT[row['versus']]} to compare with)"
    else:  # a claim: the mean difference and its seed-level interval
        lo, hi = row["low"], row["high"]
        text = (f"{row['value']:+.1f} [{lo:+.1f}, {hi:+.1f}]" if np.isfinite([lo, hi]).all()
                else f"{row['value']:+.1f} (one seed)")
        if np.isfinite(row.get("kept_low", np.nan)):
            text = f"keeps 1 in {row['kept_low']:.1f}–{row['kept_high']:.1f}; {text}"
    return f"{text}: {row['verdict']}"


def table(long: pd.DataFrame) -> pd.DataFrame:
    """The card as the page shows it: a row per statement, the paper's value, then a column
    per source."""
    long = long.assign(cell=long.apply(cell, axis=1))
    wide = long.pivot(index="key", columns="source", values="cell")
    keys = list(dict.fromkeys(long["key"]))
    first = long.drop_duplicates("key").set_index("key")
    paper = [NOT_IN_PAPER if np.isnan(first.loc[k, "paper"]) else
             f"{first.loc[k, 'paper']:.2f}" if ":" in k else f"{first.loc[k, 'paper']:+.2f}"
             for k in keys]
    if "efficiency" in keys:
        lo, hi = PAPER_EFFICIENCY
        paper[keys.index("efficiency")] = f"keeps 1 in {lo}–{hi}; " + \
            paper[keys.index("efficiency")]
    out = pd.DataFrame({"statement": first.loc[keys, "statement"].to_numpy(),
                        "reported in the paper": paper}, index=keys)
    for source, label in SOURCES.items():
        out[label] = wide.loc[keys, source].to_numpy()
    return out.set_index("statement")


def verdict_counts(long: pd.DataFrame) -> pd.DataFrame:
    """Per source: how many rows each verdict has (absent sources left out)."""
    present = long[long["verdict"] != ABSENT]
    return present.pivot_table(index="source", columns="verdict", values="key", aggfunc="count",
                               fill_value=0).reindex([s for s in SOURCES
                                                      if s in set(present["source"])])
