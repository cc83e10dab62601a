"""scpo.data: one door from a DataConfig to pairs; which countries; the global pool."""

import pandas as pd
import pytest

from scpo.config import DataConfig
from scpo.data import cached_pairs, covered_countries, global_pool, load_pairs, resolve_countries
from scpo.pairs import MAJORITY_COUNTRIES, PAPER_COUNTRIES, PairData


def table(rows):
    return pd.DataFrame(rows, columns=["country", "split", "prompt", "chosen", "rejected"])


ROWS = [("United States", "train", "p1", "a", "b"), ("United Kingdom", "train", "p2", "a", "b"),
        ("United States", "test", "p3", "a", "b"), ("Chile", "train", "p4", "a", "b"),
        ("Chile", "test", "p5", "a", "b")]


def test_the_global_pool_is_the_majority_countries_training_pairs():
    pool = global_pool(PairData(table(ROWS), source="prism"))
    assert pool["prompt"].tolist() == ["p1", "p2"]
    assert pool["country"].isin(MAJORITY_COUNTRIES).all()


def test_goqa_pools_every_national_samples_training_questions():
    pool = global_pool(PairData(table(ROWS), source="goqa"))
    assert pool["prompt"].tolist() == ["p1", "p2", "p4"]


def test_a_pool_without_a_country_never_holds_its_pairs():
    data = PairData(table(ROWS), source="goqa")
    assert global_pool(data, without=["Chile"])["prompt"].tolist() == ["p1", "p2"]
    assert global_pool(data, without=["Chile", "United States"])["prompt"].tolist() == ["p2"]
    prism = PairData(table(ROWS), source="prism")  # Chile is not in it: nothing to take out
    assert global_pool(prism, without=["Chile"])["prompt"].tolist() == ["p1", "p2"]
    with pytest.raises(ValueError, match=r"empty .*left out: \['Chile', 'United Kingdom', "
                                         r"'United States'\]"):
        global_pool(data, without=["Chile", "United States", "United Kingdom"])


def test_an_empty_pool_names_the_countries_it_had():
    only_chile = PairData(table([r for r in ROWS if r[0] == "Chile"]), source="sim")
    with pytest.raises(ValueError, match=r"global pool of 'sim' data is empty.*\['Chile'\]"):
        global_pool(only_chile)


def test_all_is_the_papers_seven_and_an_unknown_country_is_named():
    data = PairData(table([(c, "train", "p", "a", "b") for c in PAPER_COUNTRIES]), source="x")
    assert resolve_countries(["all"], data) == list(PAPER_COUNTRIES)
    assert resolve_countries(["Chile"], data) == ["Chile"]
    with pytest.raises(KeyError, match="unknown country 'Atlantis'"):
        resolve_countries(["Chile", "Atlantis"], data)


@pytest.mark.parametrize("over, says", [
    ({"dataset": "csv"}, "unknown dataset 'csv'; choose one of"),
    ({"prompt_context": "dialogue"}, "data.prompt_context='dialogue'"),
    ({"dataset": "goqa", "prompt_context": "history"}, "GlobalOpinionQA only 'turn'"),
])
def test_bad_settings_fail_before_reading_anything(over, says, tmp_path):
    cfg = DataConfig(data_dir=str(tmp_path / "nothing here"), **over)
    with pytest.raises(ValueError, match=says):
        load_pairs(cfg)


# ---------------------------------------------------------------------------- the pair cache
def _builder(calls, value="a"):
    def build():
        calls.append(1)
        frame = pd.DataFrame({"country": ["Chile", "Chile"], "split": ["train", "test"],
                              "tune_val": [True, False], "turn": [0, 3],
                              "chosen_score": [70.0, float("nan")], "prompt": [value, "é\n"]})
        return PairData(frame, source="sim", report={"ties_dropped_by_country": {"Chile": 2}},
                        fingerprint="f00", meta={"sim_dir": "x"})
    return build


def test_a_pair_table_is_built_once_then_read_back_the_same(tmp_path, monkeypatch):
    monkeypatch.setenv("SCPO_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "sim"
    data.mkdir()
    (data / "utterances.jsonl").write_text("{}\n")
    calls = []
    first = cached_pairs(data, {"test_frac": 0.2}, _builder(calls))
    again = cached_pairs(data, {"test_frac": 0.2}, _builder(calls))
    assert calls == [1]  # the second came from the cache
    pd.testing.assert_frame_equal(first.pairs, again.pairs, check_exact=True)
    assert (again.source, again.report, again.fingerprint, again.meta) == (
        "sim", {"ties_dropped_by_country": {"Chile": 2}}, "f00", {"sim_dir": "x"})
    # other settings, other file bytes, or a file more: built again
    cached_pairs(data, {"test_frac": 0.3}, _builder(calls))
    (data / "utterances.jsonl").write_text("{ }\n")
    cached_pairs(data, {"test_frac": 0.2}, _builder(calls))
    (data / "survey.jsonl").write_text("")
    cached_pairs(data, {"test_frac": 0.2}, _builder(calls))
    assert calls == [1] * 4


def test_a_broken_cached_table_is_reported_removed_and_built_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SCPO_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "sim"
    data.mkdir()
    calls = []
    cached_pairs(data, {}, _builder(calls))
    entry = next((tmp_path / "cache" / "pairs").iterdir())
    (entry / "pairs.parquet").write_bytes(b"not parquet")
    # a write that was interrupted before its rename is never read
    (tmp_path / "cache" / "pairs" / f".{entry.name}-half").mkdir()
    with pytest.warns(UserWarning, match=f"cached pair table {entry}.*built again"):
        rebuilt = cached_pairs(data, {}, _builder(calls, value="b"))
    assert calls == [1, 1] and rebuilt.pairs["prompt"].iloc[0] == "b"
    assert cached_pairs(data, {}, _builder(calls)).pairs["prompt"].iloc[0] == "b"
    assert calls == [1, 1]


def test_the_simulators_pairs_from_the_cache_equal_a_fresh_build(tmp_path, monkeypatch):
    monkeypatch.setenv("SCPO_CACHE_DIR", str(tmp_path / "cache"))
    from scpo.config import load_preset

    cfg = load_preset("tiny").data
    fresh, cached = load_pairs(cfg), load_pairs(cfg)
    assert list((tmp_path / "cache" / "pairs").iterdir())
    pd.testing.assert_frame_equal(fresh.pairs, cached.pairs, check_exact=True)
    assert (fresh.report, fresh.meta, fresh.fingerprint) == (
        cached.report, cached.meta, cached.fingerprint)


def test_covered_countries_run_what_the_data_has_and_say_why_not_the_rest():
    pairs = pd.DataFrame({"country": ["Chile", "Chile", "Mexico", "Israel", "Israel"],
                          "split": ["train", "test", "train", "test", "test"]})
    data = PairData(pairs=pairs, source="prism")
    ok, why = covered_countries(data, ["Chile", "Mexico", "Israel", "Canada"])
    assert ok == ["Chile"]
    assert why == {"Mexico": "no test pairs", "Israel": "no train pairs",
                   "Canada": "no pairs in this data"}
    assert covered_countries(data, ["all"])[1]["South Africa"] == "no pairs in this data"
