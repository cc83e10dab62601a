"""One reward model for every country: the country-vector head (embedding tier), the country
written into the prompt (hf tier), their training set, runs and cross-country matrix.

The embedding tier runs on the tiny simulation with conftest's tiny BERT as the frozen encoder
(seconds, no download); the hf tier fine-tunes that BERT for a few steps.
"""

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from scpo import models
from scpo.companion.conditioned import conditioned_training_set, cross_country, run_conditioned
from scpo.config import MethodConfig, TrainConfig, load_preset
from scpo.experiment import country_splits, run_country
from scpo.models import UnknownCountryWarning
from scpo.models.conditioned import (
    DEFAULT_TEMPLATE,
    CountryHead,
    CountryHeadRM,
    PromptConditionedRM,
    with_country,
)
from scpo.models.embedding import EmbeddingRM, Head
from scpo.models.modes import prompt_messages
from scpo.scoring import prepare
from scpo.variants import VARIANTS, training_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest

COUNTRIES = ["Chile", "Mexico"]
TAU, BETA = 0.7, 1.1


@pytest.fixture(scope="module")
def prep(tiny_bert):
    cfg = load_preset("tiny").update({
        "model": {"encoder": str(tiny_bert), "encoder_max_length": 64},
        "train": {"max_steps": 20},
        "run": {"countries": COUNTRIES, "variants": ["global", "scpo_fw"], "n_boot": 50}})
    return prepare(cfg)


@pytest.fixture(scope="module")
def training(prep):
    return conditioned_training_set(prep, COUNTRIES, TAU, BETA)


def joint_test_pairs(prep) -> pd.DataFrame:
    return pd.concat([country_splits(prep, c)["test"] for c in COUNTRIES], ignore_index=True)


def trained(prep, pairs: pd.DataFrame, seed: int = 0) -> CountryHeadRM:
    model = CountryHeadRM.from_global(prep.global_rm, COUNTRIES)
    model.fit(pairs, pairs["weight"].to_numpy(copy=True), TrainConfig(lr=1e-2, max_steps=40),
              MethodConfig(), seed)
    return model


# ---- the embedding tier's model ----

class ToyEncoder:
    """Two-dimensional 'embeddings' looked up by response: all CountryHeadRM asks of one."""

    dim = 2
    table = {"y1": [3.0, 6.0], "y2": [-1.0, 0.0]}

    def encode(self, prompts, responses):
        return np.array([self.table[r] for r in responses], dtype=np.float32)

    def fingerprint(self):
        return "toy"


def test_score_formula_by_hand_on_a_2d_toy():
    head = Head("linear", torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]))
    cond = CountryHead(head, 2)
    with torch.no_grad():
        head.net.weight.copy_(torch.tensor([[0.5, -1.0]]))
        cond.delta.copy_(torch.tensor([[2.0, 1.0], [0.0, 2.0]]))  # delta_A, delta_B
    rm = CountryHeadRM(ToyEncoder(), cond, ["A", "B"])
    # y1: z = ((3-1)/2, (6-2)/4) = (1, 1), head_glo = 0.5 - 1 = -0.5; A adds 2 + 1, B adds 2
    # y2: z = (-1, -0.5), head_glo = -0.5 + 0.5 = 0; A adds -2 - 0.5, B adds -1
    s = rm.score(["p"] * 4, ["y1", "y1", "y2", "y2"], ["A", "B", "A", "B"])
    np.testing.assert_allclose(s, [2.5, 1.5, -2.5, -1.0], rtol=0, atol=1e-6)
    pairs = pd.DataFrame({"prompt": ["p", "p"], "chosen": ["y1", "y2"],
                          "rejected": ["y2", "y1"], "country": ["B", "A"]})
    np.testing.assert_allclose(np.stack(rm.score_pairs(pairs)), [[1.5, -2.5], [-1.0, 2.5]],
                               atol=1e-6)
    with pytest.warns(UnknownCountryWarning, match=r"1 text\(s\) of countries \['C'\]"):
        np.testing.assert_allclose(rm.score(["p"], ["y1"], ["C"]), [-0.5], atol=1e-6)
    assert rm.n_trainable == 2 + 2 * 2  # the shared linear head + two country vectors
    with pytest.raises(TypeError, match="countries"):
        rm.score(["p"], ["y1"])


