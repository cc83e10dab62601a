"""Does the paper hold up? Each comparison the paper's tables and text make, and the few this
book adds, against every source of evidence a build has, judged by one rule.

``CLAIMS`` is the one table of statements, each a distinct comparison "A - B" on one test set
(the paper's numbers read as the comparison they imply: a variant against the baseline, the
baseline against the global RM; its claims; the book's controls), with the threshold its
statement sets: "A beats B", "A is below B", or, where the paper's own gap is under a point,
"A keeps B's accuracy" (``paper_direction``). A statement true by construction (the global
RM's pure-minority 0) is shown apart and never counted. ``BEHAVIOUR`` adds best-of-N, which
the paper does not report. Columns: the paper, as reported, then each source (``SOURCES``): the
authors' models rescored, PRISM on a laptop, GlobalOpinionQA, the simulator and the ladder's
rungs.

A cell is the source's difference, its interval and the verdict (``report.claim_verdict``:
``report.RULE``) from the paired, clustered bootstrap of every run's per-pair outcomes
(``report.paired_difference``); a source the build did not have is "not in this build".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scpo.companion import report

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
# a column's name where the page is narrow (the verdicts at a glance)
SHORT = {"published": "authors' RMs", "prism": "PRISM", "goqa": "GOQA", "simulator": "simulator",
         "ladder: head": "head", "ladder: top": "top", "ladder: full": "full"}
ABSENT = "not in this build"
BY_CONSTRUCTION = "true by construction"
NOT_IN_PAPER = "not in the paper"
# the authors' published models stand for the paper's SCPO (F+W), scored in eval mode
PUBLISHED_AS = {"published": "scpo_fw"}
PAPER_EFFICIENCY = (1.7, 2.8)  # reported in the paper: 170-280 %
PAPER_SETTING = "7 countries of PRISM; OpenAssistant DeBERTa-v3, every weight fine-tuned"


@dataclass(frozen=True)
class Claim:
    """One statement: "A - B" on ``test_set`` ("overall", "pure_minority", "country_truth": the
    simulator's truth on the overall pairs; best-of-N: the items, "turns" or "pool", and the
    pick's ``metric``), on the side of its threshold that ``sense`` gives."""

    key: str
    statement: str
    test_set: str
    a: str
    b: str
    direction: int | None = None  # None: the paper's own gap decides (``paper_direction``)
    paper_b: str | None = None  # the paper's B, where the book tests A against another
    in_paper: bool = True  # False: this book's statement, outside the paper's counts
    definitional: bool = False  # true by construction: shown, never counted
    metric: str = ""  # best-of-N: the pick's metric (``scpo.companion.bon``)
    tested: str = ""  # what is tested, where the statement says more

    @property
    def paper(self) -> float:
        """A - B as reported in the paper (NaN: not in the paper)."""
        if not self.in_paper:
            return float("nan")
        return paper_difference(self.test_set, self.a, self.paper_b or self.b)

    @property
    def short(self) -> str:
        """The statement in one line of a figure: "A > B, test set" ("A ≥ B − 1" for keeps)."""
        a, b = SHORT_VARIANT.get(self.a, self.a), SHORT_VARIANT.get(self.b, self.b)
        where = WHERE.get(self.metric or self.test_set, self.test_set)
        op = {1: f"{a} > {b}", -1: f"{a} < {b}", 0: f"{a} ≥ {b} − 1"}[self.sense]
        return f"{op}, {where}"

    @property
    def sense(self) -> int:
        """+1 "A beats B", -1 "A is below B", 0 "A keeps B's accuracy"."""
        return paper_direction(self.paper) if self.direction is None else self.direction


SHORT_VARIANT = {"global": "global RM", "baseline": "baseline", "filtered": "filtered",
                 "inverse_weighted": "inverse-weighted", "scpo_w": "SCPO (W)",
                 "scpo_fw": "SCPO (F+W)", "scpo_fw_tuned": "SCPO (F+W) tuned",
                 "baseline_tuned": "baseline tuned", "random_subset": "random subset"}
WHERE = {"overall": "overall", "pure_minority": "pure minority",
         "country_truth": "country truth", "score_top": "best-of-N: user's top",
         "country_truth_top": "best-of-N: country's best", "global_truth_top":
         "best-of-N: consensus's best"}


def paper_difference(test_set: str, a: str, b: str) -> float:
    """A - B in points as reported in the paper."""
    p = report.PAPER_REPORTED
    return float(p.loc[a, test_set] - p.loc[b, test_set])


def paper_direction(gap: float) -> int:
    """The statement a gap of the paper's supports: a direction (+1, -1) when it is at least
    ``report.KEEP_POINTS``, else "keeps" (0): a gap under a point is within the threshold, not
    a direction."""
    return 0 if abs(gap) < report.KEEP_POINTS else int(np.sign(gap))


TUNED_LIKE_FOR_LIKE = (
    "tested against the baseline given the same learning-rate search (the paper's baseline was "
    "not tuned); the paper's \"up to ~7 points\" is its largest gain, of one country and "
    "dataset, which a mean over countries does not test")
CLAIMS = [
    # the paper's tables, overall: each variant against the baseline, the baseline against the
    # global RM (its mirror, the global RM against the baseline, is the same comparison)
    Claim("baseline:overall", "The baseline beats the global RM overall", "overall",
          "baseline", "global"),
    Claim("filtered:overall", "Filtering alone costs accuracy: below the baseline overall",
          "overall", "filtered", "baseline"),
    Claim("inverse_weighted:overall", "Inverse weighting alone is below the baseline overall",
          "overall", "inverse_weighted", "baseline"),
    Claim("scpo_w:overall", "SCPO (W) keeps the baseline's overall accuracy (loses less than "
          "one point)", "overall", "scpo_w", "baseline"),
    Claim("scpo_fw:overall", "SCPO (F+W) keeps the baseline's overall accuracy (loses less "
          "than one point) on 1/2 to 1/3 of its pairs (\"170–280 % data efficiency\")",
          "overall", "scpo_fw", "baseline"),
    Claim("scpo_fw_tuned:overall", "SCPO (F+W) tuned beats the baseline overall", "overall",
          "scpo_fw_tuned", "baseline_tuned", paper_b="baseline", tested=TUNED_LIKE_FOR_LIKE),
    # the paper's tables, pure minority
    Claim("baseline:pure_minority", "The baseline beats the global RM on pure-minority pairs "
          "(the global RM scores 0 there by construction)", "pure_minority", "baseline",
          "global", definitional=True),
    Claim("filtered:pure_minority", "Filtering alone over-steers: above the baseline on "
          "pure-minority pairs", "pure_minority", "filtered", "baseline"),
    Claim("inverse_weighted:pure_minority", "Inverse weighting alone is above the baseline on "
          "pure-minority pairs", "pure_minority", "inverse_weighted", "baseline"),
    Claim("scpo_w:pure_minority", "SCPO (W) is below the baseline on pure-minority pairs",
          "pure_minority", "scpo_w", "baseline"),
    Claim("scpo_fw:pure_minority", "SCPO (F+W) is above the baseline on pure-minority pairs",
          "pure_minority", "scpo_fw", "baseline"),
    # the paper's other comparisons
    Claim("beats_global", "SCPO (F+W) beats the global RM overall", "overall", "scpo_fw",
          "global"),
    Claim("weights_pull_back", "Adding the weights pulls filtering back: SCPO (F+W) below "
          "filtering alone on pure-minority pairs", "pure_minority", "filtered", "scpo_fw"),
    Claim("w_least", "SCPO (W) moves least: below SCPO (F+W) on pure-minority pairs",
          "pure_minority", "scpo_w", "scpo_fw"),
    Claim("tuned_best", "The tuned variant keeps the overall accuracy of SCPO (F+W), the "
          "paper's next best (loses less than one point)", "overall", "scpo_fw_tuned",
          "scpo_fw", tested="the paper calls the tuned variant best, by +0.70 points: under a "
          "point, so the statement tested is that it loses less than one"),
    # this book's (not in the paper)
    Claim("filter_vs_random", "The filter's pairs beat as many random pairs on pure-minority "
          "pairs", "pure_minority", "filtered", "random_subset", direction=1, in_paper=False),
    Claim("truth", "On the simulator's country truth, SCPO (F+W) beats filtering alone "
          "(overall test pairs)", "country_truth", "scpo_fw", "filtered", direction=1,
          in_paper=False),
]
# What a country's RM changes in the response best-of-N picks (scpo.companion.bon; the chapter "From
# reward to behaviour"): the paper reports pairwise accuracy only.
BEHAVIOUR = [
    Claim("bon_user_top", "Best-of-N: SCPO (F+W) picks the user's own top-rated response more "
          "often than the global RM (test turns)", "turns", "scpo_fw", "global", direction=1,
          in_paper=False, metric="score_top"),
    Claim("bon_country_top", "... and, among a prompt's pool, the country's best response (its "
          "noise-free truth) more often", "pool", "scpo_fw", "global", direction=1,
          in_paper=False, metric="country_truth_top"),
    Claim("bon_consensus_top", "... while picking the consensus's best as often (loses less "
          "than one point)", "pool", "scpo_fw", "global", direction=0, in_paper=False,
          metric="global_truth_top"),
]


@dataclass
class Evidence:
    """One source's runs: their result rows, each model's outcome on each test pair (None:
    the runs kept none), best-of-N picks (``scpo.companion.bon``'s per-item table) and what
    they rest on (the tier)."""

    results: pd.DataFrame
    outcomes: pd.DataFrame | None = None
    picks: pd.DataFrame | None = None
    tier: str = ""

    @property
    def n_countries(self) -> int:
        return int(self.results["country"].nunique())

    @property
    def n_seeds(self) -> int:
        return int(self.results["seed"].nunique())

    def rests_on(self) -> str:
        """What the column's verdicts rest on: countries x seeds and the tier."""
        c, s = self.n_countries, self.n_seeds
        what = f"{c} {'country' if c == 1 else 'countries'} × {s} {'seed' if s == 1 else 'seeds'}"
        return f"{what}; {self.tier}" if self.tier else what


def tier_of(model: dict) -> str:
    """What a source's models are, from its config's ``model`` section (a run's, or the
    ladder's per rung): the tier and its backbone."""
    def name(x: str | None) -> str:
        return str(x).rstrip("/").split("/")[-1] if x else "?"

    backend = model.get("backend")
    if backend == "embedding":
        return f"a head on frozen {name(model.get('encoder'))}"
    if backend == "partial":
        return (f"the top {model.get('train_layers')} layers of "
                f"{name(model.get('global_model') or model.get('encoder'))}")
    lora = f", LoRA r = {model['lora_r']}" if model.get("lora_r") else ""
    return f"every weight of {name(model.get('global_model'))}{lora}"


def read_pages(root: str | Path, countries: str = "", picks: pd.DataFrame | None = None,
               tier: str | None = None) -> Evidence:
    """A source's runs read back as they ran (``scpo.results.reopen``: the country pages under
    ``root``, or one run directory), restricted to ``countries`` (comma-separated; "" = every
    one there), with their per-pair outcomes, best-of-N ``picks`` and the tier they ran on."""
    from scpo.results import reopen

    run = reopen(root, countries.split(",") if countries else None)
    return Evidence(run.results, run.predictions, picks,
                    tier or tier_of(run.records[run.countries[0]]["config"]["model"]))


def read_picks(where: str | Path) -> pd.DataFrame | None:
    """Best-of-N picks the behaviour chapter wrote (``picks.parquet``), or None."""
    return pd.read_parquet(where) if where and Path(where).is_file() else None


def read_ladder(ladder_dir: str | Path) -> dict[str, Evidence]:
    """The ladder study's rungs (``benchmarks/ladder.py``'s results.csv, predictions.parquet
    and run.json under ``ladder_dir``), one source each: "ladder: head", "ladder: top",
    "ladder: full" (those it ran). Without predictions.parquet (a study run before the
    outcomes were kept) every rung's verdicts are "not measured"."""
    d = Path(ladder_dir)
    results = pd.read_csv(d / "results.csv")
    kept = d / "predictions.parquet"
    outcomes = pd.read_parquet(kept).astype({"rung": str, "country": str, "variant": str,
                                             "user_id": str}) if kept.is_file() else None
    configs = json.loads((d / "run.json").read_text()).get("configs", {})
    return {f"ladder: {r}": Evidence(
        results[results["rung"] == r],
        None if outcomes is None else outcomes[outcomes["rung"] == r],
        tier=tier_of(configs[r]["model"]) if r in configs else "")
        for r in ("head", "top", "full") if r in set(results["rung"])}


def _as_published(table: pd.DataFrame | None, column: str) -> pd.DataFrame | None:
    return None if table is None else table.assign(**{column: table[column].replace(
        PUBLISHED_AS)})


def difference(ev: Evidence, claim: Claim) -> report.Difference | None:
    """``claim``'s A - B on ``ev`` (``report.paired_difference``): on the per-pair outcomes of
    its test set, or on best-of-N's picks (the pool's prompts are every country's, drawn once
    for all); None where the source lacks them."""
    if claim.metric:
        p = ev.picks
        if p is None:
            return None
        p = p[p["items"] == claim.test_set] if "items" in p.columns else (
            p if claim.test_set == "turns" else p.iloc[:0])  # PRISM's picks: its turns
        if claim.metric not in p.columns or p.empty:
            return None
        return report.paired_difference(p.dropna(subset=[claim.metric]), claim.a, claim.b,
                                        claim.metric, model="model", unit="item",
                                        shared_clusters=claim.test_set == "pool")
    o = ev.outcomes
    if o is None:
        return None
    if claim.test_set == "pure_minority":
        o = o[o["pure_minority"]]
    value = "country_truth_correct" if claim.test_set == "country_truth" else "correct"
    if value not in o.columns:
        return None
    return report.paired_difference(o, claim.a, claim.b, value)


def judge(ev: Evidence, claim: Claim) -> report.Verdict:
    """``report.claim_verdict`` of ``claim`` on one source."""
    return report.claim_verdict(difference(ev, claim), claim.sense)


def inverse_kept(results: pd.DataFrame) -> pd.Series:
    """Per country: the baseline's training pairs over SCPO (F+W)'s (the paper's data
    efficiency, ``evaluate.inverse_kept_fraction``), first seed."""
    from scpo.evaluate import inverse_kept_fraction

    r = results[(results["test_set"] == "overall") & (results["seed"] == results["seed"].min())]
    n = r.pivot_table(index="country", columns="variant", values="n_kept", aggfunc="mean")
    return pd.Series({c: inverse_kept_fraction(n.loc[c, "scpo_fw"], n.loc[c, "baseline"])
                      for c in n.index}, dtype=float)


def evidence(sources: dict[str, Evidence | None],
             claims: list[Claim] | None = None) -> pd.DataFrame:
    """The scorecard in long form: one row per (claim, source) with the paper's difference,
    ours (``value``) and its interval (``low``, ``high``), the verdict, the runs agreeing and
    measured, and whether the row counts (``counted``: the paper's, not true by
    construction). A source missing from ``sources`` (or None) is ``ABSENT``; a claim without
    A or B in a source "not measured" (``missing`` names what it lacks)."""
    claims = CLAIMS + BEHAVIOUR if claims is None else claims
    out = []
    for source in SOURCES:
        ev = sources.get(source)
        if ev is not None and source == "published":
            ev = Evidence(_as_published(ev.results, "variant"),
                          _as_published(ev.outcomes, "variant"), _as_published(ev.picks, "model"),
                          ev.tier)
        for c in claims:
            row = {"key": c.key, "statement": c.statement, "short": c.short, "source": source,
                   "paper": c.paper,
                   "sense": c.sense, "in_paper": c.in_paper, "definitional": c.definitional,
                   "counted": c.in_paper and not c.definitional, "tested": c.tested}
            if ev is None:
                out.append({**row, "verdict": ABSENT})
                continue
            v = judge(ev, c)
            have = set(ev.results["variant"]) | (set(ev.picks["model"]) if ev.picks is not None
                                                 else set())
            lacks = [x for x in (c.a, c.b) if x not in have]
            missing = (f"no {', '.join(lacks)} run" if lacks else
                       "no per-pair outcomes" if ev.outcomes is None and not c.metric else
                       "no picks" if c.metric and ev.picks is None else "no such pairs")
            extra = {}
            if c.key == "scpo_fw:overall" and {"scpo_fw", "baseline"} <= set(ev.results["variant"]):
                inv = inverse_kept(ev.results)
                extra = {"kept_low": float(inv.min()), "kept_high": float(inv.max())}
            out.append({**row, "value": v.mean, "low": v.low, "high": v.high,
                        "verdict": v.verdict, "agreeing": v.agreeing, "runs": v.runs,
                        "missing": missing if v.verdict == "not measured" else "", **extra})
    return pd.DataFrame(out)


def _points(x: float, digits: int = 1) -> str:
    return f"{x:+.{digits}f}"


def _interval(row: pd.Series) -> str:
    """"+d [low, high]" in points: one decimal, two where an end is within 0.05 of the
    statement's threshold (so that "[-1.4, -0.0]" is not shown for an interval that ends below
    0, the side its verdict is on)."""
    threshold = -report.KEEP_POINTS if row["sense"] == 0 else 0.0
    near = min(abs(row["low"] - threshold), abs(row["high"] - threshold)) < 0.05
    digits = 2 if near else 1
    return (f"{_points(row['value'])} [{_points(row['low'], digits)}, "
            f"{_points(row['high'], digits)}]")


def cell(row: pd.Series) -> str:
    """One source's cell: A - B, its interval and the verdict; "—" with why where there is
    none."""
    if row["verdict"] == ABSENT:
        return f"— ({ABSENT})"
    if row["verdict"] == "not measured":
        return f"— (not measured: {row.get('missing') or 'no runs'})"
    text = _interval(row)
    if np.isfinite(row.get("kept_low", np.nan)):
        text = f"keeps 1 in {row['kept_low']:.1f}–{row['kept_high']:.1f}; {text}"
    verdict = f"{row['verdict']} ({BY_CONSTRUCTION})" if row["definitional"] else row["verdict"]
    return f"{text}: {verdict}"


def paper_cell(key: str, gap: float) -> str:
    """The paper's A - B as the page shows it (labelled by the column: reported in the
    paper)."""
    if not np.isfinite(gap):
        return f"— ({NOT_IN_PAPER})"
    text = f"{gap:+.2f}"
    if key == "scpo_fw:overall":
        lo, hi = PAPER_EFFICIENCY
        text = f"keeps 1 in {lo}–{hi}; {text}"
    return text


def table(long: pd.DataFrame, source: str) -> pd.DataFrame:
    """One source's claims as the page shows them, one row per statement: the paper's
    difference, ours with its interval and the verdict."""
    mine = long[long["source"] == source].set_index("key")
    return pd.DataFrame({
        "statement": mine["statement"],
        "reported in the paper (A − B)": [paper_cell(k, g) for k, g in mine["paper"].items()],
        "ours (A − B [95 % interval]): verdict": mine.apply(cell, axis=1),
    }).set_index("statement")


def run_cell(row: pd.Series) -> str:
    """One (claim, source) as the ladder shows it: the verdict, A - B with its interval and
    the runs (country x seed) that agree."""
    if row["verdict"] in (ABSENT, "not measured"):
        return cell(row)
    return f"{row['verdict']}: {_interval(row)} ({int(row['agreeing'])}/{int(row['runs'])} runs)"


def by_source(long: pd.DataFrame, sources: list[str]) -> pd.DataFrame:
    """``run_cell`` of every claim (rows, in ``CLAIMS`` order) for ``sources`` (columns)."""
    mine = long[long["source"].isin(sources)].assign(cell=lambda d: d.apply(run_cell, axis=1))
    keys = list(dict.fromkeys(mine["key"]))
    out = mine.pivot(index="key", columns="source", values="cell").loc[keys, sources]
    first = mine.drop_duplicates("key").set_index("key")
    out.index = [("(by construction) " if first.loc[k, "definitional"] else "")
                 + first.loc[k, "statement"] for k in keys]
    out.index.name = "statement"
    return out


def rung_summary(long: pd.DataFrame) -> str:
    """One sentence on the ladder's rungs (``evidence`` of ``read_ladder``'s sources): of the
    paper's distinct comparisons, how many hold on every rung and how many on the first rung
    alone, out of those measured; where the rungs' runs kept no per-pair outcomes, that no
    verdict is measured and why (a count of 0 "holds" would say the opposite)."""
    counted = long[long["counted"] & (long["verdict"] != ABSENT)]  # the rungs it ran
    verdicts = counted.pivot(index="key", columns="source", values="verdict")
    measured = ~(verdicts == "not measured").any(axis=1)
    n = len(verdicts)
    if not measured.any():
        return (f"None of the paper's {n} distinct comparisons is measured on the ladder: its "
                "runs kept no per-pair outcomes (they predate predictions.parquet); rerun "
                "benchmarks/ladder.py for its verdicts.")
    v = verdicts[measured]
    every = (v == "holds").all(axis=1)
    first = v[v.columns[0]] == "holds"
    left = f" ({n - len(v)} not measured on every rung)" if len(v) < n else ""
    return (f"Of the paper's {n} distinct comparisons{left}, {int(every.sum())} hold on every "
            f"rung; {int((first & ~every).sum())} hold on the {v.columns[0].split(': ')[-1]} "
            "rung but not on every deeper one.")


def glue_key(key: str) -> str:
    """A claim's key as a glue name (no ":", which the glue role reads as a format)."""
    return key.replace(":", "__")


VERDICT_MARK = {"holds": "holds", "within noise": "noise", "mixed": "mixed",
                "reversed": "reversed", "not measured": "—", ABSENT: ""}


def verdicts(long: pd.DataFrame) -> pd.DataFrame:
    """Every claim's verdict per source present, in one narrow table (statement x source)."""
    present = [s for s in SOURCES if (long.loc[long["source"] == s, "verdict"] != ABSENT).any()]
    wide = long[long["source"].isin(present)].pivot(index="key", columns="source",
                                                   values="verdict")
    keys = list(dict.fromkeys(long["key"]))
    first = long.drop_duplicates("key").set_index("key")
    out = wide.loc[keys, present].replace(VERDICT_MARK).rename(columns=SHORT)
    definitional = [first.loc[k, "definitional"] for k in keys]
    out.loc[definitional] = out.loc[definitional].map(lambda v: f"({v})" if v else v)
    out.index = [("(by construction) " if first.loc[k, "definitional"] else "")
                 + first.loc[k, "statement"] for k in keys]
    out.index.name = "statement"
    return out


def verdict_counts(long: pd.DataFrame, counted: bool = True) -> pd.DataFrame:
    """Per source present: how many claims each verdict has, of the paper's distinct
    comparisons (``counted``), or of this book's own rows (``counted=False``). A statement true
    by construction is in neither."""
    rows = long[(long["verdict"] != ABSENT) & ~long["definitional"]
                & (long["in_paper"] == counted)]
    return rows.pivot_table(index="source", columns="verdict", values="key", aggfunc="count",
                            fill_value=0).reindex([s for s in SOURCES
                                                   if s in set(rows["source"])])


def efficiency_by_users(matches: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The paper's "170–280 % data efficiency" read as training users (issue 40): per source
    of evidence (a key of ``SOURCES``) and test set, the macro share of users at which SCPO (F+W)
    keeps the baseline's full-data accuracy within ``report.KEEP_POINTS`` (the scorecard's
    "comparable accuracy"), its interval, and ``curves.paper_reading``'s verdict against 1 / 1.7
    of the users. Each value of ``matches`` is a learning-curves page's ``share_to_match.csv``
    (``curves.share_to_match_table``). A share-to-match is not an A − B difference, so it is a
    table of its own, not a row of ``CLAIMS``."""
    from scpo.companion.curves import paper_reading, share_text

    frames = []
    for source, match in matches.items():
        rows = match[(match["scope"] == "macro")
                     & np.isclose(match["tolerance"].astype(float), report.KEEP_POINTS)]
        if rows.empty:
            raise ValueError(f"share_to_match of {source!r}: no macro row at tolerance "
                             f"{report.KEEP_POINTS}; is it the learning-curves chapter's table?")
        frames.append(pd.DataFrame({
            "source": SOURCES.get(source, source),
            "test set": [WHERE.get(t, t) for t in rows["test_set"]],
            "share to keep": [share_text(float(s)) for s in rows["share_to_match"]],
            "95 % interval": [f"{share_text(float(lo))} to {share_text(float(hi))}"
                              for lo, hi in zip(rows["low"], rows["high"])],
            f"≤ {100 / PAPER_EFFICIENCY[0]:.0f} % of users (the paper)?": [
                paper_reading(r, PAPER_EFFICIENCY[0]) for _, r in rows.iterrows()]}))
    return pd.concat(frames, ignore_index=True).set_index(["source", "test set"])


def curves_sources(dirs: str) -> dict[str, pd.DataFrame]:
    """The learning curves' ``share_to_match.csv`` of each dataset the build ran them on:
    ``dirs`` is "dataset:folder;..." (the build's ``curves_dirs``); the dataset "sim" is the
    column "simulator". A folder without the table is an error naming it: the build ran the
    page before this one, so a missing table means that page did not write it."""
    out = {}
    for item in filter(None, dirs.split(";")):
        dataset, _, folder = item.partition(":")
        table = Path(folder) / "share_to_match.csv"
        if not table.is_file():
            raise FileNotFoundError(f"{table}: the learning curves on {dataset} wrote no "
                                    "share_to_match.csv; run notebooks/curves.md into that folder")
        out[{"sim": "simulator"}.get(dataset, dataset)] = pd.read_csv(table)
    return out
