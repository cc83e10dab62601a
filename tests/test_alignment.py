"""1 - Jensen-Shannon distance between a reward model's option distribution and a country's
option shares (GlobalOpinionQA; spec §1), against values worked out by hand.

The code's convention, pinned here: the Jensen-Shannon DISTANCE (the square root of the
divergence), base-2 logarithms, so 1 - distance lies in [0, 1]. For the first question below:

    divergence, base 2        JSD  = 0.75 log2(3) - 1            = 0.18872
    1 - distance (the code)   1 - sqrt(0.18872)                  = 0.56558
    1 - divergence (wrong)    1 - 0.18872                        = 0.81128
    1 - distance in nats      1 - sqrt(0.75 ln 3 - ln 2)         = 0.63832
"""

import math

import numpy as np
import pandas as pd
import pytest

from scpo import evaluate, experiment, goqa, scoring
from scpo.config import Config
from scpo.models.base import RewardModel

LN2, LN3 = math.log(2), math.log(3)

# Question A: options (a1, a2), Chile's shares (0.6, 0.2) -> renormalised s = (3/4, 1/4).
# Model scores (0, ln 3) -> softmax p = (1/4, 3/4); m = (p + s) / 2 = (1/2, 1/2).
# KL(p||m) = 1/4 log2(1/2) + 3/4 log2(3/2) = 3/4 log2 3 - 1; KL(s||m) is the same (mirror).
# JSD = 3/4 log2 3 - 1 = 0.1887218755; alignment = 1 - sqrt(JSD) = 0.5655786889.
ALIGN_A = 1 - math.sqrt(0.75 * math.log2(3) - 1)
# Question B: options (b1, b2), shares (1, 0), scores (5, 5) -> p = (1/2, 1/2), m = (3/4, 1/4).
# KL(p||m) = 1/2 log2(2/3) + 1/2 log2 2 = 1 - 1/2 log2 3; KL(s||m) = log2(4/3) = 2 - log2 3
# (the 0 share contributes 0 log 0 = 0). JSD = (3 - 3/2 log2 3) / 2 = 3/2 - 3/4 log2 3
# = 0.3112781245; alignment = 1 - sqrt(JSD) = 0.4420769547.
ALIGN_B = 1 - math.sqrt(1.5 - 0.75 * math.log2(3))
# Question C: options (c1, c2, c3), shares (0.5, 0.25, 0.25), scores (0, ln 2, ln 2)
# -> p = (1/5, 2/5, 2/5), m = (7/20, 13/40, 13/40).
# KL(p||m) = 1/5 log2(4/7) + 4/5 log2(16/13) = 1/5 (-0.8073549) + 4/5 (0.2995603) = 0.0781772
# KL(s||m) = 1/2 log2(10/7) + 1/2 log2(10/13) = 1/2 (0.5145732) + 1/2 (-0.3785116) = 0.0680308
# JSD = (0.0781772 + 0.0680308) / 2 = 0.0731040; alignment = 1 - sqrt(JSD) = 0.7296225.
KL_PM_C = 0.2 * math.log2(4 / 7) + 0.8 * math.log2(16 / 13)
KL_SM_C = 0.5 * math.log2(10 / 7) + 0.5 * math.log2(10 / 13)
ALIGN_C = 1 - math.sqrt((KL_PM_C + KL_SM_C) / 2)


def test_hand_values_are_what_the_comments_say():
    assert ALIGN_A == pytest.approx(0.5655786889, abs=1e-10)
    assert ALIGN_B == pytest.approx(0.4420769547, abs=1e-10)
    assert KL_PM_C == pytest.approx(0.0781772411, abs=1e-9)
    assert KL_SM_C == pytest.approx(0.0680307748, abs=1e-9)
    assert ALIGN_C == pytest.approx(0.7296224715, abs=1e-9)


def test_jsd_alignment_is_one_minus_the_base2_distance():
    got = evaluate.jsd_alignment(
        [[0.0, LN3], [5.0, 5.0], [0.0, LN2, LN2]],
        [[0.6, 0.2], [1.0, 0.0], [0.5, 0.25, 0.25]], questions=["A", "B", "C"])
    np.testing.assert_allclose(got, [ALIGN_A, ALIGN_B, ALIGN_C], rtol=0, atol=1e-9)
    # not 1 - divergence, not natural logs (the other readings of "1 - JSD")
    assert abs(got[0] - (1 - (0.75 * math.log2(3) - 1))) > 0.2
    assert abs(got[0] - (1 - math.sqrt(0.75 * LN3 - LN2))) > 0.05
    # a constant added to every score changes nothing (softmax), nor does scaling the shares
    again = evaluate.jsd_alignment([[10.0, 10.0 + LN3]], [[6.0, 2.0]])
    assert again[0] == pytest.approx(ALIGN_A, abs=1e-9)
    with pytest.raises(ValueError, match="question B: 2 option scores but 3 shares"):
        evaluate.jsd_alignment([[0.0, 1.0]], [[0.2, 0.3, 0.5]], questions=["B"])


