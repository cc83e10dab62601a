"""The embedding tier exported for the reader's browser (scpo.companion.browser): the ONNX encoder
computes what Encoder.embed computes, the heads' arrays what the heads compute, and the bundle holds
every file the page loads, with scpo's own rewards and token ids for the browser test."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
import torch

from scpo.companion import browser, jsruntime
from scpo.models.conditioned import CountryHeadRM
from scpo.models.embedding import EmbeddingRM, Encoder

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest

PROMPTS = ["How should I greet my neighbours?", "Is tipping expected?", "What is a good gift?",
           "May I call my teacher by first name?"]
RESPONSES = ["Say hello and smile, then ask how they are.", "Yes, about ten percent.",
             "Something small from your home region.", "Only if they ask you to."]


@pytest.fixture(scope="module")
def encoder(tiny_bert, tmp_path_factory):
    return Encoder(str(tiny_bert), max_length=64, progress=False,
                   cache_root=tmp_path_factory.mktemp("browser-cache"))


@pytest.fixture(scope="module")
def models(encoder):
    """A global head, a country head (another seed) and an MLP head, on one encoder."""
    emb = encoder.encode(PROMPTS, RESPONSES)
    return {k: EmbeddingRM.new(encoder, kind, standardize_from=emb, seed=seed)
            for k, kind, seed in (("global", "linear", 0), ("Chile", "linear", 1),
                                  ("mlp", "mlp", 2))}


@pytest.fixture(scope="module")
def conditioned(models):
    cond = CountryHeadRM.from_global(models["global"], ["Chile", "Mexico"])
    with torch.no_grad():
        cond.head.delta.copy_(torch.randn(cond.head.delta.shape, generator=torch.Generator()
                                          .manual_seed(3)))
    return cond


def test_head_rewards_by_hand():
    arrays = {"mean": np.array([1.0, 0.0]), "std": np.array([2.0, 0.5]),
              "layers": [{"weight": np.array([[3.0, -1.0]]), "bias": None, "activation": None}]}
    emb = np.array([[3.0, 1.0], [1.0, 0.0]])
    # z = ((3-1)/2, 1/0.5) = (1, 2): r = 3 - 2 = 1; z = (0, 0): r = 0
    np.testing.assert_allclose(browser.head_rewards(arrays, emb), [1.0, 0.0])
    mlp = {**arrays, "layers": [
        {"weight": np.array([[1.0, 0.0], [0.0, 1.0]]), "bias": np.array([0.0, -2.0]),
         "activation": "gelu"},
        {"weight": np.array([[1.0, 1.0]]), "bias": None, "activation": None}]}
    # hidden = gelu((1, 0)) = (0.8413447..., 0): GELU(1) = Phi(1)
    np.testing.assert_allclose(browser.head_rewards(mlp, emb[:1]), [0.8413447460685429])
    cond = {"shared": arrays, "delta": np.array([[0.5, 0.5], [0.0, 1.0]]),
            "countries": ["A", "B"]}
    np.testing.assert_allclose(browser.head_rewards(cond, emb, "B"), [1.0 + 2.0, 0.0])
    with pytest.raises(ValueError, match="not 'C'"):
        browser.head_rewards(cond, emb, "C")


@pytest.mark.parametrize("key", ["global", "mlp"])
def test_the_heads_arrays_score_as_the_model_does(models, encoder, key, tmp_path):
    model = models[key]
    emb = encoder.encode(PROMPTS, RESPONSES)
    browser.write_heads(tmp_path, {key: model.head_arrays()})
    arrays = browser.read_heads(tmp_path)[key]  # through the files the page reads
    np.testing.assert_allclose(browser.head_rewards(arrays, emb),
                               model.score(PROMPTS, RESPONSES), atol=1e-5)


def test_the_conditioned_models_arrays_score_each_country(conditioned, encoder, tmp_path):
    emb = encoder.encode(PROMPTS, RESPONSES)
    browser.write_heads(tmp_path, {"conditioned": conditioned.head_arrays()})
    arrays = browser.read_heads(tmp_path)["conditioned"]
    for c in ("Chile", "Mexico"):
        np.testing.assert_allclose(browser.head_rewards(arrays, emb, c),
                                   conditioned.score(PROMPTS, RESPONSES, [c] * 4), atol=1e-5)
    assert not np.allclose(browser.head_rewards(arrays, emb, "Chile"),
                           browser.head_rewards(arrays, emb, "Mexico"))


def test_the_onnx_encoder_computes_what_embed_computes(encoder, tmp_path):
    fp32 = browser.exported_encoder(encoder, tmp_path / "e.onnx")  # Encoder.to_onnx, cached
    assert (browser.exported_encoder(encoder, tmp_path / "again.onnx").read_bytes()
            == fp32.read_bytes())
    want = encoder.embed(PROMPTS, RESPONSES)
    for batch in (1, 3):  # one text at a time (the page) or padded batches
        got = browser.embed_onnx(fp32, encoder, PROMPTS, RESPONSES, batch_size=batch)
        np.testing.assert_allclose(got, want, atol=1e-5)
    half = browser.half_weights(fp32, tmp_path / "h.onnx", min_size=64)
    assert half.stat().st_size < 0.6 * fp32.stat().st_size
    got = browser.embed_onnx(half, encoder, PROMPTS, RESPONSES)
    diff = np.abs(got - want).max()
    assert 1e-7 < diff < 1e-2  # rounded weights: close, not equal


def fake_pins(monkeypatch, tmp_path):
    """Two npm "packages" of our own, as the registry would give them, in a cache."""
    cache, pins = tmp_path / "npm", {}
    cache.mkdir()
    for name, files in (("onnxruntime-web", ["dist/ort.wasm.bundle.min.mjs",
                                             "dist/ort-wasm-simd-threaded.wasm"]),
                        ("@huggingface/tokenizers", ["dist/tokenizers.min.mjs"])):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for f in files:
                data = f"// {f}".encode()
                info = tarfile.TarInfo(f"package/{f}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        pin = jsruntime.Pin(name, "1.0.0", jsruntime.integrity(buf.getvalue()),
                            {f"package/{f}": f.split("/")[-1] for f in files}, "MIT")
        (cache / pin.tarball).write_bytes(buf.getvalue())
        pins[name] = pin
    monkeypatch.setattr(jsruntime, "PINS", pins)
    return cache


def test_the_bundle_holds_every_file_the_page_loads(models, conditioned, encoder, tmp_path,
                                                    monkeypatch):
    cache = fake_pins(monkeypatch, tmp_path)
    rounds = [{"prompt": PROMPTS[0], "answers": RESPONSES[:2]},
              {"prompt": PROMPTS[1], "answers": RESPONSES[2:]}]
    dest = tmp_path / "web"
    m = browser.write_bundle(dest, models["global"], {"Chile": models["Chile"]}, conditioned,
                             examples=[{"prompt": "p", "answers": ["a", "b"]}], rounds=rounds,
                             npm_cache=cache)
    for name in ("manifest.json", "heads.json", "heads.bin", "tokenizer.json",
                 "tokenizer_config.json", "examples.json", "reference.json",
                 "encoder-fp32.onnx", "encoder-fp16.onnx", m["runtime"]["ort"],
                 m["runtime"]["wasm"], m["runtime"]["tokenizers"]):
        assert (dest / name).is_file(), name
    for name, f in m["files"].items():
        assert (dest / name).stat().st_size == f["bytes"]
    loaded = ["heads.json", "heads.bin", "tokenizer.json", "tokenizer_config.json",
              "examples.json", m["runtime"]["ort"], m["runtime"]["wasm"],
              m["runtime"]["tokenizers"]]
    for e in browser.ENCODERS:
        assert m["download_bytes"][e] == sum(m["files"][n]["bytes"] for n in loaded) + \
            m["files"][f"encoder-{e}.onnx"]["bytes"]
    assert m["countries"] == ["Chile"] and m["conditioned"] == ["Chile", "Mexico"]
    assert m["max_length"] == 64 and m["default_encoder"] == "fp16"
    # the reference: scpo's own token ids and rewards of each text, for the browser test
    ref = json.loads((dest / "reference.json").read_text())
    first = ref["rounds"][0]
    tok = encoder.tokenizer([PROMPTS[0]] * 2, RESPONSES[:2], truncation=True, max_length=64)
    assert first["ids"] == tok["input_ids"] and first["type_ids"] == tok["token_type_ids"]
    np.testing.assert_array_equal(first["rewards"]["country:Chile"],
                                  models["Chile"].score([PROMPTS[0]] * 2, RESPONSES[:2]))
    np.testing.assert_array_equal(
        first["rewards"]["conditioned:Chile"],
        conditioned.score([PROMPTS[0]] * 2, RESPONSES[:2], ["Chile"] * 2))
    assert "conditioned:Mexico" not in first["rewards"]  # Mexico has no model of its own here
    # ... and of the starting examples (the exercise on the page asks about them)
    np.testing.assert_array_equal(ref["examples"][0]["rewards"]["country:Chile"],
                                  models["Chile"].score(["p", "p"], ["a", "b"]))
    assert len(ref["probes"]) == len(browser.PROBES)
    assert max(len(i) for p in ref["probes"] for i in p["ids"]) == 64  # cut at max_length
    # what the page computes, in Python: the same numbers
    tests = {"Chile": pd.DataFrame({"prompt": PROMPTS[:2], "chosen": RESPONSES[:2],
                                    "rejected": RESPONSES[2:]})}
    agree = browser.agreement(dest, {"global": models["global"],
                                     "country:Chile": models["Chile"],
                                     "conditioned:Chile": conditioned.for_country("Chile")},
                              tests)
    fp32 = agree[agree["encoder"] == "fp32"]
    assert (fp32["max_abs_diff"] < 1e-4).all() and (fp32["same_preference"] == 2).all()
    assert set(agree["model"]) == {"global", "country:Chile", "conditioned:Chile"}
    # a second bundle replaces the first, also from a fresh encoder whose embeddings and
    # export are cached (it never loads its model unless asked to tokenise)
    fresh = Encoder(encoder.name_or_path, max_length=64, progress=False,
                    cache_root=encoder.cache_root)
    again = EmbeddingRM(fresh, models["global"].head)
    browser.write_bundle(dest, again, {}, rounds=rounds[:1], npm_cache=cache)
    ref = json.loads((dest / "reference.json").read_text())
    assert ref["rounds"][0]["ids"] == first["ids"] and fresh.n_embedded == 0
    browser.write_bundle(dest, models["global"], {"Chile": models["Chile"]}, npm_cache=cache)
    assert not (dest / "reference.json").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="scpo did not make it"):
        browser.write_bundle(tmp_path / "mine", models["global"], {}, npm_cache=cache)
    # a folder of the user's is never deleted: not one holding a manifest.json of its own,
    # nor one beside the bundle (the swap used to clear <dest>.part)
    (tmp_path / "mine" / "manifest.json").write_text('{"name": "my web app"}')
    with pytest.raises(FileExistsError, match="scpo did not make it"):
        browser.write_bundle(tmp_path / "mine", models["global"], {}, npm_cache=cache)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "x"
    (tmp_path / "web.part").mkdir()
    (tmp_path / "web.part" / "thesis.tex").write_text("mine")
    browser.write_bundle(tmp_path / "web", models["global"], {}, npm_cache=cache)
    assert (tmp_path / "web.part" / "thesis.tex").read_text() == "mine"


def test_models_the_browser_cannot_run_are_refused(models, tiny_bert, tmp_path):
    from scpo.models.hf import HFRewardModel

    hf = HFRewardModel.from_pretrained(str(tiny_bert), max_length=64)
    with pytest.raises(ValueError, match="only the embedding tier"):
        browser.write_bundle(tmp_path / "a", hf, {})
    other = Encoder(str(tiny_bert), max_length=32, progress=False)  # another max_length
    foreign = EmbeddingRM.new(other, "linear", standardize_from=np.ones((2, other.dim))
                              + np.eye(2, other.dim), seed=0)
    with pytest.raises(ValueError, match="not a head on the global RM's encoder"):
        browser.write_bundle(tmp_path / "b", models["global"], {"Chile": foreign})


def test_disagreements_are_the_rounds_where_the_country_prefers_another_answer():
    rounds = [{"rewards": {"global": [0.1, 0.3], "country:Chile": [0.2, 0.1]}},  # b, then a
              {"rewards": {"global": [0.5, 0.2, 0.4], "country:Chile": [0.9, -1.0, 0.8]}},
              {"rewards": {"global": [0.0, 0.7, 0.7], "country:Chile": [0.0, 0.2, 0.6]}},
              {"rewards": {"global": [0.2, 0.2], "country:Chile": [0.3, 0.3]}}]  # ties: first
    assert browser.disagreements(rounds, "Chile") == [0, 2]
    assert [browser.preferred(r["rewards"]["country:Chile"]) for r in rounds] == [0, 0, 2, 0]
    with pytest.raises(KeyError, match=r"no rewards of 'country:Peru' in round\(s\) \[0, 1"):
        browser.disagreements(rounds, "Peru")


def test_reference_rounds_pair_texts_of_one_prompt_each_once():
    texts = pd.DataFrame({"prompt": ["p"] * 5 + ["q"] * 4,
                          "response": [f"p{i}" for i in range(5)] + [f"q{i}" for i in range(4)]})
    rounds = browser.reference_rounds(texts, n_texts=6, seed=0)
    assert len(rounds) == 3
    seen = [(r["prompt"], a) for r in rounds for a in r["answers"]]
    assert len(set(seen)) == 6 and all(a.startswith(p) for p, a in seen)
    assert rounds == browser.reference_rounds(texts, n_texts=6, seed=0)  # seeded
    extra = pd.DataFrame({"prompt": ["r"] * 4, "response": [f"r{i}" for i in range(4)]})
    more = browser.reference_rounds(texts, n_texts=20, seed=0, extra=extra)
    assert len(more) == 4 + 2  # every pair of the texts, then the extra ones
    assert [r["prompt"] for r in more[-2:]] == ["r", "r"]


def test_pool_examples_show_where_a_country_and_the_consensus_disagree():
    rows = []
    for prompt, utilities in (("calm", {"a": (3, 3, 3), "b": (1, 1, 1), "c": (0, 0, 0)}),
                              ("split", {"a": (3, 0, 3), "b": (1, 5, 1), "c": (0, 0, 4)})):
        for cand, (glo, chile, mexico) in utilities.items():
            for country, u in (("Chile", chile), ("Mexico", mexico)):
                rows.append({"country": country, "item": f"{country}/{prompt}",
                             "user_id": prompt, "candidate": f"{prompt}-{cand}",
                             "prompt": prompt, "response": f"answer {cand}",
                             "country_truth": u, "global_truth": glo})
    pool = pd.DataFrame(rows)
    first, second = browser.pool_examples(pool, ["Chile", "Mexico"], n=2, answers=3)
    assert first["prompt"] == "split"  # two countries disagree with the consensus there
    assert first["answers"][0] == "answer a"  # the consensus' best first
    assert set(first["answers"][1:]) == {"answer b", "answer c"}
    truth = {k: dict(zip(first["answers"], v)) for k, v in first["truth"].items()}
    assert truth == {"consensus": {"answer a": 3, "answer b": 1, "answer c": 0},
                     "Chile": {"answer a": 0, "answer b": 5, "answer c": 0},
                     "Mexico": {"answer a": 3, "answer b": 1, "answer c": 4}}
    assert second["prompt"] == "calm"