def test_untrained_model_is_the_global_rm_for_every_country(prep):
    model = CountryHeadRM.from_global(prep.global_rm, COUNTRIES)
    test = joint_test_pairs(prep)
    for asked in COUNTRIES:  # every country, on its own and the other country's pairs
        rc, rr = model.for_country(asked).score_pairs(test)
        np.testing.assert_array_equal(rc, test["rg_chosen"].to_numpy())
        np.testing.assert_array_equal(rr, test["rg_rejected"].to_numpy())
    prompts, responses = test["prompt"].tolist()[:20], test["chosen"].tolist()[:20]
    np.testing.assert_array_equal(model.score(prompts, responses, ["Mexico"] * 20),
                                  prep.global_rm.score(prompts, responses))


def test_trained_model_differs_by_country_and_unknown_gets_the_shared_head(prep, training):
    model = trained(prep, training[0])
    test = country_splits(prep, "Chile")["test"]
    prompts, responses = test["prompt"].tolist(), test["chosen"].tolist()
    chile = model.score(prompts, responses, ["Chile"] * len(test))
    mexico = model.score(prompts, responses, ["Mexico"] * len(test))
    assert np.abs(chile - mexico).max() > 1e-3
    shared = EmbeddingRM(model.encoder, model.head.shared).score(prompts[:3], responses[:3])
    with pytest.warns(UnknownCountryWarning, match=r"3 text\(s\) of countries \['Atlantis'\].*"
                                                   r"shared head"):
        unknown = model.score(prompts[:3], responses[:3], ["Atlantis"] * 3)
    np.testing.assert_array_equal(unknown, shared)
    assert model.unknown == Counter({"Atlantis": 3})
    assert not np.array_equal(shared, prep.global_rm.score(prompts[:3], responses[:3]))
    bad = training[0].head(4).assign(country="Atlantis")
    with pytest.raises(ValueError, match=r"countries \['Atlantis'\] it has no place for"):
        model.fit(bad, np.ones(4), TrainConfig(max_steps=2), MethodConfig(), 0)


def test_same_seed_same_scores_and_save_load_round_trip(prep, training, tmp_path):
    a, b, c = (trained(prep, training[0], seed) for seed in (0, 0, 1))
    test = joint_test_pairs(prep)
    sa = np.stack(a.score_pairs(test))
    np.testing.assert_array_equal(sa, np.stack(b.score_pairs(test)))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert not np.array_equal(sa, np.stack(c.score_pairs(test)))
    a.save(tmp_path)
    back = models.load(tmp_path, share_with=prep.global_rm)
    assert isinstance(back, CountryHeadRM) and back.encoder is prep.global_rm.encoder
    assert back.countries == COUNTRIES and back.head.kind == "linear"
    np.testing.assert_array_equal(np.stack(back.score_pairs(test)), sa)
    assert back.fingerprint() == a.fingerprint()
    with pytest.raises(FileNotFoundError, match="CountryHeadRM.save"):
        CountryHeadRM.load(tmp_path / "nothing")


# ---- the training set ----

def test_training_set_weights_counts_and_leave_out(prep, training):
    pairs, counts = training
    by = counts.set_index("country")
    for c in COUNTRIES:
        train = country_splits(prep, c)["train"]
        w = training_weights(VARIANTS["scpo_fw"], train["rg_chosen"].to_numpy(),
                             train["rg_rejected"].to_numpy(), TAU, BETA)
        mine = pairs[pairs["country"] == c]
        np.testing.assert_array_equal(mine["weight"].to_numpy(), w[w > 0])
        cols = ["prompt", "chosen", "rejected", "user_id"]
        assert mine[cols].values.tolist() == train.loc[w > 0, cols].values.tolist()
        assert by.loc[c, "n_train"] == len(train) > by.loc[c, "n_kept"] == (w > 0).sum() > 0
        assert by.loc[c, "weight_sum"] == pytest.approx(w.sum())
        assert not by.loc[c, "left_out"]
    assert len(pairs) == counts["n_kept"].sum()

    loo, loo_counts = conditioned_training_set(prep, COUNTRIES, TAU, BETA, leave_out="Mexico")
    pd.testing.assert_frame_equal(loo, pairs[pairs["country"] == "Chile"])
    m = loo_counts.set_index("country").loc["Mexico"]
    assert m["left_out"] and m["n_kept"] == 0 and m["n_train"] == by.loc["Mexico", "n_train"]

    with pytest.raises(ValueError, match=r"at tau=1e-09 the filter keeps 0 of \d+ training "
                                         r"pairs of \['Chile', 'Mexico'\].*raise tau"):
        conditioned_training_set(prep, COUNTRIES, 1e-9, BETA)
    with pytest.raises(ValueError, match="leaves no country to train on"):
        conditioned_training_set(prep, COUNTRIES, TAU, BETA, leave_out=COUNTRIES)
    with pytest.raises(ValueError, match=r"leave_out names \['Peru'\]"):
        conditioned_training_set(prep, COUNTRIES, TAU, BETA, leave_out="Peru")


