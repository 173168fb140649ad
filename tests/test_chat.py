"""Chat templates rendered like transformers (references from transformers' own renderer,
tools/refs/chat.py -> tests/data/chat_refs.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corehead import chat

CASES = json.loads((Path(__file__).parent / "data" / "chat_refs.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['template_name']}-{i}" for i, c in enumerate(CASES)])
def test_render_matches_transformers(case):
    kwargs = dict(add_generation_prompt=case["add_generation_prompt"], bos_token="<BOS>", eos_token="<EOS>",
                  date_string="26 Jul 2024")
    if "error" in case:
        with pytest.raises(chat.ChatTemplateError, match=case["error"]):
            chat.render(case["template"], case["messages"], **kwargs)
    else:
        assert chat.render(case["template"], case["messages"], **kwargs) == case["expected"]


def test_bad_messages():
    t = CASES[0]["template"]
    with pytest.raises(TypeError):
        chat.render(t, "hello")
    with pytest.raises(ValueError, match="empty"):
        chat.render(t, [])
    with pytest.raises(ValueError, match="role"):
        chat.render(t, [{"content": "x"}])
    with pytest.raises(chat.ChatTemplateError, match="does not compile"):
        chat.render("{% if %}", [{"role": "user", "content": "x"}])


def test_engine_chat_uses_the_gguf_template():
    import corehead

    data = Path(__file__).parent / "data" / "qwen2" / "model-f32.gguf"
    with corehead.Engine(data, n_threads=1) as eng:
        template = eng._native().metadata_string("tokenizer.chat_template")
        if not template:
            with pytest.raises(ValueError, match="no chat template"):
                eng.apply_chat_template([{"role": "user", "content": "hi"}])
            return
        rendered = eng.apply_chat_template([{"role": "user", "content": "hi"}])
        assert rendered == chat.render(template, [{"role": "user", "content": "hi"}],
                                       bos_token=eng.tokenizer.token_text(eng.tokenizer.bos)
                                       if eng.tokenizer.bos >= 0 else "",
                                       eos_token=eng.tokenizer.token_text(eng.tokenizer.eos))
