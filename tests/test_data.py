"""scpo.data: one door from a DataConfig to pairs; which countries; the global pool."""

import pandas as pd
import pytest

from scpo.config import DataConfig
from scpo.data import global_pool, load_pairs, resolve_countries
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
