"""scpo.models.load reads back every kind of model scpo saves, and `scpo carb` / `scpo bon`
score each of them (a conditioned one asked for --country)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from test_bon import write_prism
from test_carb import ENGLISH, SPANISH

from scpo import cli, models
from scpo.companion import bon, carb
from scpo.models.conditioned import CountryHeadRM, CountryView, PromptConditionedRM
from scpo.models.embedding import EmbeddingRM, Encoder
from scpo.models.hf import HFRewardModel
from scpo.models.partial import PartialRM

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest

COUNTRIES = ["Chile", "Mexico"]
PROMPTS = ["How do I greet a neighbour?", "Any tip for dinner?", "What is polite here?"]
RESPONSES = ["Say hello and smile.", "Bring something small.", "Ask before you sit."]


def embedding_rm(tiny_bert, tmp_path) -> EmbeddingRM:
    enc = Encoder(str(tiny_bert), max_length=64, cache_root=tmp_path / "cache", progress=False)
    return EmbeddingRM.new(enc, standardize_from=enc.encode(PROMPTS, RESPONSES), seed=1)


def country_head(global_rm: EmbeddingRM) -> CountryHeadRM:
    model = CountryHeadRM.from_global(global_rm, COUNTRIES)
    with torch.no_grad():  # trained-looking deltas, so the countries score apart
        model.head.delta.copy_(torch.linspace(-1, 1, model.head.delta.numel())
                               .reshape(model.head.delta.shape))
    return model


@pytest.fixture(scope="module")
def saved(tiny_bert, tmp_path_factory):
    """One directory per kind of saved model, and the model that wrote it."""
    root = tmp_path_factory.mktemp("saved")
    glo = embedding_rm(tiny_bert, root)
    hf = HFRewardModel.from_pretrained(str(tiny_bert), max_length=64)
    made = {"embedding": glo,
            "country_head": country_head(glo),
            "hf": hf,
            "partial": PartialRM.from_pretrained(str(tiny_bert), train_layers=1, max_length=64,
                                                 cache_root=root / "cache"),
            "prompt_conditioned": PromptConditionedRM(hf.copy(), COUNTRIES)}
    made["view"] = made["country_head"].for_country("Mexico")
    for kind, model in made.items():
        model.save(root / kind)
    return root, made


KINDS = {"embedding": EmbeddingRM, "country_head": CountryHeadRM, "hf": HFRewardModel,
         "partial": PartialRM, "prompt_conditioned": PromptConditionedRM, "view": CountryView}


def scores(model, country="Chile"):
    return models.for_country(model, country).score(PROMPTS, RESPONSES)


@pytest.mark.parametrize("kind", KINDS)
def test_load_reads_back_every_kind_as_it_was_saved(saved, kind):
    root, made = saved
    back = models.load(root / kind)
    assert type(back) is KINDS[kind]
    np.testing.assert_allclose(scores(back), scores(made[kind]), rtol=1e-5, atol=1e-6)
    assert back.fingerprint() == made[kind].fingerprint()


def test_a_view_is_its_country_and_a_conditioned_model_needs_one(saved):
    root, made = saved
    view = models.load(root / "view")
    assert view.country == "Mexico"
    np.testing.assert_array_equal(view.score(PROMPTS, RESPONSES),
                                  made["country_head"].score(PROMPTS, RESPONSES, ["Mexico"] * 3))
    assert not np.array_equal(view.score(PROMPTS, RESPONSES), scores(made["country_head"]))
    with pytest.raises(ValueError, match=r"scores for a country: name one of \['Chile', "):
        models.for_country(models.load(root / "country_head"), None)
    glo = made["embedding"]
    assert models.load(root / "country_head", share_with=glo).encoder is glo.encoder
    with pytest.raises(FileNotFoundError, match="no model scpo saved"):
        models.load(root)


@pytest.mark.parametrize("kind", KINDS)
def test_scpo_carb_scores_every_kind_of_saved_model(saved, kind, tmp_path, capsys):
    root, _ = saved
    (tmp_path / "carb").mkdir()
    (tmp_path / "carb" / "es.json").write_text(json.dumps(SPANISH))
    (tmp_path / "carb" / "en.json").write_text(json.dumps(ENGLISH))
    out = tmp_path / "carb.csv"
    cli.main(["carb", "--model", str(root / kind), "--data-dir", str(tmp_path / "carb"),
              "--country", "Chile", "--by", "language", "--n-boot", "20", "--out", str(out)])
    assert "best-of-N accuracy" in capsys.readouterr().out
    items = carb.load_carb(tmp_path / "carb")
    rm = models.for_country(models.load(root / kind), "Chile")
    want, _ = carb.carb_report(rm, items, country="Chile", by=["language"], n_boot=20)
    np.testing.assert_allclose(pd.read_csv(out)["accuracy"], want["accuracy"])


@pytest.mark.parametrize("kind", ["country_head", "prompt_conditioned"])
def test_scpo_bon_asks_a_conditioned_model_for_the_country(saved, kind, tmp_path, capsys):
    root, made = saved
    turns = [(f"u{k}", f"i{k}", [(f"x{k}a", 10 * k), (f"x{k}b", 90 - 10 * k), (f"x{k}c", 45)])
             for k in range(8)]
    write_prism(tmp_path / "data", turns)
    with pytest.raises(SystemExit):  # without a country: a one-line error naming them
        cli.main(["bon", "--model", str(root / kind), "--data-dir", str(tmp_path / "data"),
                  "--test-frac", "0.5"])
    assert "scores for a country: name one of ['Chile', 'Mexico']" in capsys.readouterr().err
    out = tmp_path / "bon.csv"
    cli.main(["bon", "--model", str(root / kind), "--data-dir", str(tmp_path / "data"),
              "--test-frac", "0.5", "--country", "Chile", "--n-boot", "20", "--out", str(out)])
    items, _ = bon.turn_items(tmp_path / "data", test_frac=0.5)
    items = items[items["country"] == "Chile"].reset_index(drop=True)
    r = made[kind].score(items["prompt"].tolist(), items["response"].tolist(),
                         ["Chile"] * len(items))
    want = bon.evaluate_picks(items, r)["score_top"].mean()
    assert pd.read_csv(out).set_index("country").loc["Chile", "score_top"] == pytest.approx(want)
