"""Evaluation: pairwise accuracy, the pure-minority subset, user-level bootstrap CIs, 1 - JSD,
macro averages over countries, seed summaries and data efficiency (paper §4; spec §3, §8.7).

Notation: r+ = r(x, y+) and r- = r(x, y-) are the evaluated RM's scores of a test pair;
rg+ and rg- the global RM's. Every function is pure and works on numpy arrays or DataFrames.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax

TEST_SETS = ("overall", "pure_minority")
# the simulator's noise-free truth: the accuracy it names -> the pair table's margin column
TRUTH_COLUMNS = {"country_truth": "country_truth_margin", "global_truth": "global_truth_margin"}


def _finite(a: Any, name: str) -> np.ndarray:
    """float64 1-D array; NaN or inf raises, naming the array and the first bad row."""
    a = np.asarray(a, dtype=np.float64).ravel()
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ValueError(f"{name}: {bad.size} NaN or infinite value(s) (first at row {bad[0]}); "
                         "rescore those pairs or drop them explicitly before evaluating.")
    return a


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays differ in length: {lengths}; pass one value per test pair.")
    return next(iter(lengths.values()))


def pairwise_correct(r_chosen: Any, r_rejected: Any) -> tuple[np.ndarray, np.ndarray]:
    """correct_i = [r+_i > r-_i]; tie_i = [r+_i == r-_i].

    A tie is reported separately and counted as WRONG, as the paper's code counts it
    (spec §8.7): a model that scores everything equally gets accuracy 0, not 0.5.
    """
    rc, rr = _finite(r_chosen, "r_chosen"), _finite(r_rejected, "r_rejected")
    _same_length(r_chosen=rc, r_rejected=rr)
    return rc > rr, rc == rr


def accuracy(correct: Any, test_set: str | None = None, country: str | None = None) -> float:
    """acc = (1/n) sum_i correct_i; zero pairs is an error naming the set and country."""
    correct = np.asarray(correct, dtype=bool).ravel()
    if correct.size == 0:
        where = " ".join(f"{k}={v!r}" for k, v in [("test_set", test_set), ("country", country)]
                         if v is not None)
        raise ValueError(f"accuracy of 0 pairs is undefined ({where or 'no set named'}); "
                         "check the split or leave this set/country out.")
    return float(correct.mean())


def pure_minority_mask(rg_chosen: Any, rg_rejected: Any) -> np.ndarray:
    """Test pairs with rg+ < rg-: the global RM gets every one wrong, so it scores 0 on them.

    Equal global scores are NOT pure minority (the global RM has no opinion there), which is
    the tau = 0.5 filter p_glo < 0.5 of spec §3.
    """
    gc, gr = _finite(rg_chosen, "rg_chosen"), _finite(rg_rejected, "rg_rejected")
    _same_length(rg_chosen=gc, rg_rejected=gr)
    return gc < gr


def bootstrap_means(
    values: Any, clusters: Any, n_boot: int = 1000, seed: int = 0
) -> np.ndarray:
    """The mean of ``values`` in each of ``n_boot`` cluster-bootstrap resamples.

    Draw G clusters (users) with replacement out of the G present; a resample's mean is
    m* = sum_g m_g s_g / sum_g m_g n_g, where m_g is how often cluster g was drawn, s_g the sum
    of its values and n_g its number of values. Users, not pairs (or best-of-N items), are
    resampled because the values of one user share responses and are not independent (spec §1).
    Clusters are compared as strings. Same seed and clusters, same resamples, whatever the
    values: two models scored on the same items are compared on the same draws. ``values`` of
    shape (n, k), k statistics of each row, give (n_boot, k) means from the same draws.
    """
    values = np.asarray(values, dtype=np.float64)
    matrix = values.reshape(len(values), -1) if values.ndim == 2 else values.reshape(-1, 1)
    bad = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if bad.size:
        raise ValueError(f"bootstrap values: {bad.size} row(s) with NaN or infinite values "
                         f"(first: row {bad[0]}); rescore them or drop them explicitly first.")
    clusters = np.asarray(clusters).astype(str).ravel()
    _same_length(values=matrix, clusters=clusters)
    if len(matrix) == 0:
        raise ValueError("bootstrap of 0 values is undefined; check the test set is not empty.")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    _, code = np.unique(clusters, return_inverse=True)
    g = int(code.max()) + 1
    s = np.zeros((g, matrix.shape[1]))
    np.add.at(s, code, matrix)
    n = np.bincount(code, minlength=g).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(g, np.full(g, 1.0 / g), size=int(n_boot))  # (n_boot, G) counts
    means = (draws @ s) / (draws @ n)[:, None]
    return means if values.ndim == 2 else means[:, 0]


def bootstrap_accuracies(
    correct: Any, clusters: Any, n_boot: int = 1000, seed: int = 0
) -> np.ndarray:
    """The accuracy of each of ``n_boot`` cluster-bootstrap resamples: ``bootstrap_means`` of
    the 0/1 ``correct``, acc* = sum_g m_g k_g / sum_g m_g n_g (k_g: cluster g's correct
    pairs, n_g: its pairs)."""
    correct = np.asarray(correct, dtype=bool).ravel()
    if correct.size == 0:
        raise ValueError("bootstrap of 0 pairs is undefined; check the test set is not empty.")
    return bootstrap_means(correct, clusters, n_boot=n_boot, seed=seed)


def percentile_interval(resamples: Any, level: float = 0.95) -> tuple[float, float]:
    """The (1-level)/2 and (1+level)/2 quantiles of bootstrap resamples (numpy's default
    linear interpolation)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}; 0.95 gives a 95% interval.")
    low, high = np.quantile(np.asarray(resamples, dtype=np.float64),
                            [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


def bootstrap_ci(
    correct: Any, clusters: Any, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval (``percentile_interval``) of the cluster bootstrap's accuracies
    (``bootstrap_accuracies``)."""
    acc = bootstrap_accuracies(correct, clusters, n_boot=n_boot, seed=seed)
    return percentile_interval(acc, level)


def macro_bootstrap(
    values: Any, countries: Any, clusters: Any, seeds: Any, n_boot: int = 2000, seed: int = 0,
    shared_clusters: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(point, replicates) of a macro mean over countries of a mean over seeds, with a cluster
    bootstrap that carries both sources of noise: which test users were drawn, and which seeds.

    With m_cs the mean of ``values`` over the rows of country c at seed s, the point is
    M = (1/C) sum_c (1/S_c) sum_s m_cs. One replicate draws, in each country, its G_c clusters
    (users) with replacement (counts u_g) and, when it has S_c > 1 seeds, its seeds with
    replacement (counts k_s; one seed is kept as it is), then

        m*_cs = sum_g u_g t_gs / sum_g u_g n_gs        M* = (1/C) sum_c (1/S_c) sum_s k_s m*_cs

    where t_gs is the sum of the values of cluster g at seed s and n_gs their number. A cluster
    brings all its rows, at every seed: a user's pairs share responses, and the seeds were
    trained and tested on one set of users. For a difference A - B pass the per-row differences
    of the same rows (a paired bootstrap: the same users for A and B). ``shared_clusters``: the
    clusters are one set across countries (every country's pool holds the same prompts), drawn
    once per replicate for all of them. Countries, clusters and seeds are compared as strings
    and drawn in sorted order, so the same ``seed`` gives the same replicates whatever the row
    order. ``values`` of shape (n, k) give a point (k,) and replicates (n_boot, k) from the same
    draws; shape (n,) gives () and (n_boot,).
    """
    values = np.asarray(values, dtype=np.float64)
    x = values.reshape(len(values), -1)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise ValueError(f"bootstrap values: {bad.size} row(s) with NaN or infinite values "
                         f"(first: row {bad[0]}); leave rows without a value out first.")
    labels = {name: np.asarray(a).astype(str).ravel() for name, a in
              (("countries", countries), ("clusters", clusters), ("seeds", seeds))}
    _same_length(values=x, **labels)
    if len(x) == 0:
        raise ValueError("bootstrap of 0 values is undefined; check the test set is not empty.")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    n_boot = int(n_boot)
    rng = np.random.default_rng(seed)
    names, country = np.unique(labels["countries"], return_inverse=True)
    all_clusters, cluster = np.unique(labels["clusters"], return_inverse=True)
    shared = (rng.multinomial(len(all_clusters), np.full(len(all_clusters), 1 / len(all_clusters)),
                              size=n_boot).astype(np.float64) if shared_clusters else None)
    points, reps = [], []
    for c in range(len(names)):
        mine = country == c
        present, g = np.unique(cluster[mine], return_inverse=True)
        seed_names, s = np.unique(labels["seeds"][mine], return_inverse=True)
        n_g, n_s = len(present), len(seed_names)
        t = np.zeros((n_g, n_s, x.shape[1]))
        np.add.at(t, (g, s), x[mine])
        n = np.zeros((n_g, n_s))
        np.add.at(n, (g, s), 1.0)
        points.append((t.sum(axis=0) / n.sum(axis=0)[:, None]).mean(axis=0))
        u = (shared[:, present] if shared is not None else
             rng.multinomial(n_g, np.full(n_g, 1 / n_g), size=n_boot).astype(np.float64))
        k = (rng.multinomial(n_s, np.full(n_s, 1 / n_s), size=n_boot).astype(np.float64)
             if n_s > 1 else np.ones((n_boot, 1)))
        num = np.einsum("bg,gsk->bsk", u, t)
        den = (u @ n)[:, :, None]
        m = np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)
        drawn = k[:, :, None] > 0  # a seed not drawn does not count, even where m is NaN
        reps.append(np.where(drawn, k[:, :, None] * m, 0.0).sum(axis=1) / n_s)
    point, replicates = np.mean(points, axis=0), np.mean(reps, axis=0)
    return (point, replicates) if values.ndim == 2 else (point[0], replicates[:, 0])


def truth_counts(r_chosen: Any, r_rejected: Any, truth_margin: Any) -> tuple[int, int, int]:
    """(agree, used, truth_ties): agree = #{i: sign(r+_i - r-_i) = sign(m_i), m_i != 0}.

    Pairs whose noise-free truth margin m_i is 0 have no right answer and are left out of
    ``used``; they are counted in ``truth_ties``. A model tie (r+ = r-) never agrees.
    """
    rc, rr = _finite(r_chosen, "r_chosen"), _finite(r_rejected, "r_rejected")
    m = _finite(truth_margin, "truth_margin")
    _same_length(r_chosen=rc, r_rejected=rr, truth_margin=m)
    used = m != 0
    agree = np.sign(rc - rr)[used] == np.sign(m[used])
    return int(agree.sum()), int(used.sum()), int((~used).sum())


def truth_accuracy(r_chosen: Any, r_rejected: Any, truth_margin: Any) -> float:
    """agree / used from ``truth_counts``: the model's agreement with a simulator's noise-free
    preference, so label noise does not cap it. Truth ties (m = 0) are excluded; none left is
    an error."""
    agree, used, ties = truth_counts(r_chosen, r_rejected, truth_margin)
    if used == 0:
        raise ValueError(f"no pair has a non-zero truth margin ({ties} truth ties); "
                         "truth accuracy is undefined here.")
    return agree / used


def softmax_over_options(scores: Any) -> np.ndarray:
    """q_k = exp(r(x, o_k)) / sum_j exp(r(x, o_j)): a reward model's distribution over options."""
    scores = _finite(scores, "option scores")
    if scores.size == 0:
        raise ValueError("softmax over 0 options is undefined; a question needs >= 1 option.")
    return softmax(scores)


def jsd_alignment(
    option_scores: Sequence[Any], shares: Sequence[Any], questions: Sequence[str] | None = None
) -> np.ndarray:
    """alignment_q = 1 - JSD(softmax(r(x_q, o_k)), s_q / sum_k s_q,k), per question q.

    JSD is the Jensen-Shannon DISTANCE sqrt((KL(p||m) + KL(s||m)) / 2), m = (p + s) / 2, in
    base 2 so it lies in [0, 1]: alignment 1 = the country's option shares exactly (as GPO).
    Shares are renormalised (survey shares often sum to 0.99); all-zero or negative shares are
    an error naming the question.
    """
    if len(option_scores) != len(shares):
        raise ValueError(f"{len(option_scores)} score arrays but {len(shares)} share arrays; "
                         "pass one of each per question.")
    names = list(questions) if questions is not None else [f"#{i}" for i in range(len(shares))]
    out = np.empty(len(shares), dtype=np.float64)
    for i, (scores, s) in enumerate(zip(option_scores, shares, strict=True)):
        s = _finite(s, f"shares of question {names[i]}")
        p = softmax_over_options(scores)
        if s.size != p.size:
            raise ValueError(f"question {names[i]}: {p.size} option scores but {s.size} shares.")
        if (s < 0).any() or s.sum() <= 0:
            raise ValueError(f"question {names[i]}: shares {s.tolist()} must be >= 0 and not all "
                             "zero; drop the question or fix its selections.")
        out[i] = 1.0 - jensenshannon(p, s / s.sum(), base=2)
    return out


def _check_columns(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise KeyError(f"{what}: missing column(s) {missing}; have {list(df.columns)}")


def macro_average(
    df: pd.DataFrame, value: str = "accuracy", by: Sequence[str] = ("variant", "seed", "test_set")
) -> pd.DataFrame:
    """macro = (1/C) sum_c value_c: the unweighted mean over countries, as the paper's tables.

    Each country counts once whatever its size. Returns ``by`` + [value, n_countries,
    n_missing]; a NaN value (e.g. an empty pure-minority set) is left out of the mean, counted
    in n_missing and warned about. Ratios such as the kept-pair fraction must be reported both
    macro and pooled (the released code mixes the two; spec §8.7): see ``kept_ratio``.
    """
    by = list(by)
    _check_columns(df, by + ["country", value], "macro_average")
    dup = df.duplicated(by + ["country"])
    if dup.any():
        row = df.loc[dup, by + ["country"]].iloc[0].to_dict()
        raise ValueError(f"macro_average: {int(dup.sum())} duplicate row(s) per {by + ['country']}"
                         f", e.g. {row}; add the distinguishing column to `by`.")
    n_missing = int(df[value].isna().sum())
    if n_missing:
        warnings.warn(f"macro_average: {n_missing} NaN {value!r} value(s) left out of the mean "
                      "(see n_missing)", stacklevel=2)
    g = df.groupby(by, sort=False, dropna=False)[value]
    out = g.mean().to_frame(value)
    out["n_countries"] = g.count()
    out["n_missing"] = g.size() - out["n_countries"]
    return out.reset_index()


def kept_ratio(
    df: pd.DataFrame, kept: str = "n_kept", total: str = "n_train", by: Sequence[str] = ()
) -> pd.DataFrame:
    """Kept-pair fraction of the training pairs, both ways (they differ when countries differ
    in size): pooled = sum_c kept_c / sum_c total_c; macro = (1/C) sum_c kept_c / total_c."""
    by = list(by)
    _check_columns(df, by + ["country", kept, total], "kept_ratio")
    if (df[total] <= 0).any():
        bad = df.loc[df[total] <= 0, "country"].tolist()
        raise ValueError(f"kept_ratio: {total} <= 0 for {bad}; a country with no training pairs "
                         "has no kept fraction, leave it out.")
    d = df.assign(_ratio=df[kept] / df[total], _one=0)
    g = d.groupby(by or ["_one"], sort=False)
    out = pd.DataFrame({
        "pooled": g[kept].sum() / g[total].sum(), "macro": g["_ratio"].mean(),
        "n_countries": g.size(),
    })
    return out.reset_index(drop=not by)


def seed_summary(
    df: pd.DataFrame, value: str = "accuracy", by: Sequence[str] = ("variant", "test_set")
) -> pd.DataFrame:
    """mean and sd (ddof = 1) of ``value`` over seeds, per ``by`` group, with n_seeds.

    Expects one row per (by, seed), e.g. the output of ``macro_average``. With one seed sd is
    NaN: one run says nothing about seed variance.
    """
    by = list(by)
    _check_columns(df, by + ["seed", value], "seed_summary")
    dup = df.duplicated(by + ["seed"])
    if dup.any():
        raise ValueError(f"seed_summary: {int(dup.sum())} duplicate row(s) per {by + ['seed']}; "
                         "aggregate over countries first (macro_average).")
    g = df.groupby(by, sort=False, dropna=False)[value]
    return pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n_seeds": g.count()}).reset_index()


def data_efficiency(
    acc_variant: float, n_variant: int, acc_baseline: float, n_baseline: int, acc_global: float
) -> float:
    """eff = ((acc_v - acc_g) / n_v) / ((acc_b - acc_g) / n_b): this companion's measure.

    The gain over the global RM per training pair used, relative to the full-data baseline's:
    a variant that keeps half the pairs and gains as much scores 2.0. It is *not* the paper's
    "data efficiency" (``inverse_kept_fraction``), which ignores the gain; the two agree only
    when the variant gains exactly what the baseline gains.
    n <= 0 is an error (no pairs, no per-pair gain). A baseline that does not improve on the
    global RM (gain <= 0) gives NaN with a warning: the ratio has no meaning there.
    """
    if n_variant <= 0 or n_baseline <= 0:
        raise ValueError(f"data_efficiency needs training pairs: n_variant={n_variant}, "
                         f"n_baseline={n_baseline}; both must be > 0.")
    base_gain = acc_baseline - acc_global
    if base_gain <= 0:
        warnings.warn(f"data_efficiency: the baseline does not improve on the global RM "
                      f"({acc_baseline} vs {acc_global}); returning NaN", stacklevel=2)
        return float("nan")
    return ((acc_variant - acc_global) / n_variant) / (base_gain / n_baseline)


def inverse_kept_fraction(n_variant: int, n_baseline: int) -> float:
    """The paper's data efficiency: n_b / n_v, the inverse of the fraction of pairs kept.

    The paper reports 170-280 % for SCPO: filtering keeps 1/2 to 1/3 of the pairs *at
    comparable accuracy*; the accuracy side of that claim is a separate comparison (variant vs
    baseline), which this number does not contain.
    """
    if n_variant <= 0 or n_baseline <= 0:
        raise ValueError(f"inverse_kept_fraction needs training pairs: n_variant={n_variant}, "
                         f"n_baseline={n_baseline}; both must be > 0.")
    return n_baseline / n_variant


def _score_row(
    test_set: str, mask: np.ndarray, correct: np.ndarray, tie: np.ndarray, users: np.ndarray,
    rc: np.ndarray, rr: np.ndarray, truth: dict[str, np.ndarray], n_boot: int, seed: int,
    level: float,
) -> dict[str, Any]:
    n = int(mask.sum())
    row: dict[str, Any] = {
        "test_set": test_set, "n_pairs": n, "n_correct": int(correct[mask].sum()),
        "n_ties": int(tie[mask].sum()), "n_users": int(np.unique(users[mask]).size),
    }
    if n == 0:
        warnings.warn(f"test set {test_set!r} is empty; its accuracy is NaN", stacklevel=3)
        row.update(accuracy=np.nan, ci_low=np.nan, ci_high=np.nan)
    else:
        low, high = bootstrap_ci(correct[mask], users[mask], n_boot=n_boot, seed=seed, level=level)
        row.update(accuracy=accuracy(correct[mask], test_set), ci_low=low, ci_high=high)
    for name, m in truth.items():
        agree, used, ties = truth_counts(rc[mask], rr[mask], m[mask])
        row[f"{name}_accuracy"] = agree / used if used else np.nan
        row[f"{name}_n_ties"] = ties
    return row


def pair_outcomes(
    r_chosen: Any, r_rejected: Any, rg_chosen: Any, rg_rejected: Any, users: Any, *,
    truth: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per test pair, in the test set's order: ``pair`` (its row), ``user_id``,
    ``pure_minority`` (rg+ < rg-, ``pure_minority_mask``), ``correct`` (r+ > r-, a tie wrong:
    ``pairwise_correct``) and, for each ``truth`` margin, ``<name>_correct``: 1.0 or 0.0, NaN
    where the truth margin is 0 (no right answer; ``truth_counts`` leaves it out). The accuracies
    of ``evaluate_model`` are these columns' means; a run keeps them so that two models can be
    compared pair by pair on the same users (``scpo.companion.report.paired_difference``)."""
    rc, rr = _finite(r_chosen, "r_chosen"), _finite(r_rejected, "r_rejected")
    correct, _ = pairwise_correct(rc, rr)
    users = np.asarray(users).astype(str).ravel()
    _same_length(r_chosen=rc, users=users)
    out = pd.DataFrame({"pair": np.arange(rc.size, dtype=np.int32), "user_id": users,
                        "pure_minority": pure_minority_mask(rg_chosen, rg_rejected),
                        "correct": correct})
    for name, m in (truth or {}).items():
        m = _finite(m, f"truth margin {name!r}")
        _same_length(r_chosen=rc, **{f"truth {name!r}": m})
        agree = (np.sign(rc - rr) == np.sign(m)).astype(np.float64)
        out[f"{name}_correct"] = np.where(m != 0, agree, np.nan)
    return out


def evaluate_model(
    r_chosen: Any, r_rejected: Any, rg_chosen: Any, rg_rejected: Any, users: Any, *,
    truth: dict[str, Any] | None = None, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
) -> list[dict[str, Any]]:
    """One row per test set ("overall", "pure_minority" = rg+ < rg-): n_pairs, n_correct,
    n_ties (counted wrong), n_users, accuracy, ci_low, ci_high (user bootstrap), and for each
    ``truth`` margin array ``<name>_accuracy`` and ``<name>_n_ties`` (pairs left out).

    An empty pure-minority set gives n_pairs 0 and NaN accuracy with a warning, not a crash.
    """
    rc, rr = _finite(r_chosen, "r_chosen"), _finite(r_rejected, "r_rejected")
    correct, tie = pairwise_correct(rc, rr)
    pure = pure_minority_mask(rg_chosen, rg_rejected)
    users = np.asarray(users).astype(str).ravel()
    truth = {k: _finite(v, f"truth margin {k!r}") for k, v in (truth or {}).items()}
    _same_length(**{"r_chosen": rc, "rg_chosen": pure, "users": users},
                 **{f"truth {k!r}": v for k, v in truth.items()})
    if rc.size == 0:
        raise ValueError("evaluate_model: 0 test pairs; the country cannot be evaluated.")
    masks = {"overall": np.ones(rc.size, dtype=bool), "pure_minority": pure}
    return [_score_row(name, masks[name], correct, tie, users, rc, rr, truth, n_boot, seed, level)
            for name in TEST_SETS]
