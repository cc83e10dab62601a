"""An exported minority RM as a reward function for TRL's online trainers (GRPO, RLOO, ...).

Given a model *path*, TRL's trainers score ``prompt + completion`` as one string without special
tokens (or through the RM tokenizer's chat template, for conversational data). A text-pair
model was trained on ``(prompt, response)`` with its separator and segment ids, so that input
is not what it learned to rank. ``trl_reward(path)`` instead returns a reward function (TRL's
custom-function signature) that feeds each (prompt, completion) through the model's ``score``:
the very encoding the model was trained and evaluated with.

    from trl import GRPOConfig, GRPOTrainer
    from scpo.companion.reward_fn import trl_reward

    trainer = GRPOTrainer(model=policy, reward_funcs=[trl_reward("models/Chile/scpo_fw/seed0")],
                          args=GRPOConfig(...), train_dataset=prompts)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scpo import models
from scpo.models import RewardModel
from scpo.prism import joined_prompt

Message = dict[str, str]


def completion_text(completion: str | list[Message]) -> str:
    """A completion as the response text: a plain string, or the content of a conversational
    completion's messages (TRL passes ``[{"role": "assistant", "content": ...}]``)."""
    if isinstance(completion, str):
        return completion
    return "".join(m["content"] for m in completion)


def prompt_text(prompt: str | list[Message], chat_template: bool) -> str:
    """A prompt as the model read prompts in training.

    Plain strings pass through. A conversation becomes, for a chat-template model, the JSON chat
    list that ``scpo.models.modes.prompt_messages`` reads back into messages; for a text-pair model,
    its last user turn, preceded by earlier turns as ``User: ... / Assistant: ...`` text (the
    layout of PRISM's ``prompt_context = "history"``).
    """
    if isinstance(prompt, str):
        return prompt
    if not prompt or prompt[-1].get("role") != "user":
        raise ValueError("trl_reward: a conversational prompt must end with a user turn; got "
                         f"{[m.get('role') for m in prompt]}")
    if chat_template:
        return json.dumps([{"role": m["role"], "content": m["content"]} for m in prompt])
    earlier = [{"role": m["role"], "content": m["content"]} for m in prompt[:-1]]
    return joined_prompt(json.dumps(earlier), prompt[-1]["content"])


class TRLReward:
    """``reward(prompts, completions, **kwargs) -> list[float]``: the RM's r(x, y) per
    completion, scored as ``scpo`` trained it (eval mode, no gradients, length-sorted batches)."""

    def __init__(self, rm: RewardModel, name: str) -> None:
        self.rm = rm
        self.__name__ = name  # TRL logs rewards/<name>/mean

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"trl_reward: {len(prompts)} prompts for {len(completions)} "
                             "completions; need one prompt per completion")
        p = [prompt_text(x, self.rm.reads_chat) for x in prompts]
        r = [completion_text(c) for c in completions]
        return [float(v) for v in self.rm.score(p, r)]


def trl_reward(path: str | Path, name: str | None = None) -> TRLReward:
    """The reward function of a model written by ``scpo run --export`` (or an hf-tier save),
    read whole (``scpo.models.load_checkpoint``).

    ``name`` is what TRL logs the rewards under (default ``scpo_<directory name>``).
    """
    path = Path(path)
    return TRLReward(models.load_checkpoint(path), name or f"scpo_{path.name}")
