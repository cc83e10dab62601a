"""How the Hugging Face tier turns (prompt, response) into inputs, scores and trains: two modes.

``fixed`` (the default) encodes (prompt, response) the same way for training and scoring and
scores in eval mode without gradients. ``released`` reproduces what the authors' released code
does (spec §8), so its effect on the numbers can be measured. Each difference is one field of
``Mode``, consulted by one small function:

========================  ==========================  ===================================  =====
what                      fixed                       released                             spec
========================  ==========================  ===================================  =====
training text             text pair (or chat          prompt + " [SEP] " + response,       §8.3
                          template), truncated        truncated and padded to max_length   §8.5
scoring text              same as training            text pair, NOT truncated             §8.3
dropout at scoring        off (eval, inference_mode)  on (train mode, gradients on)        §8.1
seed                      the one passed              always 42                            §8.2
chosen / rejected         one concatenated forward    two forward passes                   §8.5
batching                  length-grouped, dynamic pad random order, fixed 512 padding      §8.5
bf16 autocast on CUDA     allowed                     off (the released run is fp32)       §7
========================  ==========================  ===================================  =====
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

SEP_TEXT = " [SEP] "  # the released code's training separator, a literal string (spec §8.3)


RELEASED_SEED = 42  # the released trainer's seed, whatever seed the run names (spec §8.2)


@dataclass(frozen=True)
class Mode:
    """How inputs are built, scored and trained; see the table in the module docstring."""

    name: str
    sep_text: bool  # train on prompt + SEP_TEXT + response instead of a text pair
    pad_to_max: bool  # pad every training input to max_length
    truncate_scoring: bool  # scoring inputs truncated to max_length like training inputs
    dropout_at_scoring: bool  # score in train mode with gradients enabled
    seed: int | None  # the seed actually used; None = the one passed
    one_forward: bool  # chosen and rejected in one concatenated forward pass
    length_grouping: bool  # length-grouped batches (pays off only with dynamic padding)
    autocast: bool  # bf16 autocast allowed on CUDA


MODES = {
    "fixed": Mode("fixed", sep_text=False, pad_to_max=False, truncate_scoring=True,
                  dropout_at_scoring=False, seed=None, one_forward=True, length_grouping=True,
                  autocast=True),
    "released": Mode("released", sep_text=True, pad_to_max=True, truncate_scoring=False,
                     dropout_at_scoring=True, seed=RELEASED_SEED, one_forward=False,
                     length_grouping=False, autocast=False),
}


def get_mode(name: str | Mode) -> Mode:
    if isinstance(name, Mode):
        return name
    if name not in MODES:
        raise ValueError(f"model.mode must be one of {sorted(MODES)}, got {name!r}")
    return MODES[name]


def effective_seed(mode: str | Mode, seed: int) -> int:
    """The seed training really uses: the one passed, or 42 in released mode (spec §8.2)."""
    fixed = get_mode(mode).seed
    return int(seed) if fixed is None else fixed


def prompt_messages(prompt: str) -> list[dict[str, str]]:
    """The conversation a prompt stands for: a JSON chat list (PRISM's ``messages`` column, used
    as the prompt with ``data.prompt_context = "history"``) is read as one; any other text is
    a single user turn."""
    if prompt.startswith('[{"role"'):
        try:
            msgs = json.loads(prompt)
        except json.JSONDecodeError:
            msgs = None
        if (isinstance(msgs, list) and msgs
                and all(isinstance(m, dict) and set(m) == {"role", "content"} for m in msgs)):
            return msgs
    return [{"role": "user", "content": prompt}]


def chat_text(tokenizer: Any, prompt: str, response: str) -> str:
    """The conversation (``prompt_messages``) and the response as the last assistant turn,
    through the tokenizer's chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("chat_template=True but the tokenizer has no chat template; set "
                         "model.chat_template = false or use a tokenizer that ships one.")
    messages = [*prompt_messages(prompt), {"role": "assistant", "content": response}]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def _pair_encoding(tokenizer: Any, prompt: str, response: str, max_length: int | None,
                   chat_template: bool, pad: bool = False) -> dict[str, list[int]]:
    """The fixed encoding: a text pair (or chat-template text), truncated when max_length
    (and padded to it when ``pad``)."""
    trunc = {"truncation": True, "max_length": max_length} if max_length else {}
    if pad and max_length:
        trunc["padding"] = "max_length"
    if chat_template:  # the template writes the special tokens itself
        return dict(tokenizer(chat_text(tokenizer, prompt, response), add_special_tokens=False,
                              **trunc))
    return dict(tokenizer(prompt, response, **trunc))


def encode_for_training(tokenizer: Any, prompts: list[str], responses: list[str], *,
                        mode: str | Mode, max_length: int,
                        chat_template: bool = False) -> list[dict[str, list[int]]]:
    """Token ids of each training input.

    fixed: the same encoding as scoring. released: ``prompt + " [SEP] " + response`` truncated
    and padded to ``max_length`` (512 in the released code), no chat template (spec §8.3, §8.5).
    """
    m = get_mode(mode)
    if not m.sep_text:
        return [_pair_encoding(tokenizer, p, r, max_length, chat_template, pad=m.pad_to_max)
                for p, r in zip(prompts, responses)]
    if chat_template:
        raise ValueError("released mode reproduces the released code, which feeds no chat "
                         "template (spec §8.3); set model.chat_template = false or mode 'fixed'.")
    return [dict(tokenizer(p + SEP_TEXT + r, truncation=True, max_length=max_length,
                           padding="max_length" if m.pad_to_max else False))
            for p, r in zip(prompts, responses)]


def encode_for_scoring(tokenizer: Any, prompts: list[str], responses: list[str], *,
                       mode: str | Mode, max_length: int,
                       chat_template: bool = False) -> list[dict[str, list[int]]]:
    """Token ids of each scored input: fixed = the training encoding; released = the text
    pair without truncation, unlike its training text (spec §8.3)."""
    m = get_mode(mode)
    if m.sep_text and chat_template:
        raise ValueError("released mode feeds no chat template (spec §8.3); set "
                         "model.chat_template = false or mode 'fixed'.")
    limit = max_length if m.truncate_scoring else None
    return [_pair_encoding(tokenizer, p, r, limit, chat_template)
            for p, r in zip(prompts, responses)]


@contextlib.contextmanager
def scoring_context(model: torch.nn.Module, mode: str | Mode) -> Iterator[None]:
    """eval() + inference_mode (fixed), or train mode with gradients on (released, spec §8.1).

    The model's train/eval state is restored afterwards.
    """
    m = get_mode(mode)
    was_training = model.training
    model.train(m.dropout_at_scoring)
    try:
        with contextlib.nullcontext() if m.dropout_at_scoring else torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def autocast_enabled(device: torch.device, bf16: bool, mode: str | Mode) -> bool:
    """bf16 autocast only on CUDA (CPU bf16 is slow and changes the numbers we test), and only
    on a GPU that supports it (a V100 or T4 would raise): elsewhere fp32, with a warning."""
    if not (bool(bf16) and device.type == "cuda" and get_mode(mode).autocast):
        return False
    if not torch.cuda.is_bf16_supported():
        warnings.warn("model.bf16 = true but this GPU has no bf16 support; running in fp32 "
                      "(set model.bf16 = false to silence this)", stacklevel=2)
        return False
    return True