# ---- the experiment's path: a GlobalOpinionQA csv, a stub RM, the test questions' mean ----

QUESTIONS = {  # question -> (options, Chile's shares, the stub's score of each option)
    "Question A?": (["a1", "a2"], [0.6, 0.2], [0.0, LN3]),
    "Question B?": (["b1", "b2"], [1.0, 0.0], [5.0, 5.0]),
    "Question C?": (["c1", "c2", "c3"], [0.5, 0.25, 0.25], [0.0, LN2, LN2]),
}
BY_HAND = {"Question A?": ALIGN_A, "Question B?": ALIGN_B, "Question C?": ALIGN_C}
SCORES = {(q, o): s for q, (opts, _, sc) in QUESTIONS.items() for o, s in zip(opts, sc)}


class FixedScores(RewardModel):
    """Scores each (question, option) with the number in SCORES; trains nothing."""

    n_trainable = 0

    def fingerprint(self):
        return "fixed-scores"

    def score(self, prompts, responses):
        return np.array([SCORES[(p, r)] for p, r in zip(prompts, responses)], dtype=np.float64)

    def fit(self, *args, **kwargs):
        raise AssertionError("not trained here")

    def copy(self):
        return self

    def save(self, path):
        raise AssertionError("not saved here")

    @classmethod
    def load(cls, path):
        raise AssertionError("not loaded here")


def cell(selections):
    return f"defaultdict(<class 'list'>, {selections!r})"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Chile has all three questions; Mexico has question A with the shares the stub matches
    exactly (p = s, alignment 1), so mixing countries up would move the mean."""
    rows = [{"question": q, "options": repr(opts),
             "selections": cell({"Chile": shares, **({"Mexico": [0.25, 0.75]} if q.endswith(
                 "A?") else {})}), "source": "GAS"}
            for q, (opts, shares, _) in QUESTIONS.items()]
    path = tmp_path_factory.mktemp("goqa") / "global_opinions.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    # half of the 3 questions (round(1.5) = 2) are test questions, one is a training question
    return goqa.load_goqa(path, test_frac=0.5, split_seed=0, val_frac=0.0)


def test_the_experiment_averages_the_countrys_test_questions(data):
    opts = data.options
    chile_test = opts[(opts["country"] == "Chile") & (opts["split"] == "test")]["prompt"]
    assert len(chile_test) == 2  # one Chile question is a training one and must not count
    expected = float(np.mean([BY_HAND[q] for q in chile_test]))
    everything = float(np.mean(list(BY_HAND.values())))
    assert abs(expected - everything) > 0.01  # the training question would move the mean
    model = FixedScores()
    prep = scoring.RunInputs(Config(), data, data.pairs, FixedScores(), ["Chile"])
    got = experiment._jsd_alignment(prep.data.options, model, "Chile")
    assert got == pytest.approx(expected, abs=1e-9)

    # and the row that evaluate_on_test writes for a GOQA run carries the same number
    test = data.pairs[(data.pairs["country"] == "Chile") & (data.pairs["split"] == "test")]
    rc, rr = model.score_pairs(test)
    test = test.assign(rg_chosen=rc, rg_rejected=rr).reset_index(drop=True)
    rows = experiment.evaluate_on_test(prep, model, test, 0, "Chile")
    assert rows[0]["test_set"] == "overall"
    assert rows[0]["jsd_alignment"] == pytest.approx(expected, abs=1e-9)


def test_mexico_matched_exactly_scores_one(data):
    prep = scoring.RunInputs(Config(), data, data.pairs, FixedScores(), ["Mexico"])
    opts = data.options
    if not ((opts["country"] == "Mexico") & (opts["split"] == "test")).any():
        pytest.fail("the fixture should put Mexico's only question (A) in the test split")
    # p = s = (1/4, 3/4): divergence ~1e-17 at most, its square root ~3e-9
    got = experiment._jsd_alignment(prep.data.options, FixedScores(), "Mexico")
    assert got == pytest.approx(1, abs=1e-7)