# ---- runs ----

def test_run_conditioned_rows_join_run_countrys_and_the_matrix_agrees(prep):
    per_country = run_country(prep, "Chile", progress=False).results
    out = run_conditioned(prep, COUNTRIES, [0], keep_models=True)
    r = out.results
    assert list(r.columns) == list(per_country.columns)
    assert len(pd.concat([per_country, r])) == len(per_country) + 4  # 2 countries x 2 test sets
    assert set(r["variant"]) == {"conditioned"} and set(r["country"]) == set(COUNTRIES)
    assert out.max_steps == 2 * prep.cfg.train.max_steps == out.histories[0][-1]["step"]
    assert out.n_parameters == 32 + 2 * 32 and out.per_country_parameters == 2 * 32
    assert out.train_seconds[0] > 0
    model = out.models[0]
    matrix = cross_country(model, prep, COUNTRIES)
    assert (matrix.index.name, matrix.columns.name) == ("asked_for", "tested_on")
    assert list(matrix.index) == list(matrix.columns) == COUNTRIES
    for c in COUNTRIES:
        row = r[(r["country"] == c) & (r["test_set"] == "overall")].iloc[0]
        correct = np.greater(*model.for_country(c).score_pairs(country_splits(prep, c)["test"]))
        assert row["accuracy"] == correct.mean() == matrix.loc[c, c]

    loo = run_conditioned(prep, COUNTRIES, [0], leave_out="Mexico", keep_models=True)
    variants = loo.results.groupby("country")["variant"].unique().map(list).to_dict()
    assert variants == {"Chile": ["conditioned"], "Mexico": ["conditioned_loo"]}
    mex = loo.results[loo.results["country"] == "Mexico"]
    assert (mex["n_kept"] == 0).all() and (mex["n_users_trained"] == 0).all()
    assert loo.max_steps == prep.cfg.train.max_steps and loo.models[0].countries == ["Chile"]
    with pytest.warns(UnknownCountryWarning, match=r"\['Mexico'\]"):
        cross_country(loo.models[0], prep, COUNTRIES)


def test_a_left_out_country_is_left_out_of_the_global_pool_too(tiny_bert, tmp_path,
                                                                monkeypatch):
    """GlobalOpinionQA's global pool is every country's training questions: leaving Chile out
    of the conditioned model trains a global RM without Chile's questions, and the model starts
    from it and is filtered and weighted by it. On the simulator (pool: the majority
    countries) the run's own global RM never saw Chile and is kept."""
    from test_notebooks import goqa_fixture

    from scpo.data import global_pool
    from scpo.models import embedding
    from scpo.scoring import prepare_without

    monkeypatch.setenv("SCPO_CACHE_DIR", str(tmp_path / "cache"))
    goqa_fixture(tmp_path / "global_opinions.csv")
    cfg = load_preset("tiny").update({
        "data": {"dataset": "goqa", "data_dir": str(tmp_path)},
        "model": {"encoder": str(tiny_bert), "encoder_max_length": 64},
        "train": {"max_steps": 20, "global_steps": 30},
        "run": {"countries": ["Chile", "Mexico"], "variants": ["global", "scpo_fw"],
                "n_boot": 20}})
    goqa = prepare(cfg)
    assert "Chile" in set(global_pool(goqa.data)["country"])
    pools = []
    train_global_rm = embedding.train_global_rm
    monkeypatch.setattr(embedding, "train_global_rm", lambda enc, pool, *a, **k: (
        pools.append(sorted(set(pool["country"]))), train_global_rm(enc, pool, *a, **k))[1])
    start, without = prepare_without(goqa, ["Chile"])
    assert without == ["Chile"] and pools == [["Mexico", "United Kingdom"]]  # Britain
    assert start.global_rm.fingerprint() != goqa.global_rm.fingerprint()
    assert not np.allclose(start.pairs["rg_chosen"], goqa.pairs["rg_chosen"])  # rescored
    loo = run_conditioned(goqa, ["Chile", "Mexico"], [0], leave_out="Chile", keep_models=True)
    assert loo.pool_without == ["Chile"] and len(pools) == 1  # the cached one, reused
    # Mexico's pairs carry the weights of the global RM without Chile, not the run's
    tr = country_splits(start, "Mexico")["train"]
    w = training_weights(VARIANTS["scpo_fw"], tr["rg_chosen"].to_numpy(),
                         tr["rg_rejected"].to_numpy(), goqa.cfg.method.tau, goqa.cfg.method.beta)
    counts = loo.counts.set_index("country")
    assert counts.loc["Mexico", "weight_sum"] == pytest.approx(w.sum())
    chile = loo.results[loo.results["country"] == "Chile"].set_index(["variant", "test_set"])
    assert set(chile.index.get_level_values("variant")) == {"conditioned_loo", "global_loo"}
    # global_loo: the global RM without Chile on the run's test pairs of Chile
    test = country_splits(goqa, "Chile")["test"]
    correct = np.greater(*start.global_rm.score_pairs(test))
    assert chile.loc[("global_loo", "overall"), "accuracy"] == pytest.approx(correct.mean())
    # the simulator's pool never held Chile: the run's global RM, nothing retrained
    sim = load_preset("tiny").update({"model": {"encoder": str(tiny_bert),
                                                "encoder_max_length": 64}})
    sim_prep = prepare(sim)
    assert prepare_without(sim_prep, ["Chile"]) == (sim_prep, [])


