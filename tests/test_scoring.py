"""scpo.scoring: each distinct text scored once, through the score cache, onto both columns."""

import numpy as np
import pandas as pd
import pytest

from scpo.config import load_preset
from scpo.pairs import PairData
from scpo.scoring import add_global_scores, get_global_rm, score_texts


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


def test_an_unknown_backend_is_named(tmp_path):
    cfg = load_preset("tiny")
    cfg.model.backend = "onnx"
    data = PairData(pairs=PAIRS, source="sim", fingerprint="x")
    with pytest.raises(ValueError, match="unknown model.backend 'onnx'"):
        get_global_rm(data, cfg, root=tmp_path)


def test_the_global_head_key_changes_with_the_pairs_it_trains_on(tmp_path):
    """GlobalOpinionQA with min_share_gap 0 and 0.15: one csv (one data fingerprint), another
    global pool, so another global head; the same pool gives the same key."""
    from test_goqa import ROWS, write_csv

    from scpo.goqa import load_goqa
    from scpo.scoring import _global_head_key

    csv = write_csv(tmp_path / "global_opinions.csv", ROWS)
    cfg = load_preset("goqa")
    keys = []
    for gap in (0.0, 0.15, 0.0):
        cfg.data.min_share_gap = gap
        data = load_goqa(csv, min_share_gap=gap)
        keys.append(_global_head_key(data, cfg, "encoder"))
    assert load_goqa(csv, min_share_gap=0.15).fingerprint == load_goqa(csv).fingerprint
    assert keys[0] != keys[1] and keys[0] == keys[2]


def test_the_global_rms_cache_key_follows_the_code_that_trains_it(tmp_path, monkeypatch):
    """A change to the training code trains the global RM again (the embedding tier's head and
    the partial tier's, whose key holds this one); a change elsewhere does not."""
    import shutil

    from scpo import scoring

    copy = tmp_path / "scpo"
    shutil.copytree(scoring.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(scoring, "PACKAGE", copy)
    pool = PAIRS.assign(split="train", country="United States")  # a global pool to key on
    data = PairData(pairs=pool, source="sim", fingerprint="x")
    emb, part = load_preset("tiny"), load_preset("tiny")
    part.model.backend = "partial"

    def keys():
        return [scoring._global_head_key(data, cfg, "encoder") for cfg in (emb, part)]

    before = keys()
    assert before[0] != before[1]
    with open(copy / "report.py", "a") as f:  # not training code
        f.write("\n# a comment\n")
    assert keys() == before
    with open(copy / "models" / "partial.py", "a") as f:  # the partial tier's trainer
        f.write("\n# a comment\n")
    assert keys()[0] == before[0] and keys()[1] != before[1]
    with open(copy / "models" / "embedding.py", "a") as f:  # both tiers' (the backbone)
        f.write("\n# a comment\n")
    after = keys()
    assert after[0] != before[0] and after[1] not in before
    for backend, files in scoring.TRAINER_SOURCES.items():
        assert all((scoring.PACKAGE / f).is_file() for f in files), backend
