"""What would break or drift on a first GPU run, checked on CPU (issue: the paper tier on a GPU)."""

import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
from conftest import write_tiny_bert

from scpo.models.hf import HFRewardModel, fp32_score_head
from scpo.models.modes import autocast_enabled

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest
EIGHT_PAIRS = pd.DataFrame({"prompt": ["q one", "q two"] * 4, "chosen": ["good answer"] * 8,
                            "rejected": ["bad"] * 8})


def logits_under_bf16_autocast(rm: HFRewardModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, the head's input) of two texts with CPU bf16 autocast standing in for CUDA's."""
    enc = rm.tokenizer(["a question", "another one"], ["an answer", "a longer answer here"],
                       padding=True, return_tensors="pt")
    seen = {}
    head = rm.model.classifier if hasattr(rm.model, "classifier") else None
    hook = head.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0])) if head else None
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = rm.model(**enc).logits
    if hook:
        hook.remove()
    return out, seen.get("x")


def test_the_score_head_runs_in_fp32_under_bf16_autocast(tmp_path):
    rm = HFRewardModel.from_pretrained(str(write_tiny_bert(tmp_path / "bert")))
    rm.model.eval()
    logits, x = logits_under_bf16_autocast(rm)
    assert logits.dtype == torch.float32  # bf16 (3 significant digits) without the hook
    head = rm.model.classifier
    want = x.float() @ head.weight.float().T + head.bias.float()
    assert torch.equal(logits, want)
    # a copy (each minority model) keeps it; hooking twice adds nothing
    assert logits_under_bf16_autocast(rm.copy())[0].dtype == torch.float32
    assert fp32_score_head(rm.model) == 0


def test_the_lora_head_is_hooked_too(tmp_path):
    rm = HFRewardModel.from_pretrained(str(write_tiny_bert(tmp_path / "bert")), lora_r=4)
    hooked = [n for n, m in rm.model.named_modules() if getattr(m, "_scpo_fp32_head", False)]
    assert hooked and all("classifier" in n for n in hooked)
    enc = rm.tokenizer(["a question"], ["an answer"], return_tensors="pt")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert rm.model(**enc).logits.dtype == torch.float32


def test_bf16_only_where_the_gpu_supports_it(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_enabled(cuda, True, "fixed") and not autocast_enabled(cpu, True, "fixed")
    assert not autocast_enabled(cuda, False, "fixed")
    assert not autocast_enabled(cuda, True, "released")  # the released run is fp32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # V100, T4
    with pytest.warns(UserWarning, match="no bf16 support; running in fp32"):
        assert not autocast_enabled(cuda, True, "fixed")


RSS_PROBE = """
import sys, torch
from scpo.models.hf_train import return_large_blocks_to_os
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
big = torch.ones(24 << 18); del big  # a freed 24 MB block raises glibc's threshold to 24 MB
if sys.argv[1] == "fixed":
    assert return_large_blocks_to_os()
before = rss()
x = torch.ones(8 << 18); del x  # 8 MB, touched, freed
print(rss() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_cpu_tensors_go_back_to_the_os():
    """An 8 MB tensor freed after a 24 MB one stays in the heap (RSS up ~8 MB) unless the
    threshold is fixed, when it is unmapped (RSS back where it was)."""
    grown = {}
    for how in ("default", "fixed"):
        out = subprocess.run([sys.executable, "-c", RSS_PROBE, how], check=True,
                             capture_output=True, text=True).stdout
        grown[how] = float(out.strip().splitlines()[-1])
    assert grown["default"] > 6 and grown["fixed"] < 1, grown


def test_a_trained_model_is_freed_when_dropped_without_a_gc(tmp_path, monkeypatch):
    """Under autocast (bf16 on CPU stands in for a GPU's) accelerate hangs bound methods of
    the model on the model, and the Trainer keeps the optimizer: without release_trainer a
    dropped minority model lived on until a full garbage collection."""
    import gc
    import weakref

    import numpy as np

    from scpo.config import MethodConfig, TrainConfig
    from scpo.models import hf_train

    monkeypatch.setattr(hf_train, "autocast_enabled", lambda *a: True)
    base = HFRewardModel.from_pretrained(str(write_tiny_bert(tmp_path / "bert")), max_length=32)
    gc.collect()
    gc.disable()
    try:
        rm = base.copy()
        rm.fit(EIGHT_PAIRS, np.ones(8), TrainConfig(lr=1e-3, max_steps=2, batch_size=4),
               MethodConfig(), seed=0)
        assert "forward" not in vars(rm.model)  # the class's forward again
        refs = [weakref.ref(rm.model), *(weakref.ref(p) for p in rm.model.parameters())]
        del rm
        assert sum(r() is not None for r in refs) == 0
    finally:
        gc.enable()


def test_lora_copies_share_the_frozen_base_and_train_apart(tmp_path):
    base = HFRewardModel.from_pretrained(str(write_tiny_bert(tmp_path / "bert")), lora_r=4)
    params = dict(base.model.named_parameters())
    copies = [base.copy() for _ in range(3)]
    for c in copies:
        for name, p in c.model.named_parameters():
            assert (p is params[name]) == (not p.requires_grad), name
    assert any(not p.requires_grad for p in params.values())
    enc = base.tokenizer(["a question"], ["an answer"], return_tensors="pt")
    with torch.no_grad():
        before = base.model.eval()(**enc).logits
        for p in copies[0].model.parameters():
            if p.requires_grad:
                p.add_(0.1)
        assert torch.equal(base.model(**enc).logits, before)  # the global RM is untouched
        assert not torch.equal(copies[0].model.eval()(**enc).logits, before)


def test_lora_merges_on_fp32_not_into_the_bf16_base():
    """A ~1e-4 update on ~0.02 weights: merged into bf16 a part of it is rounded away (~6 %
    here, more for smaller updates); merged on an fp32 copy it is kept to fp32 precision."""
    import copy

    from transformers import LlamaConfig, LlamaForSequenceClassification

    from scpo.models.export import merged_fp32
    from scpo.models.hf import add_lora

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=1)
    model = add_lora(LlamaForSequenceClassification(cfg).to(torch.bfloat16), 4)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    with torch.no_grad():
        layer.lora_A["default"].weight.normal_(0, 0.1)
        layer.lora_B["default"].weight.normal_(0, 1e-3)
    w = layer.base_layer.weight.double()
    delta = layer.scaling["default"] * (layer.lora_B["default"].weight.detach().double()
                                        @ layer.lora_A["default"].weight.detach().double())
    assert 5e-5 < delta.abs().mean() < 5e-4 and w.abs().mean() > 0.01

    def lost(merged: torch.nn.Module) -> float:
        got = merged.model.layers[0].self_attn.q_proj.weight.double()
        return float((got.detach() - w - delta).abs().mean() / delta.abs().mean())

    assert lost(copy.deepcopy(model).merge_and_unload()) > 0.03  # merged in bf16
    fp32 = merged_fp32(model)
    assert fp32.dtype == torch.float32 and lost(fp32) < 3e-4
    assert layer.base_layer.weight.dtype == torch.bfloat16  # the live model untouched
    # an fp32 base too: merging writes into the copy, not into the live base weights
    live = add_lora(LlamaForSequenceClassification(cfg), 4)
    with torch.no_grad():
        for name, p in live.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
        ids = torch.tensor([[1, 2, 3, 4]])
        before = live(input_ids=ids).logits.clone()
        merged = merged_fp32(live)
        torch.testing.assert_close(merged(input_ids=ids).logits, before)
        assert torch.equal(live(input_ids=ids).logits, before)


def test_lora_saved_as_adapters_loads_back_bit_for_bit(tmp_path):
    import numpy as np

    from scpo.config import MethodConfig, TrainConfig

    base = HFRewardModel.from_pretrained(str(write_tiny_bert(tmp_path / "bert")), lora_r=4,
                                         max_length=32)
    rm = base.copy()
    rm.fit(EIGHT_PAIRS, np.ones(8), TrainConfig(lr=1e-2, max_steps=2, batch_size=4),
           MethodConfig(), seed=0)
    rm.save(tmp_path / "saved")
    files = {p.name for p in (tmp_path / "saved").iterdir()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    back = HFRewardModel.load(tmp_path / "saved")
    texts = (["q one", "q two", "q three"], ["good answer", "bad", "fine"])
    assert not np.array_equal(rm.score(*texts), base.score(*texts))  # it trained
    np.testing.assert_array_equal(back.score(*texts), rm.score(*texts))
    assert back.fingerprint() == rm.fingerprint()
    # a broken or incomplete adapter file is an error naming it, never the untrained global RM
    from safetensors.torch import load_file, save_file

    file = tmp_path / "saved" / "adapter_model.safetensors"
    state = load_file(file)
    save_file(dict(list(state.items())[1:]), file)
    with pytest.raises(ValueError, match=r"adapter_model.safetensors: 0 weights .* 1 it needs"):
        HFRewardModel.load(tmp_path / "saved")
    file.write_bytes(file.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        HFRewardModel.load(tmp_path / "saved")


def test_an_offloaded_global_rm_waits_on_the_host_and_copies_go_to_the_gpu(tmp_path, monkeypatch):
    """Full fine-tuning: after scoring, the global RM moves to host memory and each copy is
    sent to the training device ("meta" stands in for a GPU). LoRA: the base stays put."""
    path = str(write_tiny_bert(tmp_path / "bert"))
    moved: list[str] = []
    for lora_r in (0, 4):
        rm = HFRewardModel.from_pretrained(path, lora_r=lora_r)
        rm.device = torch.device("meta")
        def recording_to(*a, _lora_r=lora_r, _to=rm.model.to, **k):
            moved.append((_lora_r, a))
            return _to(*a, **k)

        monkeypatch.setattr(rm.model, "to", recording_to)
        rm.offload()
        monkeypatch.undo()
        if lora_r == 0:
            c = rm.copy()
            assert {p.device.type for p in c.model.parameters()} == {"meta"}
            assert {p.device.type for p in rm.model.parameters()} == {"cpu"}
    assert moved == [(0, ("cpu",))]


COMMIT_PROBE = """
import sys
from scpo.models.hf import HFRewardModel
for lora_r in (0, 2):
    print(HFRewardModel.from_pretrained("org/tiny-rm", lora_r=lora_r).commit)
print(HFRewardModel.from_pretrained(sys.argv[1]).commit)
"""


def test_the_hub_commit_the_weights_came_from_is_recorded(tmp_path):
    """A revision such as "main" moves; the commit it resolved to is what run.json records,
    so a rerun can pin it. A hub cache is laid out by hand (refs/main -> snapshots/<sha>/)
    and read offline; a plain directory has no commit."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny-rm"
    write_tiny_bert(repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    plain = write_tiny_bert(tmp_path / "plain")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", COMMIT_PROBE, str(plain)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == [sha, sha, "None"]


def write_tiny_deberta(path):
    """A 2-layer DeBERTa-v2 whose tokenizer.json normalises as DeBERTa-v3's files do: NFKC
    folding (here the tokenizers NFKC step stands in for sentencepiece's nmt_nfkc map)."""
    from tokenizers import Regex, normalizers
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, DebertaV2Tokenizer

    pieces = ["▁", "a", "b", "...", "fi", "…", "ﬁ"]
    vocab = [(t, 0.0) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")]
    tok = DebertaV2Tokenizer(vocab=vocab + [(p, -float(i)) for i, p in enumerate(pieces, 1)])
    tok.backend_tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Strip(), normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.save_pretrained(path)
    cfg = DebertaV2Config(vocab_size=len(vocab) + len(pieces), hidden_size=32,
                          num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          num_labels=1, max_position_embeddings=64)
    torch.manual_seed(0)
    DebertaV2ForSequenceClassification(cfg).save_pretrained(path)
    return path


def test_the_tokenizer_normalises_as_the_models_tokenizer_json(tmp_path):
    """transformers 5 rebuilds DeBERTa-v2/v3's normaliser (NFC only); the model's file folds
    ellipsis and ligature to '...' and 'fi', as the v4 tokenizer the paper used did."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    path = write_tiny_deberta(tmp_path / "deberta")
    text = "a… ﬁ"
    from_file = Tokenizer.from_file(str(path / "tokenizer.json")).encode(
        text, add_special_tokens=False).tokens
    assert from_file == ["▁", "a", "...", "▁", "fi"]
    rebuilt = AutoTokenizer.from_pretrained(path).tokenize(text)
    assert rebuilt != from_file  # the drift this guards against is still there upstream
    rm = HFRewardModel.from_pretrained(str(path), bf16=False)
    assert rm.tokenizer.tokenize(text) == from_file
    # the normaliser is part of the fingerprint: restored and rebuilt tokenizers differ
    plain = HFRewardModel.from_model(rm.model, AutoTokenizer.from_pretrained(path),
                                     name=str(path), bf16=False)
    assert plain.fingerprint() != rm.fingerprint()
    # saved and loaded back (scpo's own save), the normaliser survives
    rm.save(tmp_path / "saved")
    assert HFRewardModel.load(tmp_path / "saved").tokenizer.tokenize(text) == from_file


def test_a_hub_models_tokenizer_json_is_read_from_the_hub_cache(tmp_path):
    """By hub id (read offline from the cache), the file's normaliser is restored too."""
    sha = "89abcdef0123456789abcdef0123456789abcdef"
    repo = tmp_path / "hub" / "models--org--tiny-deberta"
    write_tiny_deberta(repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    probe = ("from scpo.models.hf import HFRewardModel\n"
             "print(HFRewardModel.from_pretrained('org/tiny-deberta', bf16=False)"
             ".tokenizer.tokenize('a… ﬁ'))")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == "['▁', 'a', '...', '▁', 'fi']"


def test_the_exported_cards_usage_code_tokenizes_as_in_training(tmp_path):
    """The card's own code, run as a user would, restores the normaliser the model was
    trained with; a model whose tokenizer loads as saved gets no such line."""
    import re

    rm = HFRewardModel.from_pretrained(str(write_tiny_deberta(tmp_path / "deberta")), bf16=False)
    card = {"tau": 0.7, "beta": 1.1, "pairs_kept": 8, "seeds": [0], "test_accuracy": 0.5}
    out = rm.export(tmp_path / "exported", card)
    code = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    code = code.replace(re.search(r'MODEL = "(.*?)"', code).group(1), str(out))
    scope: dict = {}
    exec(code, scope)  # the card's usage code, as written (our own generated text)
    assert scope["tok"].tokenize("a… ﬁ") == ["▁", "a", "...", "▁", "fi"]
    bert = HFRewardModel.from_pretrained(str(write_tiny_bert(tmp_path / "bert")), bf16=False)
    plain_card = (bert.export(tmp_path / "b", card) / "README.md").read_text()
    assert "Tokenizer.from_file" not in plain_card


def test_pickled_weights_only_are_named_as_the_reason(tmp_path):
    """The paper's DeBERTa RM has safetensors only on a hub conversion revision: a model with
    pytorch_model.bin alone (directory or hub cache) gets an error saying so and what to pass."""
    from safetensors.torch import load_file

    sha = "fedcba9876543210fedcba9876543210fedcba98"
    repo = tmp_path / "hub" / "models--org--pickled"
    for path in (tmp_path / "dir", repo / "snapshots" / sha):
        write_tiny_bert(path)
        torch.save(load_file(path / "model.safetensors"), path / "pytorch_model.bin")
        (path / "model.safetensors").unlink()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    with pytest.raises(OSError, match=r"only as pytorch_model.bin.*model.revision=refs/pr/N"):
        HFRewardModel.from_pretrained(str(tmp_path / "dir"))
    probe = ("from scpo.models.hf import HFRewardModel\n"
             "try:\n    HFRewardModel.from_pretrained('org/pickled')\n"
             "except OSError as e:\n    print(e)")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert "'org/pickled' (revision main) has its weights only as pytorch_model.bin" in out
