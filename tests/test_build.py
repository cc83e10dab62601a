"""scpo.models.build: the global RM of each tier, and its cache key."""

import pandas as pd
import pytest

from scpo.config import load_preset
from scpo.models import build
from scpo.pairs import PairData

PAIRS = pd.DataFrame({"prompt": ["ab", "ab", "xyz"],
                      "chosen": ["hello", "hi", "hello"],
                      "rejected": ["hi", "yo!", "hi"]})


def test_an_unknown_backend_is_named(tmp_path):
    cfg = load_preset("tiny")
    cfg.model.backend = "onnx"
    data = PairData(pairs=PAIRS, source="sim", fingerprint="x")
    with pytest.raises(ValueError, match="unknown model.backend 'onnx'"):
        build.build_global(cfg, data, root=tmp_path)


def test_the_global_head_key_changes_with_the_pairs_it_trains_on(tmp_path):
    """GlobalOpinionQA with min_share_gap 0 and 0.15: one csv (one data fingerprint), another
    global pool, so another global head; the same pool gives the same key."""
    from test_goqa import ROWS, write_csv

    from scpo.goqa import load_goqa

    csv = write_csv(tmp_path / "global_opinions.csv", ROWS)
    cfg = load_preset("goqa")
    keys = []
    for gap in (0.0, 0.15, 0.0):
        cfg.data.min_share_gap = gap
        data = load_goqa(csv, min_share_gap=gap)
        keys.append(build.global_head_key(data, cfg, "encoder"))
    assert load_goqa(csv, min_share_gap=0.15).fingerprint == load_goqa(csv).fingerprint
    assert keys[0] != keys[1] and keys[0] == keys[2]


def test_the_global_rms_cache_key_follows_the_code_that_trains_it(tmp_path, monkeypatch):
    """A change to the training code trains the global RM again (the embedding tier's head and
    the partial tier's, whose key holds this one); a change elsewhere does not."""
    import shutil

    copy = tmp_path / "scpo"
    shutil.copytree(build.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(build, "PACKAGE", copy)
    pool = PAIRS.assign(split="train", country="United States")  # a global pool to key on
    data = PairData(pairs=pool, source="sim", fingerprint="x")
    emb, part = load_preset("tiny"), load_preset("tiny")
    part.model.backend = "partial"

    def keys():
        return [build.global_head_key(data, cfg, "encoder") for cfg in (emb, part)]

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
    for backend, files in build.TRAINER_SOURCES.items():
        assert all((build.PACKAGE / f).is_file() for f in files), backend
