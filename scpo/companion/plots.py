"""The figures the notebooks show: each function takes plain arrays or the tidy result tables of
``scpo.evaluate`` and returns a matplotlib Figure (no ``plt.show``).

Figures are detached from pyplot before they are returned (``plt.close``): a notebook then
shows each one once, as the value of its cell, and a long sweep does not pile up open figures.
No backend is forced, so notebooks keep their inline backend; scripts and tests run headless on
Agg (``MPLBACKEND=Agg``, matplotlib's own fallback without a display).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scpo import method
from scpo.evaluate import TEST_SETS
from scpo.variants import KNOWN


def label(variant: str) -> str:
    """A variant's name as the paper's tables write it (unknown names stay as they are)."""
    return KNOWN[variant].label if variant in KNOWN else variant


def colour(variant: str) -> str:
    """A variant's colour, the same in every figure (``scpo.variants``, its one place)."""
    return KNOWN[variant].colour if variant in KNOWN else "0.5"


def _detach(fig: Figure) -> Figure:
    fig.tight_layout()
    plt.close(fig)
    return fig


def p_glo_hist(p: Any, tau: float, bins: int = 40) -> Figure:
    """Histogram of p_glo = sigma(rg+ - rg-) over training pairs, a line at tau and the kept
    fraction (p_glo < tau) in the title: how much of a country the filter leaves."""
    p = np.asarray(p, dtype=np.float64).ravel()
    kept = method.filter_mask(p, tau)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(p, bins=bins, range=(0.0, 1.0), color="0.6")
    ax.axvline(tau, color="C3", linestyle="--", label=f"tau = {tau:g}")
    ax.set(xlabel="p_glo(y+ > y- | x)", ylabel="pairs",
           title=f"kept {kept.mean():.1%} ({int(kept.sum())} of {p.size}) with p_glo < {tau:g}")
    ax.legend()
    return _detach(fig)


def kept_vs_tau(p: Any, taus: Sequence[float]) -> Figure:
    """Kept fraction mean[p_glo < tau] as a function of tau (the filter's dose-response)."""
    p = np.asarray(p, dtype=np.float64).ravel()
    taus = np.asarray(sorted(taus), dtype=np.float64)
    frac = [method.filter_mask(p, t).mean() for t in taus]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(taus, frac, marker="o")
    ax.set(xlabel="tau", ylabel="fraction of pairs kept", ylim=(0, 1.02),
           title=f"filter p_glo < tau on {p.size} pairs")
    return _detach(fig)


def weight_hist(w: Any, beta: float, bins: int = 40) -> Figure:
    """Histogram of the SCPO weights W = exp(min(delta / beta, 0)); the title gives the share of
    pairs at full weight (W = 1) and the mean weight, i.e. how much the loss is damped."""
    w = np.asarray(w, dtype=np.float64).ravel()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(w, bins=bins, range=(0.0, 1.0), color="C0")
    ax.set(xlabel="weight W", ylabel="pairs",
           title=f"beta = {beta:g}: {np.mean(w == 1.0):.1%} at W = 1, mean W = {w.mean():.3f}")
    return _detach(fig)


def training_curves(histories: Mapping[str, list[dict[str, Any]]]) -> Figure:
    """Loss vs step per variant, and validation accuracy vs step when any history logged it.

    A history is the ``TrainHistory`` of ``RewardModel.fit``: dicts with "step" and "loss",
    optionally "val_accuracy".
    """
    frames = {}
    for name, hist in histories.items():
        h = pd.DataFrame(hist)
        if "step" not in h or "loss" not in h:
            raise KeyError(f"training_curves: history {name!r} needs 'step' and 'loss' entries; "
                           f"has {list(h.columns)}")
        frames[name] = h
    has_val = any("val_accuracy" in h and h["val_accuracy"].notna().any() for h in frames.values())
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(9 if has_val else 5, 3.2),
                             squeeze=False)
    for name, h in frames.items():
        axes[0, 0].plot(h["step"], h["loss"], label=label(name), color=colour(name))
        if has_val and "val_accuracy" in h:
            v = h.dropna(subset=["val_accuracy"])
            axes[0, 1].plot(v["step"], v["val_accuracy"], marker=".", label=label(name),
                            color=colour(name))
    axes[0, 0].set(xlabel="step", ylabel="weighted BT loss", title="training loss")
    axes[0, 0].legend(fontsize="small")
    if has_val:
        axes[0, 1].set(xlabel="step", ylabel="accuracy", title="validation accuracy")
    return _detach(fig)