# ---- the hf tier: the country written into the prompt ----

def test_with_country_names_the_country_in_the_prompt():
    chat = ('[{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello"}, '
            '{"role": "user", "content": "Tip?"}]')
    pairs = pd.DataFrame({"prompt": ["Hi?", chat], "chosen": ["a", "b"], "rejected": ["c", "d"],
                          "country": ["Chile", "Mexico"]})
    out = with_country(pairs)
    assert out["prompt"][0] == "Country: Chile\n\nHi?" and pairs["prompt"][0] == "Hi?"
    msgs = prompt_messages(out["prompt"][1])  # still read as a conversation
    assert [m["content"] for m in msgs] == ["Country: Mexico\n\nHi?", "Hello", "Tip?"]
    assert with_country(pairs, "[{country}] {prompt}", country="Peru")["prompt"][0] == "[Peru] Hi?"
    with pytest.raises(ValueError, match=r"must contain \{country\} and \{prompt\}"):
        with_country(pairs, "{prompt}")
    with pytest.raises(ValueError, match="a field other than"):
        with_country(pairs, "{country} {x} {prompt}")


class Recorder:
    """Stands in for an HFRewardModel: records the prompts that fit and score are given."""

    def __init__(self):
        self.seen = []

    def fit(self, pairs, weights, train, method, seed, eval_pairs=None):
        self.seen.append(pairs["prompt"].tolist())
        return []

    def score(self, prompts, responses):
        self.seen.append(list(prompts))
        return np.zeros(len(prompts))

    def score_pairs(self, pairs):
        self.seen.append(pairs["prompt"].tolist())
        return np.zeros(len(pairs)), np.zeros(len(pairs))


def test_prompt_conditioned_model_trains_and_scores_on_named_prompts():
    rec = Recorder()
    rm = PromptConditionedRM(rec, COUNTRIES, "[{country}] {prompt}")
    pairs = pd.DataFrame({"prompt": ["a", "b"], "chosen": ["y", "y"], "rejected": ["n", "n"],
                          "country": COUNTRIES})
    rm.fit(pairs, np.ones(2), TrainConfig(), MethodConfig(), 0)
    rm.score_pairs(pairs)
    rm.for_country("Mexico").score(["c"], ["y"])
    assert rec.seen == [["[Chile] a", "[Mexico] b"]] * 2 + [["[Mexico] c"]]
    with pytest.raises(ValueError, match=r"countries \['Peru'\] it has no place for"):
        rm.fit(pairs.assign(country="Peru"), np.ones(2), TrainConfig(), MethodConfig(), 0)


