"""What would break or drift on a first GPU run, checked on CPU (issue: the paper tier on a GPU)."""

import pytest
import torch
from conftest import write_tiny_bert

from scpo.models.hf import HFRewardModel, autocast_enabled, fp32_score_head

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest


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