def variant_bars(df: pd.DataFrame, value: str = "accuracy") -> Figure:
    """Accuracy per variant, one panel per test set (overall, pure minority), side by side.

    ``df`` has one row per (variant, test_set). Error bars: [ci_low, ci_high] when those columns
    exist (``evaluate_model`` rows), else +-sd (``seed_summary``, value="mean"), else none.
    """
    for c in ("variant", "test_set", value):
        if c not in df.columns:
            raise KeyError(f"variant_bars: missing column {c!r}; have {list(df.columns)}")
    dup = df.duplicated(["variant", "test_set"])
    if dup.any():
        raise ValueError("variant_bars: several rows per (variant, test_set); aggregate over "
                         "countries and seeds first (macro_average, seed_summary).")
    variants = list(pd.unique(df["variant"]))
    sets = [s for s in TEST_SETS if s in set(df["test_set"])]
    fig, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 4.6), squeeze=False,
                             sharey=True)
    for ax, s in zip(axes[0], sets, strict=True):
        d = df[df["test_set"] == s].set_index("variant").reindex(variants)
        y = d[value].to_numpy(dtype=np.float64)
        if {"ci_low", "ci_high"} <= set(d.columns):
            err = np.vstack([y - d["ci_low"].to_numpy(float), d["ci_high"].to_numpy(float) - y])
        elif "sd" in d.columns:
            err = d["sd"].to_numpy(dtype=np.float64)
        else:
            err = None
        ax.bar(np.arange(len(variants)), 100 * y, capsize=3,
               yerr=None if err is None else 100 * err, color=[colour(v) for v in variants])
        ax.set_xticks(np.arange(len(variants)), [label(v) for v in variants], rotation=45,
                      ha="right")
        ax.set(title=s.replace("_", " "), ylim=(0, 100))
    axes[0, 0].set_ylabel("accuracy (%)")
    return _detach(fig)


def tradeoff(
    df: pd.DataFrame, x: str = "pure_minority", y: str = "overall", label: str = "tau",
    value: str = "accuracy",
) -> Figure:
    """Overall accuracy against pure-minority accuracy, one point per ``label`` value (a tau or
    beta sweep), joined in ``label`` order: steering toward the minority vs keeping the rest.

    ``df`` is long (columns ``label``, test_set, ``value``) or already wide (columns x, y).
    """
    if x not in df.columns or y not in df.columns:
        for c in (label, "test_set", value):
            if c not in df.columns:
                raise KeyError(f"tradeoff: need columns {x!r} and {y!r}, or {label!r}, "
                               f"'test_set' and {value!r}; have {list(df.columns)}")
        df = df.pivot(index=label, columns="test_set", values=value).reset_index()
    d = df.sort_values(label)
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(d[x], d[y], marker="o")
    for _, r in d.iterrows():
        ax.annotate(f"{label}={r[label]}", (r[x], r[y]), textcoords="offset points",
                    xytext=(4, 4), fontsize="small")
    ax.set(xlabel=f"{x.replace('_', ' ')} accuracy", ylabel=f"{y.replace('_', ' ')} accuracy")
    return _detach(fig)


