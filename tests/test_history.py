"""The conversation-history option on the Hugging Face tier: a chat list through the template."""

import json

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from scpo.models.modes import chat_text, prompt_messages


def chat_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({"<unk>": 0, "</s>": 1}, unk_token="<unk>"))
    tok.normalizer, tok.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>")
    fast.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    return fast


def test_a_json_chat_list_prompt_is_the_conversation():
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "And then?"}]
    assert prompt_messages(json.dumps(msgs)) == msgs
    text = chat_text(chat_tokenizer(), json.dumps(msgs), "The end.")
    assert text == "[user] Hi\n[assistant] Hello!\n[user] And then?\n[assistant] The end.\n"


def test_any_other_prompt_is_one_user_turn():
    tok = chat_tokenizer()
    assert chat_text(tok, "Hi", "Yo") == "[user] Hi\n[assistant] Yo\n"
    for text in ('[{"role": "user"}]', '[{"role": broken', "[1, 2]", '[{"role": "u", "x": 1}]'):
        assert prompt_messages(text) == [{"role": "user", "content": text}]
