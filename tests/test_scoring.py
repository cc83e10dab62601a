"""scpo.scoring: each distinct text scored once, through the score cache, onto both columns."""

import numpy as np
import pandas as pd

from scpo.scoring import add_global_scores, score_texts


class LengthRM:
    """r(x, y) = len(y) - 0.5 len(x), counting every text it is asked to score."""

    def __init__(self, name="length"):
        self.name, self.calls = name, []

    def fingerprint(self):
        return self.name

    def score(self, prompts, responses):
        self.calls.append(list(responses))
        return np.array([len(r) - 0.5 * len(p) for p, r in zip(prompts, responses)])


PAIRS = pd.DataFrame({"prompt": ["ab", "ab", "xyz"],
                      "chosen": ["hello", "hi", "hello"],
                      "rejected": ["hi", "yo!", "hi"]})


def test_both_columns_by_hand_and_each_text_scored_once(tmp_path):
    rm = LengthRM()
    out = add_global_scores(PAIRS, rm, root=tmp_path)
    # len(y) - 0.5 len(x): "ab" -> -1, "xyz" -> -1.5
    assert out["rg_chosen"].tolist() == [4.0, 1.0, 3.5]
    assert out["rg_rejected"].tolist() == [1.0, 2.0, 0.5]
    assert sorted(sum(rm.calls, [])) == sorted(["hello", "hi", "yo!", "hello", "hi"])
    pd.testing.assert_frame_equal(out[PAIRS.columns], PAIRS)  # the input columns untouched


def test_the_cache_answers_a_second_run_and_keys_on_the_model(tmp_path):
    texts = pd.DataFrame({"prompt": ["ab", "xyz"], "response": ["hello", "hi"]})
    first = score_texts(LengthRM(), texts, root=tmp_path)
    again = LengthRM()
    np.testing.assert_array_equal(score_texts(again, texts, root=tmp_path), first)
    assert again.calls == []  # nothing rescored
    other = LengthRM(name="another model")
    score_texts(other, texts, root=tmp_path)
    assert other.calls == [["hello", "hi"]]  # another fingerprint, its own scores
