"""Writing an ``HFRewardModel`` as a standard Hugging Face checkpoint, and its model card.

The checkpoint loads with ``AutoModelForSequenceClassification.from_pretrained`` and no scpo;
the card records what the model was trained from and how to feed it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import scpo
from scpo.models.hf import META_FILE, full_state_dict, is_main_process

if TYPE_CHECKING:
    from scpo.models.hf import HFRewardModel

CARD_FIELDS = ("tau", "beta", "pairs_kept", "seeds", "test_accuracy")  # required in ``card``


def save_checkpoint(rm: HFRewardModel, path: Path) -> None:
    """Model (safetensors) + tokenizer + ``scpo_hf.json``; LoRA merged into a copy first.

    Every process must call it (gathering FSDP shards is a collective); rank 0 writes.
    """
    model = rm.model
    if hasattr(model, "peft_config"):
        model = copy.deepcopy(model).merge_and_unload()
    state = full_state_dict(model)
    if not is_main_process():
        return
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, state_dict=state)
    rm.tokenizer.save_pretrained(path)
    (path / META_FILE).write_text(json.dumps(rm.options(), indent=1) + "\n")


def _usage(rm: HFRewardModel, path: Path) -> str:
    """Python that scores one (prompt, response) the way the model was trained to read it."""
    if rm.chat_template:
        encode = ("messages = [{\"role\": \"user\", \"content\": prompt},\n"
                  "            {\"role\": \"assistant\", \"content\": response}]\n"
                  "text = tok.apply_chat_template(messages, tokenize=False)\n"
                  f"inputs = tok(text, add_special_tokens=False, truncation=True, "
                  f"max_length={rm.max_length}, return_tensors=\"pt\")")
    else:
        encode = (f"inputs = tok(prompt, response, truncation=True, max_length={rm.max_length}, "
                  "return_tensors=\"pt\")")
    return (
        "```python\nimport torch\n"
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
        f"tok = AutoTokenizer.from_pretrained(\"{path}\")\n"
        f"model = AutoModelForSequenceClassification.from_pretrained(\"{path}\").eval()\n"
        "prompt, response = \"How should I greet my neighbours?\", \"Say hello and smile.\"\n"
        f"{encode}\n"
        "with torch.inference_mode():\n"
        "    reward = model(**inputs).logits[0, 0].item()\n```\n")


def model_card(rm: HFRewardModel, path: Path, card: dict[str, Any]) -> str:
    """README.md text: YAML front matter, the training record as a table, usage code."""
    missing = [k for k in CARD_FIELDS if k not in card]
    if missing:
        raise ValueError(f"export: card lacks {missing}; it needs {list(CARD_FIELDS)} "
                         "(plus optional country, variant, global_model, ...)")
    record = {"global_model": rm.name, "global_revision": rm.revision or "main", **card,
              "scpo_version": scpo.__version__, "mode": rm.mode.name,
              "max_length": rm.max_length, "lora_r": rm.lora_r,
              "chat_template": rm.chat_template}
    rows = "\n".join(f"| {k} | {json.dumps(v, default=str)} |" for k, v in record.items())
    title = " ".join(str(card[k]) for k in ("country", "variant") if k in card) or "minority"
    note = ("" if rm.mode.name == "fixed" else
            "\nTrained in `released` mode: on `prompt + \" [SEP] \" + response` padded to "
            f"{rm.max_length} tokens, while the usage code below reads a text pair (spec §8.3).\n")
    return (
        "---\nlibrary_name: transformers\npipeline_tag: text-classification\n"
        f"base_model: {json.dumps(rm.name)}\ntags:\n- reward-model\n- scpo\n---\n\n"
        f"# SCPO reward model: {title}\n\n"
        "A reward model fine-tuned from the global reward model below with Steerable Cultural "
        "Preference Optimization (filter pairs with p_glo < tau, weight W = min(exp(delta / "
        "beta), 1), weighted Bradley-Terry loss). The logit is the reward.\n\n"
        f"| field | value |\n|---|---|\n{rows}\n{note}\n## Usage\n\n{_usage(rm, path)}")


def export_model(rm: HFRewardModel, path: Path, card: dict[str, Any]) -> Path:
    """``save`` + README.md model card; returns the directory."""
    text = model_card(rm, path, card)  # validate the card before writing anything
    save_checkpoint(rm, path)
    if is_main_process():
        (path / "README.md").write_text(text)
    return path
