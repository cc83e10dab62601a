"""The partial tier: top k layers trained on cached bottom hidden states."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from scpo.config import MethodConfig, TrainConfig, load_preset
from scpo.models.hf import HFRewardModel
from scpo.models.partial import PartialRM, PassThrough

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["How should I greet my neighbours?", "Is tipping expected?", "What is a good gift?"]
RESPONSES = ["Say hello and smile, then ask how they are doing today.", "Yes.",
             "Something small from your home region."]


def pairs_table() -> pd.DataFrame:
    return pd.DataFrame({"prompt": PROMPTS * 2, "chosen": RESPONSES * 2,
                         "rejected": RESPONSES[1:] + RESPONSES[:1] + ["No.", "Nothing.", "Hm."]})


@pytest.fixture
def rm(tiny_bert, tmp_path):
    return PartialRM.from_pretrained(str(tiny_bert), train_layers=1, cache_root=tmp_path,
                                     max_length=64)


def test_split_model_scores_what_the_whole_model_scores(rm):
    whole = HFRewardModel.score(rm, PROMPTS, RESPONSES)  # the full forward pass
    split = rm.score(PROMPTS, RESPONSES)
    np.testing.assert_allclose(split, whole, rtol=1e-5, atol=1e-6)
    assert len(set(np.round(whole, 6))) == 3  # three different texts, three different scores
    assert rm.check_split() < 1e-5


def test_check_split_catches_a_model_that_does_not_split(rm, monkeypatch):
    # hidden states that come back shifted by one token: not what the whole model computes
    monkeypatch.setattr(PassThrough, "forward",
                        lambda self, *a, inputs_embeds=None, **k: inputs_embeds.roll(1, 1))
    with pytest.raises(ValueError, match="backend = 'hf'"):
        rm.check_split()


def test_each_text_runs_through_the_bottom_once(rm):
    rm.score(PROMPTS, RESPONSES)
    assert rm.n_computed == 3
    copy = rm.copy()
    copy.score(PROMPTS[::-1], RESPONSES[::-1])
    rm.score(PROMPTS, RESPONSES)
    assert rm.n_computed + copy.n_computed - 3 == 3  # the copy shares the cache: no new texts
    assert len(rm.hidden_cache) == 3
    rows = rm.hidden(PROMPTS, RESPONSES)
    assert [r.shape[1] for r in rows] == [32] * 3  # the tiny BERT's width, ragged lengths
    assert rows[1].shape[0] < rows[0].shape[0]


def test_fit_trains_the_top_layer_alone_and_is_seeded(rm):
    before = {k: v.clone() for k, v in rm.model.state_dict().items()}
    original = rm.score(PROMPTS, RESPONSES)
    train = TrainConfig(lr=1e-2, max_steps=5, batch_size=2)
    a, b, c = rm.copy(), rm.copy(), rm.copy()
    hist = a.fit(pairs_table(), np.ones(6), train, MethodConfig(), seed=0)
    b.fit(pairs_table(), np.ones(6), train, MethodConfig(), seed=0)
    c.fit(pairs_table(), np.ones(6), train, MethodConfig(), seed=1)
    after = a.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("bert.encoder.layer.1.", "bert.pooler.", "classifier."))
                           for k in changed)
    assert any(k.startswith("bert.encoder.layer.1.") for k in changed)
    assert [h["step"] for h in hist][-1] == 5
    np.testing.assert_array_equal(a.score(PROMPTS, RESPONSES), b.score(PROMPTS, RESPONSES))
    assert not np.array_equal(a.score(PROMPTS, RESPONSES), c.score(PROMPTS, RESPONSES))
    np.testing.assert_array_equal(rm.score(PROMPTS, RESPONSES), original)  # copies trained
    assert a.fingerprint() != rm.fingerprint()


def test_zero_weights_change_no_weight(rm):
    before = rm.score(PROMPTS, RESPONSES)
    rm.fit(pairs_table(), np.zeros(6), TrainConfig(lr=1e-2, max_steps=3, batch_size=2),
           MethodConfig(), seed=0)
    np.testing.assert_array_equal(rm.score(PROMPTS, RESPONSES), before)


def test_export_reloads_without_scpo_with_the_same_scores(rm, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm.fit(pairs_table(), np.ones(6), TrainConfig(lr=1e-2, max_steps=4, batch_size=2),
           MethodConfig(), seed=0)
    ours = rm.score(PROMPTS, RESPONSES)
    card = {"tau": 0.7, "beta": 1.1, "pairs_kept": 6, "seeds": [0], "test_accuracy": {}}
    out = rm.export(tmp_path / "Chile" / "scpo_fw" / "seed0", card)
    assert "| train_layers | 1 |" in (out / "README.md").read_text()
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.inference_mode():
        plain = [model(**tok(p, r, truncation=True, max_length=64, return_tensors="pt"))
                 .logits[0, 0].item() for p, r in zip(PROMPTS, RESPONSES)]
    np.testing.assert_allclose(plain, ours, rtol=1e-5, atol=1e-6)
    back = PartialRM.load(out, cache_root=tmp_path)
    assert back.train_layers == 1
    np.testing.assert_array_equal(back.score(PROMPTS, RESPONSES), ours)  # same cached states


def test_errors_name_the_fix(tiny_bert, tmp_path):
    with pytest.raises(ValueError, match="between 1 and the model's 2 layers"):
        PartialRM.from_pretrained(str(tiny_bert), train_layers=3)
    with pytest.raises(ValueError, match="mode 'fixed' without LoRA"):
        PartialRM.from_pretrained(str(tiny_bert), mode="released")
    hf = HFRewardModel.from_pretrained(str(tiny_bert))
    hf.save(tmp_path / "hf")
    with pytest.raises(ValueError, match="HFRewardModel.load"):
        PartialRM.load(tmp_path / "hf")
    from transformers import GPT2Config, GPT2ForSequenceClassification

    gpt = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2,
                                                   num_labels=1, pad_token_id=0))
    with pytest.raises(ValueError, match="GPT2ForSequenceClassification is not"):
        PartialRM.from_model(gpt, hf.tokenizer, train_layers=1)


def test_a_run_on_the_partial_tier_caches_its_global_rm(tiny_bert, tmp_path, monkeypatch):
    from scpo import experiment
    from scpo.models import partial

    monkeypatch.setenv("SCPO_CACHE_DIR", str(tmp_path / "cache"))
    cfg = load_preset("tiny")
    cfg.update({"model": {"backend": "partial", "encoder": str(tiny_bert), "train_layers": 1,
                          "max_length": 64},
                "train": {"lr": 1e-3, "max_steps": 4, "global_steps": 6, "global_lr": 1e-3,
                          "global_batch_size": 8},
                "run": {"countries": ["Chile"], "variants": ["global", "baseline", "scpo_fw"]}})
    res, prep, _ = experiment.run(cfg, progress=False)
    assert isinstance(prep.global_rm, PartialRM) and prep.global_rm.train_layers == 1
    assert set(res["variant"]) == {"global", "baseline", "scpo_fw"}
    calls = []
    monkeypatch.setattr(partial, "train_global_partial", lambda *a, **k: calls.append(1))
    again, prep2, _ = experiment.run(cfg, progress=False)
    assert not calls and prep2.global_rm.fingerprint() == prep.global_rm.fingerprint()
    pd.testing.assert_frame_equal(res, again)


def test_bottom_layers_are_frozen_and_shared_by_copies(rm):
    trainable = {k for k, p in rm.model.named_parameters() if p.requires_grad}
    assert trainable and all(k.startswith(("bert.encoder.layer.1.", "bert.pooler.",
                                           "classifier.")) for k in trainable)
    copy = rm.copy()
    bottom = rm.model.bert.encoder.layer[0].attention.self.query.weight
    assert copy.model.bert.encoder.layer[0].attention.self.query.weight is bottom
    assert copy.model.classifier.weight is not rm.model.classifier.weight


def test_the_cache_namespace_follows_the_bottom_weights_and_depth(rm, tiny_bert, tmp_path):
    same = PartialRM.from_pretrained(str(tiny_bert), train_layers=1, cache_root=tmp_path,
                                     max_length=64)
    assert same.bottom_fingerprint() == rm.bottom_fingerprint()
    same.model.classifier.weight.data += 1  # a trained top does not change the bottom states
    assert same.bottom_fingerprint() == rm.bottom_fingerprint()
    same.model.bert.encoder.layer[0].output.dense.bias.data += 1e-3
    assert same.bottom_fingerprint() != rm.bottom_fingerprint()
    deeper = PartialRM.from_pretrained(str(tiny_bert), train_layers=2, cache_root=tmp_path,
                                       max_length=64)
    assert deeper.bottom_fingerprint() != rm.bottom_fingerprint()
    shorter = PartialRM.from_pretrained(str(tiny_bert), train_layers=1, cache_root=tmp_path,
                                        max_length=32)
    assert shorter.bottom_fingerprint() != rm.bottom_fingerprint()


def test_scpo_run_backend_partial_from_the_command_line(tiny_bert, tmp_path, monkeypatch):
    from scpo import cli

    monkeypatch.setenv("SCPO_CACHE_DIR", str(tmp_path / "cache"))
    sets = {"model.encoder": tiny_bert, "model.train_layers": 1, "model.max_length": 64,
            "train.lr": 1e-3, "train.max_steps": 4, "train.global_steps": 6,
            "train.global_lr": 1e-3, "train.global_batch_size": 8}
    argv = ["run", "--preset", "tiny", "--backend", "partial", "--countries", "Chile",
            "--variants", "global", "scpo_fw", "--out", str(tmp_path / "out")]
    for k, v in sets.items():
        argv += ["--set", f"{k}={v}"]
    cli.main(argv)
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["config"]["model"]["backend"] == "partial"
    res = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(res["variant"]) == {"global", "scpo_fw"}
    assert (tmp_path / "cache" / "global_partial").is_dir()
    assert (tmp_path / "cache" / "hidden").is_dir()


def test_the_global_rms_long_fit_shows_its_steps(tiny_bert, tmp_path, capsys, monkeypatch):
    """Issue 27: ten silent minutes; the partial tier's global RM now draws a bar of steps."""
    from scpo.models.partial import train_global_partial

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    rm = train_global_partial(str(tiny_bert), pairs_table(),
                              TrainConfig(global_lr=1e-3, global_steps=3, global_batch_size=2),
                              MethodConfig(), seed=0, train_layers=1, max_length=64,
                              cache_root=tmp_path)
    err = capsys.readouterr().err
    assert "training layers 2-2 (2 pairs a step)" in err and "3/3" in err
    assert not rm.progress  # a minority model copied from it trains quietly