def fronts(series: Mapping[str, pd.DataFrame],
           points: Mapping[str, tuple[float, float]] | None = None) -> Figure:
    """Several knobs' trade-offs on one pair of axes: for each name a line through its settings
    (columns ``value``, ``pure_minority``, ``overall``; accuracies as fractions), each point
    annotated with its value, and optional reference ``points`` (name -> (pure minority,
    overall)). Which knob buys more minority accuracy per point of overall accuracy lost is
    then read off the picture: further right at the same height."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for i, (name, d) in enumerate(series.items()):
        for c in ("value", "pure_minority", "overall"):
            if c not in d.columns:
                raise KeyError(f"fronts: series {name!r} lacks column {c!r}; have "
                               f"{list(d.columns)}")
        d = d.sort_values("value")
        ax.plot(100 * d["pure_minority"], 100 * d["overall"], marker="o", color=f"C{i}",
                label=name)
        for _, r in d.iterrows():
            ax.annotate(f"{r['value']:g}", (100 * r["pure_minority"], 100 * r["overall"]),
                        textcoords="offset points", xytext=(3, 3), fontsize="x-small",
                        color=f"C{i}")
    for name, (x, y) in (points or {}).items():
        ax.scatter(100 * x, 100 * y, marker="s", color=colour(name), zorder=3)
        ax.annotate(label(name), (100 * x, 100 * y), textcoords="offset points",
                    xytext=(4, -10), fontsize="small")
    ax.set(xlabel="pure-minority accuracy (%)", ylabel="overall accuracy (%)")
    ax.legend(fontsize="small")
    return _detach(fig)


def pick_fronts(dial: pd.DataFrame, macro: pd.DataFrame,
                fronts: Mapping[str, pd.DataFrame] | None = None,
                points: Mapping[str, tuple[float, float]] | None = None) -> Figure:
    """Best-of-N along the steering dial: the pick's worth under the country's truth (x)
    against its worth under the consensus (y), both as gain over a random pick. ``dial`` has
    one thin line per country (columns country, alpha, x, y), ``macro`` the countries' mean
    (alpha, x, y), annotated with alpha; ``fronts`` more lines of the mean (value, x, y), e.g.
    tau and beta retrained, and ``points`` the variants (name -> (x, y)). Up is the
    consensus kept, right the country's own preference served."""
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, (country, d) in enumerate(dial.groupby("country", sort=True)):
        d = d.sort_values("alpha")
        ax.plot(d["x"], d["y"], color="0.75", lw=0.9, zorder=1,
                label="each country (α)" if i == 0 else None)
        end = d.iloc[-1]
        ax.annotate(country, (end["x"], end["y"]), fontsize="xx-small", color="0.45",
                    textcoords="offset points", xytext=(2, -2))
    m = macro.sort_values("alpha")
    ax.plot(m["x"], m["y"], marker="o", color="C0", lw=2, zorder=3, label="α, mean of countries")
    for _, r in m.iterrows():
        ax.annotate(f"{r['alpha']:g}", (r["x"], r["y"]), textcoords="offset points",
                    xytext=(3, 3), fontsize="x-small", color="C0")
    for i, (name, d) in enumerate((fronts or {}).items(), start=1):
        d = d.sort_values("value")
        ax.plot(d["x"], d["y"], marker="^", color=f"C{i}", zorder=2, label=name)
        for _, r in d.iterrows():
            ax.annotate(f"{r['value']:g}", (r["x"], r["y"]), textcoords="offset points",
                        xytext=(3, -9), fontsize="x-small", color=f"C{i}")
    for name, (x, y) in (points or {}).items():
        ax.scatter(x, y, marker="s", color=colour(name), zorder=4)
        ax.annotate(label(name), (x, y), textcoords="offset points", xytext=(4, 4),
                    fontsize="small")
    ax.set(xlabel="country's truth of the pick: gain over a random pick",
           ylabel="consensus of the pick: gain over a random pick")
    ax.legend(fontsize="small")
    return _detach(fig)


def cross_country_heatmap(matrix: pd.DataFrame, fmt: str = ".2f") -> Figure:
    """Accuracy of the RM trained on country A (rows) tested on country B (columns), every cell
    annotated: a steerable RM should be best on its own diagonal."""
    values = matrix.to_numpy(dtype=np.float64)
    fig, ax = plt.subplots(figsize=(2.5 + 0.9 * values.shape[1], 1.5 + 0.6 * values.shape[0]))
    im = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(np.arange(values.shape[1]), [str(c) for c in matrix.columns], rotation=45,
                  ha="right")
    ax.set_yticks(np.arange(values.shape[0]), [str(i) for i in matrix.index])
    mid = np.nanmean(values) if np.isfinite(values).any() else 0.0
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, format(v, fmt), ha="center", va="center",
                color="black" if v > mid else "white", fontsize="small")
    ax.set(xlabel="tested on", ylabel="trained on")
    fig.colorbar(im, ax=ax, label="accuracy")
    return _detach(fig)


