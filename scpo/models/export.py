"""Writing an ``HFRewardModel`` as a standard Hugging Face checkpoint, and its model card.

The checkpoint loads with ``AutoModelForSequenceClassification.from_pretrained`` and no scpo;
the card records what the model was trained from and how to feed it. ``scpo.models.hf`` calls
it; it reads the model through ``Exportable`` and imports nothing of ``hf`` back.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import save_file

import scpo
from scpo.models.device import full_state_dict, is_main_process, is_sharded
from scpo.models.modes import Mode

CARD_FIELDS = ("tau", "beta", "pairs_kept", "seeds", "test_accuracy")  # required in ``card``


META_FILE = "scpo_hf.json"  # what HFRewardModel.load needs besides the HF checkpoint
ADAPTER_FILE = "adapter_model.safetensors"  # scpo's own save of a LoRA model: adapters only
# the names a save or an export of any kind writes (glob patterns; the metadata files of
# scpo.models.saved.KINDS among them): in a model directory of an older scpo, whose marker
# listed no files, only these are replaced (scpo.outdir.owned_files)
FILES = ("scpo_*.json", "*_rm.json", "*.safetensors", "model.safetensors.index.json",
         "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json",
         "merges.txt", "*.model", "chat_template.jinja", "README.md")
SAVED = "saved model"  # the kind of output (scpo.outdir's marker) of a model's save
EXPORTED = "model checkpoint"  # ... of an export (a standard checkpoint with its card)


class Exportable(Protocol):
    """What a checkpoint and its card are written from (an ``HFRewardModel``)."""

    model: torch.nn.Module
    tokenizer: Any
    name: str  # the global RM it was trained from: a hub id or a directory
    revision: str | None
    mode: Mode
    max_length: int
    chat_template: bool
    normalizer_restored: bool  # tokenizer.json's normaliser put back when loaded

    def options(self) -> dict[str, Any]: ...

    def card_options(self) -> dict[str, Any]: ...


def merged_fp32(model: torch.nn.Module) -> torch.nn.Module:
    """A LoRA model's adapters merged into an fp32 CPU copy of its base (the live model is
    left as it is).

    Merging into a bf16 base rounds W + BA to bf16, whose spacing near a weight of 0.02 is
    ~1e-4: part of an update of that size is rounded away (~6 % in the test), and the
    checkpoint is not the model that was evaluated. The frozen base goes straight to an fp32
    CPU copy (no second GPU copy).
    """
    frozen = {id(p): torch.nn.Parameter(p.detach().to("cpu", torch.float32, copy=True),
                                        requires_grad=False)  # copy: merging writes into it
              for p in model.parameters() if not p.requires_grad}
    return copy.deepcopy(model, memo=frozen).to("cpu", torch.float32).merge_and_unload()


def save_checkpoint(rm: Exportable, path: Path, *, merge: bool = True) -> None:
    """Tokenizer + ``scpo_hf.json`` + the weights: a full checkpoint (safetensors; a LoRA
    model merged by ``merged_fp32`` and saved in fp32), or with ``merge=False`` a LoRA
    model's trainable weights alone (adapters and score head), read back by
    ``HFRewardModel.load`` over the global RM exactly as they were evaluated.

    Every process must call it (gathering FSDP shards is a collective); rank 0 writes.
    """
    model = rm.model
    lora = hasattr(model, "peft_config")
    adapters = lora and not merge and not is_sharded(model)
    if adapters:
        state = {k: v.detach().to("cpu") for k, v in model.named_parameters() if v.requires_grad}
    else:
        if lora:
            model = merged_fp32(model)
        state = full_state_dict(model)
    if not is_main_process():
        return
    path.mkdir(parents=True, exist_ok=True)
    if adapters:
        save_file({k: v.contiguous() for k, v in state.items()}, path / ADAPTER_FILE)
    else:
        model.save_pretrained(path, state_dict=state)
    rm.tokenizer.save_pretrained(path)
    meta = {**rm.options(), "weights": "adapters" if adapters else "full"}
    (path / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")


def portable_name(name: str) -> str:
    """A model named without this machine's paths: a hub id as it is, a local directory by its
    last part (the name the user gave it)."""
    p = Path(name)
    return p.name if p.is_absolute() or p.exists() else name


def _normalizer_line(rm: Exportable) -> str:
    """The card's usage code restores the tokenizer.json normaliser when transformers rebuilt
    a different one (DeBERTa-v3 under transformers 5), as scpo did in training."""
    if not rm.normalizer_restored:
        return ""
    return ("# transformers 5 rebuilds this tokenizer's normaliser; the model was trained with "
            "the file's:\nfrom tokenizers import Tokenizer\n"
            "tok.backend_tokenizer.normalizer = Tokenizer.from_file("
            "f\"{MODEL}/tokenizer.json\").normalizer\n")


def _usage(rm: Exportable, model_id: str) -> str:
    """Python that scores one (prompt, response) the way the model was trained to read it,
    with transformers and as a TRL reward function."""
    if rm.chat_template:
        encode = ("messages = [{\"role\": \"user\", \"content\": prompt},\n"
                  "            {\"role\": \"assistant\", \"content\": response}]\n"
                  "text = tok.apply_chat_template(messages, tokenize=False)\n"
                  f"inputs = tok(text, add_special_tokens=False, truncation=True, "
                  f"max_length={rm.max_length}, return_tensors=\"pt\")")
        bare = ("TRL's own path (`reward_funcs=MODEL`) applies this tokenizer's chat template to "
                "conversational data, as in training (without truncating to "
                f"{rm.max_length} tokens); plain-text prompts it joins to the completion "
                "without the template, which is not what the model was trained on.")
    else:
        encode = (f"inputs = tok(prompt, response, truncation=True, max_length={rm.max_length}, "
                  "return_tensors=\"pt\")")
        bare = ("Passing the bare path to TRL (`reward_funcs=MODEL`) changes the input: TRL "
                "feeds `prompt + completion` as one string, while this model was trained on the "
                "text pair (prompt, response) with its separator and segment ids.")
    return (
        f"```python\nimport torch\n"
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
        f"MODEL = \"{model_id}\"  # this directory\n"
        "tok = AutoTokenizer.from_pretrained(MODEL)\n"
        f"{_normalizer_line(rm)}"
        "model = AutoModelForSequenceClassification.from_pretrained(MODEL).eval()\n"
        "prompt, response = \"How should I greet my neighbours?\", \"Say hello and smile.\"\n"
        f"{encode}\n"
        "with torch.inference_mode():\n"
        "    reward = model(**inputs).logits[0, 0].item()\n```\n\n"
        "As a reward for TRL's online trainers (GRPO, RLOO), scored exactly as in training "
        "(`pip install scpo[trl]`):\n\n"
        "```python\nfrom trl import GRPOConfig, GRPOTrainer\n"
        "from scpo.companion.reward_fn import trl_reward\n\n"
        "trainer = GRPOTrainer(model=policy, reward_funcs=[trl_reward(MODEL)],\n"
        "                      args=GRPOConfig(...), train_dataset=prompts)\n```\n\n"
        f"{bare}\n")


def model_card(rm: Exportable, path: Path, card: dict[str, Any]) -> str:
    """README.md text: YAML front matter, the training record as a table, usage code. No path
    of the exporting machine: the global RM by its hub id or its directory's name."""
    missing = [k for k in CARD_FIELDS if k not in card]
    if missing:
        raise ValueError(f"export: card lacks {missing}; it needs {list(CARD_FIELDS)} "
                         "(plus optional country, variant, global_model, ...)")
    base = portable_name(rm.name)
    record = {"global_model": base, "global_revision": rm.revision or "main", **card,
              "scpo_version": scpo.__version__, **rm.card_options()}
    rows = "\n".join(f"| {k} | {json.dumps(v, default=str)} |" for k, v in record.items())
    title = " ".join(str(card[k]) for k in ("country", "variant") if k in card) or "minority"
    note = ("" if rm.mode.name == "fixed" else
            "\nTrained in `released` mode: on `prompt + \" [SEP] \" + response` padded to "
            f"{rm.max_length} tokens, while the usage code below reads a text pair (spec §8.3).\n")
    model_id = "/".join(Path(path).parts[-3:])
    return (
        "---\nlibrary_name: transformers\npipeline_tag: text-classification\n"
        f"base_model: {json.dumps(base)}\ntags:\n- reward-model\n- scpo\n---\n\n"
        f"# SCPO reward model: {title}\n\n"
        "A reward model fine-tuned from the global reward model below with Steerable Cultural "
        "Preference Optimization (filter pairs with p_glo < tau, weight W = min(exp(delta / "
        "beta), 1), weighted Bradley-Terry loss). The logit is the reward.\n\n"
        f"| field | value |\n|---|---|\n{rows}\n{note}\n## Usage\n\n{_usage(rm, model_id)}")


def export_model(rm: Exportable, path: Path, card: dict[str, Any],
                 overwrite: bool = False) -> Path:
    """``save`` + README.md model card, written as one directory (``scpo.outdir.replace_dir``:
    a new or empty one, an earlier export of scpo's, or with ``overwrite`` a user's folder,
    whose other files are kept); returns the directory."""
    from scpo.outdir import replace_dir

    text = model_card(rm, path, card)  # validate the card before writing anything
    if not is_main_process():
        save_checkpoint(rm, path)  # gathering sharded weights is collective; rank 0 writes
        return path

    def write(tmp: Path) -> None:
        save_checkpoint(rm, tmp)
        (tmp / "README.md").write_text(text)

    return replace_dir(path, write, overwrite=overwrite, what=EXPORTED, legacy=FILES,
                       wait=True, ours=lambda d: (d / META_FILE).is_file())