def test_hf_tier_exports_a_plain_checkpoint_steered_by_the_prompt(tiny_bert, tmp_path):
    cfg = load_preset("tiny").update({
        "model": {"backend": "hf", "global_model": str(tiny_bert), "max_length": 64},
        "train": {"max_steps": 3, "batch_size": 4},
        "run": {"countries": COUNTRIES, "n_boot": 20}})
    hf_prep = prepare(cfg)
    out = run_conditioned(hf_prep, COUNTRIES, [0], keep_models=True, export_dir=tmp_path)
    model, path = out.models[0], Path(out.exported[0])
    assert path == tmp_path / "conditioned" / "seed0"
    assert out.max_steps == 6 and out.histories[0][-1]["step"] == 6
    assert out.n_parameters * 2 == out.per_country_parameters  # one model instead of two
    tok = AutoTokenizer.from_pretrained(path)
    plain = AutoModelForSequenceClassification.from_pretrained(path).eval()
    test = country_splits(hf_prep, "Chile")["test"].head(6)
    prompts, responses = test["prompt"].tolist(), test["chosen"].tolist()
    for c in COUNTRIES:
        named = [DEFAULT_TEMPLATE.format(country=c, prompt=p) for p in prompts]
        with torch.inference_mode():
            by_hand = [plain(**tok(p, r, truncation=True, max_length=64,
                                   return_tensors="pt")).logits[0, 0].item()
                       for p, r in zip(named, responses)]
        ours = model.score(prompts, responses, [c] * len(prompts))
        np.testing.assert_allclose(by_hand, ours, rtol=1e-5, atol=1e-7)
    card = (path / "README.md").read_text()
    assert "write the country into the prompt like this" in card
    assert 'TEMPLATE = "Country: {country}\\n\\n{prompt}"' in card  # as JSON escapes it
    back = models.load(path)
    assert isinstance(back, PromptConditionedRM)
    assert back.template == DEFAULT_TEMPLATE and back.countries == COUNTRIES
    np.testing.assert_allclose(back.score(prompts, responses, ["Mexico"] * len(prompts)),
                               model.score(prompts, responses, ["Mexico"] * len(prompts)),
                               rtol=1e-5, atol=1e-7)
    with pytest.warns(UnknownCountryWarning, match="its name in the prompt"):
        back.for_country("Peru").score(prompts[:2], responses[:2])
    assert back.unknown == Counter({"Peru": 2})


def test_cli_conditioned_writes_the_rows_scpo_run_writes(prep, tiny_bert, tmp_path, capsys):
    from scpo.cli import main

    out = tmp_path / "cond"
    main(["conditioned", "--preset", "tiny", "--set", f"model.encoder='{tiny_bert}'",
          "--set", "model.encoder_max_length=64", "--set", "train.max_steps=20",
          "--set", "run.n_boot=50", "--countries", *COUNTRIES, "--seeds", "0",
          "--leave-out", "Mexico", "--out", str(out)])
    rows = pd.read_parquet(out / "results.parquet")
    assert set(zip(rows["country"], rows["variant"])) == {("Chile", "conditioned"),
                                                        ("Mexico", "conditioned_loo")}
    assert list(rows.columns) == list(run_country(prep, "Chile", progress=False).results.columns)
    counts = pd.read_csv(out / "counts.csv")
    assert counts.set_index("country")["left_out"].to_dict() == {"Chile": False, "Mexico": True}
    printed = capsys.readouterr().out
    assert "one model for 2 countries" in printed
    assert "conditioned_loo" in printed  # one row per country and variant, never averaged
    assert "global RM's training pool too" not in printed  # the simulator's pool: no Mexico


def test_per_country_seconds_times_each_countrys_fit_of_its_kept_pairs(prep, monkeypatch):
    import dataclasses
    import itertools

    from scpo.companion import conditioned

    fits = []

    class Spy:
        def copy(self):
            return self

        def fit(self, pairs, weights, train, method, seed):
            fits.append((len(pairs), float(weights.sum()), seed))

    ticks = itertools.count(0.0, 1.5)  # each fit "takes" 1.5 s
    monkeypatch.setattr(conditioned.time, "perf_counter", lambda: next(ticks))
    total = conditioned.per_country_seconds(dataclasses.replace(prep, global_rm=Spy()),
                                            COUNTRIES, seed=3)
    assert total == 1.5 * len(COUNTRIES)
    for c, (n, w_sum, seed) in zip(COUNTRIES, fits, strict=True):
        train = country_splits(prep, c)["train"]
        w = training_weights(VARIANTS["scpo_fw"], train["rg_chosen"].to_numpy(),
                             train["rg_rejected"].to_numpy(), prep.cfg.method.tau,
                             prep.cfg.method.beta)
        assert (n, w_sum, seed) == ((w > 0).sum(), pytest.approx(w.sum()), 3)
