"""Exported RMs as TRL reward functions: scored as trained, through a real GRPOTrainer run."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import write_tiny_bert  # noqa: E402
from test_hf import PAIRS, W1, llama_tokenizer, tcfg, tiny_llama  # noqa: E402

from scpo.companion.reward_fn import prompt_text, trl_reward  # noqa: E402
from scpo.config import MethodConfig  # noqa: E402
from scpo.models.hf import HFRewardModel  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest
CARD = {"tau": 0.7, "beta": 1.1, "pairs_kept": 16, "seeds": [0], "test_accuracy": 0.5}


def trained_export(rm: HFRewardModel, path):
    rm.fit(PAIRS, W1, tcfg(steps=3, batch=4), MethodConfig(), seed=0)
    return rm, rm.export(path / "Chile" / "scpo_fw" / "seed0", CARD)


@pytest.fixture(scope="module")
def text_pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rm")
    rm = HFRewardModel.from_pretrained(str(write_tiny_bert(tmp / "global-bert")), max_length=64)
    return trained_export(rm, tmp / "export")


def test_the_reward_function_scores_as_scpo_does(text_pair, tmp_path):
    for rm, path in (text_pair, trained_export(tiny_llama(lora_r=4), tmp_path)):
        reward = trl_reward(path)
        want = rm.score(PAIRS["prompt"].tolist(), PAIRS["chosen"].tolist())
        plain = reward(PAIRS["prompt"].tolist(), PAIRS["chosen"].tolist())
        np.testing.assert_allclose(plain, want, rtol=1e-5, atol=1e-6)
        chat = reward([[{"role": "user", "content": p}] for p in PAIRS["prompt"]],
                      [[{"role": "assistant", "content": c}] for c in PAIRS["chosen"]])
        np.testing.assert_allclose(chat, want, rtol=1e-5, atol=1e-6)
        assert reward.__name__ == "scpo_seed0"


def test_conversations_become_what_the_model_read():
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "how to greet?"}]
    assert prompt_text(conv, chat_template=False) == (
        "User: hi\n\nAssistant: hello\n\nUser: how to greet?")
    assert prompt_text(conv, chat_template=True).startswith('[{"role": "user", "content": "hi"}')
    assert prompt_text("plain", chat_template=False) == "plain"
    with pytest.raises(ValueError, match="must end with a user turn"):
        prompt_text(conv[:2], chat_template=False)


def test_the_card_names_no_path_of_this_machine(text_pair, tmp_path):
    _, path = text_pair
    card = (path / "README.md").read_text()
    assert str(path.parents[3]) not in card and "global-bert" in card
    assert 'base_model: "global-bert"' in card and 'MODEL = "Chile/scpo_fw/seed0"' in card
    assert "trl_reward(MODEL)" in card and "changes the input" in card


@pytest.mark.slow
def test_a_grpo_run_logs_the_rewards_the_model_gives(text_pair, tmp_path):
    """Two GRPO steps of a tiny policy: the rewards TRL logs through ``trl_reward`` are the
    RM's scores of the completions it generated; through the bare path they differ (TRL
    feeds ``prompt + completion`` to a model trained on text pairs)."""
    import datasets
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    _, path = text_pair
    reward = trl_reward(path)
    seen: list[tuple[list[str], list[str], list[float]]] = []

    def recorded(prompts, completions, **kw):
        out = reward(prompts, completions, **kw)
        seen.append((list(prompts), list(completions), out))
        return out

    recorded.__name__ = "scpo_reward"
    tok = llama_tokenizer()
    tok.pad_token = tok.unk_token
    torch.manual_seed(0)
    policy = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id))
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=8, max_steps=2,
                      learning_rate=1e-5, use_cpu=True, bf16=False, report_to="none",
                      logging_steps=1, save_strategy="no", seed=0, disable_tqdm=True)
    data = datasets.Dataset.from_dict({"prompt": PAIRS["prompt"].tolist()[:8]})
    trainer = GRPOTrainer(model=policy, reward_funcs=[str(path), recorded], args=args,
                          train_dataset=data, processing_class=tok)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/scpo_reward/mean" in h]
    assert len(logs) == 2 and len(seen) == 2
    rm = HFRewardModel.load(path)
    for log, (prompts, completions, rewards) in zip(logs, seen):
        assert len(completions) == 4 and all(isinstance(c, str) for c in completions)
        again = rm.score(prompts, completions)  # independently, from the saved model
        np.testing.assert_allclose(rewards, again, rtol=1e-5, atol=1e-6)
        assert log["rewards/scpo_reward/mean"] == pytest.approx(np.mean(again), abs=1e-5)
        bare = log[f"rewards/{path.name}/mean"]
        assert abs(bare - np.mean(again)) > 1e-3, (bare, np.mean(again))