# verdict -> colour (Okabe-Ito: green holds, orange reversed, grey within noise, purple mixed)
VERDICT_COLOURS = {"holds": "#009E73", "reversed": "#D55E00", "within noise": "#999999",
                   "mixed": "#CC79A7", "not measured": "#FFFFFF"}
SOURCE_MARKERS = "osD^v<>"


def scorecard(long: pd.DataFrame, sources: Mapping[str, str]) -> Figure:
    """"Does the paper hold up?" at a glance (``scpo.companion.scorecard.evidence``'s long table):
    one row per claim, each source's A - B as a point (its marker) with its interval as a bar, in
    the colour of its verdict; the paper's reported difference as a black bar; the statement's
    threshold (0, or -1 point for "keeps") as a dotted tick. ``sources``: the columns to show,
    source -> label."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    keys = list(dict.fromkeys(long["key"]))
    first = long.drop_duplicates("key").set_index("key")
    shown = [s for s in sources if (long.loc[long["source"] == s, "verdict"].isin(
        VERDICT_COLOURS) & long.loc[long["source"] == s, "value"].notna()).any()]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(keys) + 1.6))
    step = 0.7 / max(len(shown), 1)
    for i, key in enumerate(keys):
        y = len(keys) - 1 - i
        if i % 2 == 0:
            ax.axhspan(y - 0.5, y + 0.5, color="0.95", zorder=0)
        threshold = -1.0 if first.loc[key, "sense"] == 0 else 0.0
        ax.plot([threshold] * 2, [y - 0.45, y + 0.45], ":", color="0.3", lw=1, zorder=1)
        paper = first.loc[key, "paper"]
        if np.isfinite(paper):
            ax.plot([paper] * 2, [y - 0.42, y + 0.42], "-", color="black", lw=2.2, zorder=2)
        for j, source in enumerate(shown):
            r = long[(long["key"] == key) & (long["source"] == source)]
            if r.empty or not np.isfinite(r["value"].iloc[0]):
                continue
            r = r.iloc[0]
            yy = y + 0.35 - step * (j + 0.5)
            c = VERDICT_COLOURS.get(r["verdict"], "0.5")
            ax.plot([r["low"], r["high"]], [yy, yy], "-", color=c, lw=1.6, zorder=3)
            ax.plot(r["value"], yy, SOURCE_MARKERS[j % len(SOURCE_MARKERS)], color=c,
                    mec="black", mew=0.5, ms=5, zorder=4)
    labels = [first.loc[k, "short"] + (" (by construction)" if first.loc[k, "definitional"]
                                       else "") for k in keys]
    ax.set_yticks(range(len(keys))[::-1], labels, fontsize=8)
    ax.set_ylim(-0.6, len(keys) - 0.4)
    ax.axvline(0, color="0.6", lw=0.6, zorder=0)
    ax.set_xlabel("A − B (accuracy points; best-of-N: points of picks)")
    handles = [Line2D([], [], color="black", lw=2.2, label="reported in the paper"),
               Line2D([], [], color="0.3", ls=":", label="threshold")]
    handles += [Line2D([], [], marker=SOURCE_MARKERS[j % len(SOURCE_MARKERS)], ls="",
                       color="0.7", mec="black", label=sources[s]) for j, s in enumerate(shown)]
    handles += [Patch(color=c, label=v) for v, c in VERDICT_COLOURS.items()
                if v != "not measured"]
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.4, -0.08),
              ncol=3, frameon=False)
    return _detach(fig)


def learning_curves(curve: pd.DataFrame, title: str = "") -> Figure:
    """Accuracy (%) against the share of training users (``scpo.companion.curves.curve_table``'s
    rows of one scope and test set): a line per variant with a band for its interval; the global RM,
    which trains on nothing, as a dashed line across."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for v, d in curve.groupby("variant", sort=False):
        d = d.sort_values("share")
        x = 100 * d["share"]
        style = {"linestyle": "--", "marker": None} if v == "global" else {"marker": "o"}
        ax.plot(x, d["accuracy"], color=colour(v), label=label(v), **style)
        ax.fill_between(x, d["low"], d["high"], color=colour(v), alpha=0.15, linewidth=0)
    ax.set(xlabel="share of the country's training users (%)", ylabel="accuracy (%)",
           title=title, xlim=(0, 102))
    ax.legend(fontsize="small")
    return _detach(fig)


