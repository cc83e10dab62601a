"""Steering at inference: mixing the global RM's and a country RM's rewards or weights."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from scpo.companion.steer import dial, interpolate_weights, steered_reward
from scpo.evaluate import evaluate_model
from scpo.models.embedding import EmbeddingRM, Encoder
from scpo.models.hf import HFRewardModel
from scpo.models.partial import PartialRM

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest

PROMPTS = ["How should I greet my neighbours?", "Is tipping expected?", "What is a good gift?",
           "May I call my teacher by first name?"]
RESPONSES = ["Say hello and smile, then ask how they are.", "Yes, about ten percent.",
             "Something small from your home region.", "Only if they ask you to."]


# ---- steered_reward ----

def test_steered_reward_by_hand():
    g, c = [1.0, 2.0], [3.0, 0.0]
    np.testing.assert_array_equal(steered_reward(g, c, 0.5), [2.0, 1.0])
    np.testing.assert_array_equal(steered_reward(g, c, 2.0), [5.0, -2.0])  # extrapolation
    np.testing.assert_array_equal(steered_reward(g, c, -1.0), [-1.0, 4.0])
    r = steered_reward(np.array([0.1, 1e8]), np.array([0.7, -3.3]), 1.0)
    assert r.dtype == np.float64 and r.tolist() == [0.7, -3.3]  # the end point, bit for bit


def test_steered_reward_refuses_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        steered_reward([1.0, 2.0], [1.0], 0.5)
    with pytest.raises(ValueError, match="r_country: 1 NaN"):
        steered_reward([1.0, 2.0], [1.0, np.nan], 0.5)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        steered_reward([1.0], [2.0], float("inf"))


# ---- interpolate_weights, embedding tier ----

@pytest.fixture(scope="module")
def encoder(tiny_bert, tmp_path_factory):
    return Encoder(str(tiny_bert), max_length=64, progress=False,
                   cache_root=tmp_path_factory.mktemp("steer-cache"))


def heads(encoder, kind: str) -> tuple[EmbeddingRM, EmbeddingRM]:
    """Two heads on one encoder and one standardisation, drawn from different seeds."""
    emb = encoder.encode(PROMPTS, RESPONSES)
    return (EmbeddingRM.new(encoder, kind, standardize_from=emb, seed=0),
            EmbeddingRM.new(encoder, kind, standardize_from=emb, seed=1))


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_embedding_end_points_are_the_two_models(encoder, kind):
    glo, cty = heads(encoder, kind)
    for alpha, end in ((0.0, glo), (1.0, cty)):
        mixed = interpolate_weights(glo, cty, alpha)
        assert type(mixed) is EmbeddingRM and mixed.head is not glo.head
        np.testing.assert_array_equal(mixed.score(PROMPTS, RESPONSES),
                                      end.score(PROMPTS, RESPONSES))
        assert mixed.fingerprint() == end.fingerprint()


def test_linear_head_weights_mix_as_the_rewards_do(encoder):
    glo, cty = heads(encoder, "linear")
    rg, rc = glo.score(PROMPTS, RESPONSES), cty.score(PROMPTS, RESPONSES)
    for alpha in (0.3, 1.5):
        mixed = interpolate_weights(glo, cty, alpha).score(PROMPTS, RESPONSES)
        np.testing.assert_allclose(mixed, steered_reward(rg, rc, alpha), rtol=0, atol=1e-6)
        w = glo.head.net.weight + alpha * (cty.head.net.weight - glo.head.net.weight)
        torch.testing.assert_close(interpolate_weights(glo, cty, alpha).head.net.weight, w)


def test_mlp_head_weights_do_not_mix_as_the_rewards_do(encoder):
    glo, cty = heads(encoder, "mlp")
    rg, rc = glo.score(PROMPTS, RESPONSES), cty.score(PROMPTS, RESPONSES)
    mixed = interpolate_weights(glo, cty, 0.5).score(PROMPTS, RESPONSES)
    assert np.abs(mixed - steered_reward(rg, rc, 0.5)).max() > 1e-3  # GELU is not linear


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_mixes_agree_says_when_the_weights_mix_as_the_rewards_do(encoder, kind, tiny_bert):
    from scpo.companion.steer import mixes_agree

    glo, cty = heads(encoder, kind)
    rg, rc = glo.score(PROMPTS, RESPONSES), cty.score(PROMPTS, RESPONSES)
    mixed = interpolate_weights(glo, cty, 1.5).score(PROMPTS, RESPONSES)
    same = np.allclose(mixed, steered_reward(rg, rc, 1.5), rtol=0, atol=1e-6)
    assert mixes_agree(glo) is same is (kind == "linear")
    assert not mixes_agree(HFRewardModel.from_pretrained(str(tiny_bert), max_length=64))


def test_embedding_fingerprint_follows_alpha(encoder):
    glo, cty = heads(encoder, "mlp")
    prints = {interpolate_weights(glo, cty, a).fingerprint() for a in (0.25, 0.5, 0.75)}
    assert len(prints) == 3 and not prints & {glo.fingerprint(), cty.fingerprint()}
    before = glo.fingerprint()
    interpolate_weights(glo, cty, 0.5)
    assert glo.fingerprint() == before  # the end points are left as they were


def test_embedding_mismatches_are_refused(encoder, tiny_bert, tmp_path):
    glo, cty = heads(encoder, "linear")
    mlp, _ = heads(encoder, "mlp")
    with pytest.raises(ValueError, match="heads differ: 'linear' vs 'mlp'"):
        interpolate_weights(glo, mlp, 0.5)
    other = Encoder(str(tiny_bert), max_length=32, cache_root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="encoders differ"):
        interpolate_weights(glo, EmbeddingRM(other, cty.head), 0.5)
    cty.head.register_buffer("version", torch.tensor(1))
    with pytest.raises(ValueError, match=r"1 only in the country model \(e.g. \['version'\]\)"):
        interpolate_weights(glo, cty, 0.5)
    glo.head.register_buffer("version", torch.tensor(2))
    with pytest.raises(ValueError, match="version: a torch.int64 tensor .* cannot be interp"):
        interpolate_weights(glo, cty, 0.5)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        interpolate_weights(glo, cty, float("nan"))


# ---- interpolate_weights, hf and partial tiers ----

def perturbed(rm: HFRewardModel, seed: int) -> HFRewardModel:
    """A "country model": a copy with every trainable weight moved a little."""
    out = rm.copy()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    out._fingerprint = None  # copy() keeps the global RM's cached hash; fit() would reset it
    return out


@pytest.fixture(scope="module")
def hf_pair(tiny_bert):
    glo = HFRewardModel.from_pretrained(str(tiny_bert), max_length=64)
    return glo, perturbed(glo, 1)


@pytest.fixture(scope="module")
def partial_pair(tiny_bert, tmp_path_factory):
    glo = PartialRM.from_pretrained(str(tiny_bert), train_layers=1, max_length=64,
                                    cache_root=tmp_path_factory.mktemp("steer-hidden"))
    return glo, perturbed(glo, 2)


@pytest.mark.parametrize("tier", ["hf_pair", "partial_pair"])
def test_hf_end_points_and_fingerprints(tier, request):
    glo, cty = request.getfixturevalue(tier)
    rg, rc = glo.score(PROMPTS, RESPONSES), cty.score(PROMPTS, RESPONSES)
    assert np.abs(rg - rc).max() > 1e-3  # the two models do differ
    before = {k: v.clone() for k, v in glo.model.state_dict().items()}
    glo.fingerprint()  # cached now, and carried over by copy(): it must not survive the mix
    for alpha, r in ((0.0, rg), (1.0, rc)):
        mixed = interpolate_weights(glo, cty, alpha)
        assert type(mixed) is type(glo)
        np.testing.assert_allclose(mixed.score(PROMPTS, RESPONSES), r, rtol=0, atol=1e-6)
    half = interpolate_weights(glo, cty, 0.5)
    assert half.fingerprint() not in (glo.fingerprint(), cty.fingerprint())
    assert interpolate_weights(glo, cty, 0.5).fingerprint() == half.fingerprint()
    r = half.score(PROMPTS, RESPONSES)
    assert np.abs(r - rg).max() > 1e-4 and np.abs(r - rc).max() > 1e-4
    for k, v in glo.model.state_dict().items():  # the global RM (frozen layers shared) intact
        assert torch.equal(v, before[k]), k


def test_hf_mismatches_are_refused(hf_pair, partial_pair, tiny_bert):
    glo, cty = hf_pair
    with pytest.raises(TypeError, match="cannot mix HFRewardModel and PartialRM"):
        interpolate_weights(glo, partial_pair[1], 0.5)
    with pytest.raises(TypeError, match="cannot mix HFRewardModel and EmbeddingRM"):
        interpolate_weights(glo, EmbeddingRM(None, torch.nn.Linear(1, 1)), 0.5)
    short = HFRewardModel.from_pretrained(str(tiny_bert), max_length=32)
    with pytest.raises(ValueError, match=r"options \(global, country\) \{'max_length': \(64, 32"):
        interpolate_weights(glo, short, 0.5)
    wide = cty.copy()
    wide.model.classifier = torch.nn.Linear(32, 2)
    with pytest.raises(ValueError, match=r"classifier.weight: global torch.float32\(1, 32\) vs "
                                         r"country torch.float32\(2, 32\)"):
        interpolate_weights(glo, wide, 0.5)
    other_tok = cty.copy()
    other_tok.tokenizer = copy.deepcopy(cty.tokenizer)
    other_tok.tokenizer.chat_template = "{{ messages }}"
    with pytest.raises(ValueError, match="tokenizers differ"):
        interpolate_weights(glo, other_tok, 0.5)
    lora = HFRewardModel.from_pretrained(str(tiny_bert), max_length=64, lora_r=2)
    with pytest.raises(ValueError, match="LoRA .* Merge the adapters"):
        interpolate_weights(lora, lora.copy(), 0.5)


def test_partial_frozen_layers_must_agree(partial_pair, tiny_bert, tmp_path):
    glo, _ = partial_pair
    other = PartialRM.from_pretrained(str(tiny_bert), train_layers=1, max_length=64,
                                      cache_root=tmp_path)
    with torch.no_grad():
        other.model.bert.encoder.layer[0].output.dense.bias.add_(0.1)
    with pytest.raises(ValueError, match="bert.encoder.layer.0.output.dense.bias: frozen in the "
                                         "global model"):
        interpolate_weights(glo, other, 0.5)


# ---- dial ----

def tiny_test_set(truth: bool) -> tuple[pd.DataFrame, tuple, tuple]:
    """4 pairs, 2 users. Global margins [1, -1, 1, -1] (pure minority: pairs 1 and 3), country
    margins [-1, 1, 1, 2]; the steered margin is (1 - a) global + a country."""
    test = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2"]})
    if truth:
        test["country_truth_margin"] = [-1.0, 1.0, 1.0, 1.0]
        test["global_truth_margin"] = [1.0, -1.0, 1.0, 0.0]  # pair 3: a truth tie
    glo = (np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.0, 1.0, 0.0, 1.0]))
    cty = (np.array([0.0, 1.0, 1.0, 2.0]), np.array([1.0, 0.0, 0.0, 0.0]))
    return test, glo, cty


def test_dial_by_hand():
    test, glo, cty = tiny_test_set(truth=True)
    out = dial(test, glo, cty, [0.0, 0.4, 0.5, 1.0, 2.0], n_boot=1000, seed=0)
    assert len(out) == 10 and list(out.columns[:2]) == ["alpha", "test_set"]
    got = out.set_index(["alpha", "test_set"])
    # steered margins: a=0.4 [.2, -.2, 1, .2]; a=0.5 [0, 0, 1, .5] (two ties, counted wrong);
    # a=1 [-1, 1, 1, 2]; a=2 [-3, 3, 1, 5]
    expect = {  # (alpha, set): accuracy, n_ties, ci_low, ci_high
        (0.0, "overall"): (0.5, 0, 0.5, 0.5), (0.0, "pure_minority"): (0.0, 0, 0.0, 0.0),
        (0.4, "overall"): (0.75, 0, 0.5, 1.0), (0.4, "pure_minority"): (0.5, 0, 0.0, 1.0),
        (0.5, "overall"): (0.5, 2, 0.0, 1.0), (0.5, "pure_minority"): (0.5, 1, 0.0, 1.0),
        (1.0, "overall"): (0.75, 0, 0.5, 1.0), (1.0, "pure_minority"): (1.0, 0, 1.0, 1.0),
        (2.0, "overall"): (0.75, 0, 0.5, 1.0), (2.0, "pure_minority"): (1.0, 0, 1.0, 1.0),
    }
    for key, (acc, ties, low, high) in expect.items():
        row = got.loc[key]
        assert (row["accuracy"], row["n_ties"], row["ci_low"], row["ci_high"]) == (
            acc, ties, low, high), key
    # the pure-minority set is the global RM's at every alpha (steered, a=1 would be pair 0)
    assert (out.loc[out["test_set"] == "pure_minority", "n_pairs"] == 2).all()
    assert got.loc[(0.0, "overall"), "country_truth_accuracy"] == 0.25
    assert got.loc[(0.0, "overall"), "global_truth_accuracy"] == 1.0
    assert got.loc[(1.0, "overall"), "country_truth_accuracy"] == 1.0
    assert got.loc[(1.0, "overall"), "global_truth_accuracy"] == pytest.approx(1 / 3)
    assert (out["global_truth_n_ties"] == 1).all()  # pair 3, in both sets


def test_dial_ends_are_the_models_own_rows():
    test, glo, cty = tiny_test_set(truth=False)
    out = dial(test, glo, cty, [0.0, 1.0], n_boot=200, seed=3)
    assert not any("truth" in c for c in out.columns)
    users = test["user_id"].to_numpy()
    for alpha, (rc, rr) in ((0.0, glo), (1.0, cty)):
        want = pd.DataFrame(evaluate_model(rc, rr, *glo, users, n_boot=200, seed=3))
        pd.testing.assert_frame_equal(
            out[out["alpha"] == alpha].drop(columns="alpha").reset_index(drop=True), want)
    with pytest.raises(KeyError, match="no user column 'rater'"):
        dial(test, glo, cty, [0.5], users="rater")
    with pytest.raises(ValueError, match="alphas is empty"):
        dial(test, glo, cty, [])