@pytest.fixture
def bf16_gpu(monkeypatch):
    """A bf16 GPU, emulated on the CPU: autocast on wherever model.bf16 and the mode allow it
    (``autocast_enabled`` turns it on only on CUDA), in the split and in the whole model."""
    from scpo.models import hf, partial
    from scpo.models.modes import get_mode

    def on(device, bf16, mode):
        return bool(bf16) and get_mode(mode).autocast

    for module in (hf, partial):
        monkeypatch.setattr(module, "autocast_enabled", on)


def test_under_bf16_autocast_split_whole_and_export_score_alike(bf16_gpu, tmp_path):
    """MiniLM (6 layers, 384 wide) split at its top 2 layers under bf16 autocast: the check
    passes, the split scores what the whole model scores, and so does the exported checkpoint
    loaded back as a whole model (as ``trl_reward`` loads it)."""
    from scpo.models.embedding import minilm_path

    def load(bf16):
        return PartialRM.from_pretrained(str(minilm_path()), train_layers=2, cache_root=tmp_path,
                                         max_length=64, dropout=False, bf16=bf16)

    rm, fp32 = load(True), load(False)
    assert rm.bottom_fingerprint() != fp32.bottom_fingerprint()  # bf16 states cached apart
    assert rm.check_split() <= 1e-4
    whole, split = HFRewardModel.score(rm, PROMPTS, RESPONSES), rm.score(PROMPTS, RESPONSES)
    np.testing.assert_allclose(split, whole, rtol=1e-6, atol=1e-7)
    # bf16 moved the scores: the check above compared like with like, not fp32 with fp32
    assert np.abs(whole - fp32.score(PROMPTS, RESPONSES)).max() > 1e-4
    rm.fit(pairs_table(), np.ones(6), TrainConfig(lr=1e-3, max_steps=2, batch_size=2),
           MethodConfig(), seed=0)
    ours = rm.score(PROMPTS, RESPONSES)
    card = {"tau": 0.7, "beta": 1.1, "pairs_kept": 6, "seeds": [0], "test_accuracy": {}}
    out = rm.export(tmp_path / "export", card)
    # to the last float32 bit or so: a reloaded tensor may take another CPU kernel path
    for back in (HFRewardModel.load(out), PartialRM.load(out, cache_root=tmp_path)):
        np.testing.assert_allclose(back.score(PROMPTS, RESPONSES), ours, rtol=1e-6, atol=1e-7)


def test_with_dropout_on_only_the_trained_top_layers_drop_out(tmp_path):
    """model.dropout = true on the partial tier: the bottom layers' states are computed once, in
    eval mode (no dropout), and only the trained top layers drop out while training."""
    from conftest import write_tiny_bert

    path = write_tiny_bert(tmp_path / "bert", dropout=0.5)
    rm = PartialRM.from_pretrained(str(path), train_layers=1, cache_root=tmp_path,
                                   max_length=64, dropout=True)
    rm.model.train()
    first, again = rm._run_bottom(PROMPTS, RESPONSES), rm._run_bottom(PROMPTS, RESPONSES)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert rm.model.training  # restored
    rows = [torch.from_numpy(h) for h in first]
    with torch.no_grad():
        assert not torch.equal(rm._top(rows), rm._top(rows))  # the top drops out in training
        rm.model.eval()
        torch.testing.assert_close(rm._top(rows), rm._top(rows), rtol=0, atol=0)