def seed_dots(acc: pd.DataFrame, conditions: Sequence[str], reference: str = "fixed") -> Figure:
    """Accuracy (%) of each of ``conditions`` (top to bottom) on the overall and the
    pure-minority pairs, one dot per seed (drawn slightly apart), a black tick at the mean and a
    grey band over the ``reference`` condition's range across seeds: a condition whose dots sit
    in the band changed nothing the seeds can tell from their noise. ``acc``: indexed by
    (condition, seed), one column per test set (``benchmarks/released_check.py``'s results)."""
    by, per = acc.index.names  # the condition's and the seed's levels
    seeds = sorted(set(acc.index.get_level_values(per)))
    mean = acc.groupby(level=by).mean()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True, layout="constrained")
    ypos = {c: i for i, c in enumerate(conditions)}
    for ax, test_set in zip(axes, ["overall", "pure_minority"]):
        a = acc[test_set].reset_index()
        for k, seed in enumerate(seeds):
            d = a[a[per] == seed]
            ax.scatter(d[test_set], [ypos[c] + 0.12 * (k - (len(seeds) - 1) / 2)
                                     for c in d[by]],
                       s=22, color=f"C{k}", label=f"seed {seed}", zorder=3)
        ax.scatter(mean.loc[conditions, test_set], range(len(conditions)), marker="|", s=200,
                   color="k", label="mean", zorder=2)
        ax.axvspan(acc.loc[reference, test_set].min(), acc.loc[reference, test_set].max(),
                   color="0.93", zorder=0, label=f"{reference}, range over seeds")
        ax.set(xlabel="accuracy (%)", title=test_set.replace("_", " "))
    axes[0].set_yticks(range(len(conditions)), conditions)
    axes[0].invert_yaxis()
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=5,
               fontsize="small", frameon=False)
    plt.close(fig)  # constrained layout: not _detach's tight_layout
    return fig


def rung_bars(stats: pd.DataFrame, names: Mapping[str, str], variants: Sequence[str]) -> Figure:
    """Accuracy (%) of each variant on each rung of fine-tuning depth (``benchmarks/ladder.py``),
    the overall and the pure-minority pairs side by side, bars at the mean with ± one standard
    deviation over the seeds. ``stats``: indexed by (rung, test set, variant), columns "mean" and
    "std"; ``names``: rung -> its label, in the order drawn."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    width = 0.8 / len(names)
    for ax, test_set in zip(axes, ["overall", "pure_minority"]):
        for i, (rung, name) in enumerate(names.items()):
            d = stats.loc[(rung, test_set)].reindex(variants)
            x = np.arange(len(variants)) + (i - (len(names) - 1) / 2) * width
            ax.bar(x, d["mean"], width, yerr=d["std"], capsize=2, label=name, color=f"C{i}")
        ax.set_xticks(np.arange(len(variants)), [label(v) for v in variants], rotation=35,
                      ha="right", fontsize="small")
        ax.set(ylabel="accuracy (%)", title=test_set.replace("_", " "))
        if test_set == "overall":  # the bars' differences, not their common height
            low = stats.xs("overall", level=1)["mean"].min()
            ax.set_ylim(max(0, low - 10), None)
    axes[0].legend(fontsize="small")
    return _detach(fig)
