#!/usr/bin/env python3
"""Transformers references for head ablation and answer-query RAM: tests/data/<family>/ablation_ref.npz.

For every fixture family the exact HF model of tests/data/<family> is rebuilt by running the
fixture recipe from tools/fixtures/ (same seeds, configs, tokenizer, image), stopping right
after the model and its inputs exist (no conversion, no files written under tests/data). The
rebuild is checked against the committed ref.npz (`logits_all`, and `attn_all`, `prompt_ids`,
`pixel_values`) before anything is written. Keys: see tests/data/ABLATION.md.

Needs the fixture toolchain (torch 2.13.0 CPU, transformers 5.23.0, sentencepiece, tokenizers, pillow).

    nice -n 10 python -m tools.refs.ablation              # all families
    nice -n 10 python -m tools.refs.ablation llama llava  # some
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tools.fixtures import FAMILIES, SEEDS, VISION_FAMILIES, builder, check_families, mm
from tools.fixtures import common as C
from tools.fixtures import text as T

MULTIMODAL = set(VISION_FAMILIES)
MEAN_FAMILIES = {"llama", "llava"}
# Text families whose ablation_ref.npz also holds a span knockout: [first, end) of the blocked keys.
SPAN_KNOCKOUT = {"gemma4": (3, 9)}
N_ANSWER = 3
REBUILD_TOL = 1e-5


class _Built(Exception):
    """Raised from inside a fixture builder once the HF model and its inputs exist."""

    def __init__(self, model, inputs, extra_inputs=None):
        super().__init__("built")
        self.model = model
        self.inputs = inputs
        self.extra_inputs = extra_inputs or {}


def _tok_inputs(tok, text):
    import torch

    ids = tok(text).input_ids
    return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}


def rebuild(family: str, work: Path, want_tokenizer: list | None = None):
    """Run the fixture builder of `family` up to the point where the model and the reference inputs
    exist. Returns (model, main inputs, {prefix: inputs} of the other text prompts, out dir).
    `want_tokenizer`, when given, receives the builder's HF tokenizer."""
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    saved = (T._finish, mm.mm_refs, C.run_converter, C.spm_tokenizer_dir, C.qwen2_bpe_tokenizer)

    def keep_tokenizer(fn, pick):
        def wrapped(*a, **k):
            res = fn(*a, **k)
            if want_tokenizer is not None:
                want_tokenizer.append(pick(res))
            return res

        return wrapped

    def fake_finish(name, model, tok, hf_dir, out_, prompts, pre="", extra_meta=None):
        main, extra = None, {}
        for prefix, txt in prompts:
            if prefix == "":
                main = _tok_inputs(tok, txt)
            else:
                extra[prefix] = _tok_inputs(tok, txt)
        raise _Built(model, main, extra)

    def fake_mm_refs(model, inputs, image_token_id, embeds, extend=None):
        assert extend is None  # every family's greedy reference used default_extend
        raise _Built(model, dict(inputs))

    def no_converter(*a, **k):
        raise RuntimeError("converter must not run while rebuilding")

    T._finish, mm.mm_refs, C.run_converter = fake_finish, fake_mm_refs, no_converter
    C.spm_tokenizer_dir = keep_tokenizer(saved[3], lambda r: r[0])
    C.qwen2_bpe_tokenizer = keep_tokenizer(saved[4], lambda r: r)
    try:
        builder(family)(out, work / "build", SEEDS[family])
    except _Built as b:
        return b.model, b.inputs, b.extra_inputs, out
    finally:
        T._finish, mm.mm_refs, C.run_converter, C.spm_tokenizer_dir, C.qwen2_bpe_tokenizer = saved
    raise RuntimeError(f"{family}: builder finished without producing the model")


# ---------------------------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------------------------


def text_attn_layers(model) -> list[int]:
    """The decoder layers that have self-attention: every layer, except a hybrid model's linear
    attention ones (Qwen3.5: layer_types "linear_attention")."""
    types = getattr(model.config.get_text_config(), "layer_types", None)
    n = int(model.config.get_text_config().num_hidden_layers)
    return [i for i in range(n) if not types or types[i] != "linear_attention"]


def text_attn_modules(model) -> list:
    """The decoder's self-attention modules (language model only), in layer order (a hybrid
    model's: its attention layers, text_attn_layers; index i of this list is layer
    text_attn_layers(model)[i], as in transformers' `attentions` output)."""
    import re

    found = {}
    for name, mod in model.named_modules():
        if "vision" in name or "visual" in name:
            continue
        m = re.search(r"layers\.(\d+)\.self_attn$", name)
        if m and hasattr(mod, "o_proj"):
            found[int(m.group(1))] = mod
    assert found and sorted(found) == text_attn_layers(model), sorted(found)
    return [found[i] for i in sorted(found)]


def head_dim_of(model, layer: int | None = None) -> int:
    """The head size of the text layers, or of `layer` (Gemma 4: 2x on its global layers; the
    attention module's own `head_dim`)."""
    if layer is not None:
        hd = getattr(text_attn_modules(model)[layer], "head_dim", None)
        if hd:
            return int(hd)
    tc = model.config.get_text_config()
    return int(getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads)


class Hooks:
    def __init__(self):
        self.handles = []

    def add(self, h):
        self.handles.append(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []


def _by_layer(heads) -> dict:
    d: dict = {}
    for layer, head in heads:
        d.setdefault(int(layer), []).append(int(head))
    return d


def zero_hooks(model, heads) -> Hooks:
    """Zero head h's slice [h*hd, (h+1)*hd) of the o_proj input (forward pre-hook)."""
    attn = text_attn_modules(model)
    hooks = Hooks()
    for layer, hs in _by_layer(heads).items():
        hd = head_dim_of(model, layer)

        def pre(mod, args, hs=hs, hd=hd):
            x = args[0].clone()
            for h in hs:
                x[..., h * hd : (h + 1) * hd] = 0
            return (x,) + tuple(args[1:])

        hooks.add(attn[layer].o_proj.register_forward_pre_hook(pre))
    return hooks


def mean_hooks(model, heads, means) -> Hooks:
    """Replace head h's o_proj input slice by a fixed vector at every position."""
    attn = text_attn_modules(model)
    hooks = Hooks()
    for (layer, h), vec in zip(heads, means):
        hd = head_dim_of(model, int(layer))

        def pre(mod, args, h=int(h), vec=vec, hd=hd):
            x = args[0].clone()
            x[..., h * hd : (h + 1) * hd] = vec.to(x.dtype)
            return (x,) + tuple(args[1:])

        hooks.add(attn[int(layer)].o_proj.register_forward_pre_hook(pre))
    return hooks


def capture_hooks(model, heads, store: dict) -> Hooks:
    """Record the o_proj input slice of each (layer, head): store[(l, h)] = [T, hd] (batch 0)."""
    attn = text_attn_modules(model)
    hooks = Hooks()
    for layer, h in heads:
        hd = head_dim_of(model, int(layer))

        def pre(mod, args, key=(int(layer), int(h)), hd=hd):
            store.setdefault(key, []).append(args[0][0, :, key[1] * hd : (key[1] + 1) * hd].detach().clone())

        hooks.add(attn[int(layer)].o_proj.register_forward_pre_hook(pre))
    return hooks


class Knockout:
    """For the given (layer, head)s add -inf to the scores of the visual keys, for every query at a
    position >= `query_from` (0: every query; or one such position per visual key).

    Wraps the `eager_attention_forward` of the text attention's modeling module (looked up as a
    module global at call time): for a knocked layer the additive mask [B, 1, Tq, Tk] becomes a
    per-head mask [B, H, Tq, Tk] equal to the original for every other head. A query row of a
    knocked head whose visible keys are all visual (gemma3vl: the last image token on a
    sliding-window layer sees only the 16 image tokens) would be all -inf: such a row gets zero
    attention, i.e. the head contributes nothing at that position (ggml flash attention's result
    for a fully masked row). Those rows are recorded in `self.empty` as (layer, head, query)."""

    def __init__(self, model, heads, visual_positions, query_from=0, block=None):
        import torch

        # `block` (optional, bool [T, T]): the (query, key) edges cut, instead of the visual keys
        self.block = None if block is None else torch.as_tensor(np.asarray(block, dtype=bool))

        # only queries at positions >= query_from are blocked (an int, or one per visual key)
        self.query_from = np.broadcast_to(np.asarray(query_from, np.int64), (len(visual_positions),))
        attn = text_attn_modules(model)
        self.n_head = int(model.config.get_text_config().num_attention_heads)
        self.vis = torch.as_tensor(np.asarray(visual_positions), dtype=torch.long)
        self.targets = {id(attn[layer]): (layer, hs) for layer, hs in _by_layer(heads).items()}
        self.modules = sorted({type(a).__module__ for a in attn})
        self.saved: dict = {}
        self.empty: set = set()

    def __enter__(self):
        for name in self.modules:
            mod = sys.modules[name]
            orig = mod.eager_attention_forward
            self.saved[name] = orig
            mod.eager_attention_forward = self._wrap(orig)
        return self

    def __exit__(self, *exc):
        for name, orig in self.saved.items():
            sys.modules[name].eager_attention_forward = orig
        self.saved = {}

    def _wrap(self, orig):
        import torch

        def fwd(module, query, key, value, attention_mask, *args, **kwargs):
            tgt = self.targets.get(id(module))
            if tgt is None:
                return orig(module, query, key, value, attention_mask, *args, **kwargs)
            layer, hs = tgt
            bsz, n_q, n_k = query.shape[0], query.shape[2], key.shape[2]
            assert query.shape[1] == self.n_head, query.shape
            m = attention_mask
            if m is None:
                m = torch.zeros(bsz, 1, n_q, n_k, dtype=query.dtype)
            elif m.dtype == torch.bool:
                m = torch.zeros(m.shape, dtype=query.dtype).masked_fill(~m, float("-inf"))
            m = m[..., :n_k]
            assert m.dim() == 4 and m.shape[1] == 1, m.shape
            block = torch.zeros(n_q, n_k, dtype=torch.bool)  # the (query, key) edges cut
            if self.block is not None:
                block[:] = self.block[:n_q, :n_k]
            for k, q0 in zip(self.vis.tolist(), self.query_from.tolist()):
                block[q0:, k] = True
            visible = (m[:, 0] > torch.finfo(m.dtype).min / 2) & ~block  # [B, Tq, Tk]
            empty = ~visible.any(-1) & block.any(-1)  # [B, Tq]: a blocked row with no key left
            m = m.expand(m.shape[0], self.n_head, n_q, n_k).clone()
            for h in hs:
                m[:, h].masked_fill_(block, float("-inf"))
            out, w = orig(module, query, key, value, m, *args, **kwargs)  # out [B, Tq, H, hd]
            for h in hs:
                w[:, h][empty] = 0.0
                out[:, :, h][empty] = 0.0
                for q in torch.nonzero(empty[0]).flatten().tolist():
                    self.empty.add((layer, h, q))
            return out, w

        return fwd


# ---------------------------------------------------------------------------------------------
# Forwards
# ---------------------------------------------------------------------------------------------


@contextmanager
def zeroed_head_columns(projections: dict, heads, width):
    """Within the block, the input columns of head h (h * width(layer) ... (h + 1) * width(layer))
    of each layer's output projection (`projections[layer]`, an nn.Linear) are zero: the weight-side
    twin of a hook that zeroes those heads' outputs, restored on exit."""
    import torch

    saved = {}
    with torch.no_grad():
        for layer, h in heads:
            w = projections[layer].weight
            saved.setdefault(layer, w.detach().clone())
            d = width(layer)
            w[:, h * d : (h + 1) * d] = 0
    try:
        yield
    finally:
        with torch.no_grad():
            for layer, w0 in saved.items():
                projections[layer].weight.copy_(w0)


def run(model, inputs, attentions=False):
    import torch

    with torch.no_grad():
        out = model(**inputs, output_attentions=attentions, use_cache=False)
    logits = out.logits[0].float().numpy().astype(np.float32)
    if not attentions:
        return logits, None
    att = torch.stack([a[0] for a in out.attentions]).float().numpy().astype(np.float32)
    return logits, att


def maxdiff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def text_round_trips(tok, ids) -> bool:
    """The answer tokens decode to text that encodes back to the same tokens (a probe's answer is
    text: a token holding part of a UTF-8 character decodes to U+FFFD and does not come back)."""
    ids = [int(i) for i in ids]
    return tok(tok.decode(ids), add_special_tokens=False).input_ids == ids


def answer_ids_for(model, inputs, tok, greedy_ids) -> tuple[np.ndarray, bool]:
    """The teacher-forced answer: the fixture's greedy tokens `greedy_ids[:N_ANSWER]` when they
    survive a text round trip; else greedy decoding restricted, at each step, to the tokens that keep
    the answer text round-tripping (the highest-logit such token). Returns (ids, constrained)."""
    import torch

    ans = [int(i) for i in greedy_ids[:N_ANSWER]]
    if text_round_trips(tok, ans):
        return np.array(ans, dtype=np.int32), False
    ans, cur = [], dict(inputs)
    for _ in range(N_ANSWER):
        with torch.no_grad():
            logits = model(**cur, use_cache=False).logits[0, -1]
        for t in torch.argsort(logits, descending=True, stable=True).tolist():
            if text_round_trips(tok, ans + [t]):
                break
        ans.append(int(t))
        cur = C.default_extend(cur, int(t))
    return np.array(ans, dtype=np.int32), True


def make_refs(family: str, data: Path, work: Path, log) -> dict:
    import torch

    ref = np.load(data / family / "ref.npz")
    toks: list = []
    model, inputs, extra, out = rebuild(family, work, toks)
    n_layer = len(text_attn_modules(model))
    last = n_layer - 1
    n_tok = int(ref["prompt_ids"].shape[0])

    # --- the rebuild must be the fixture's model ---
    ids = inputs["input_ids"][0].numpy()
    assert np.array_equal(ids, ref["prompt_ids"]), f"{family}: prompt_ids differ"
    if "pixel_values" in ref.files:
        pv = inputs["pixel_values"].numpy()
        pv = pv.reshape(ref["pixel_values"].shape) if pv.size == ref["pixel_values"].size else pv
        assert pv.shape == ref["pixel_values"].shape, (pv.shape, ref["pixel_values"].shape)
        assert maxdiff(pv, ref["pixel_values"]) == 0.0, f"{family}: pixel_values differ"
        png = data / family / "image.png"
        assert (out / "image.png").read_bytes() == png.read_bytes(), f"{family}: image.png differs"
    base_logits, base_att = run(model, inputs, attentions=True)
    d_logits = maxdiff(base_logits, ref["logits_all"])
    d_att = maxdiff(base_att, ref["attn_all"])
    log(f"[{family}] rebuild vs ref.npz: max|logits diff| {d_logits:.3g}, max|attn diff| {d_att:.3g}")
    if d_logits > REBUILD_TOL or d_att > REBUILD_TOL:
        raise RuntimeError(f"{family}: rebuilt model does not match ref.npz ({d_logits}, {d_att})")
    for prefix, inp in extra.items():
        if prefix + "logits_all" in ref.files:
            assert np.array_equal(inp["input_ids"][0].numpy(), ref[prefix + "prompt_ids"])
            d = maxdiff(run(model, inp)[0], ref[prefix + "logits_all"])
            log(f"[{family}] rebuild vs ref.npz {prefix}logits_all: {d:.3g}")
            assert d <= REBUILD_TOL, (prefix, d)

    r: dict = {}

    # --- 1. zero ablation ---
    sets = {"zeroA": [(last, 1)], "zeroB": [(0, 0), (0, 3), (last, 2)]}
    for key, heads in sets.items():
        with zero_hooks(model, heads):
            lg, _ = run(model, inputs)
        # independent check: zeroing the o_proj weight columns of those heads is the same thing
        attn = text_attn_modules(model)
        with zeroed_head_columns({la: attn[la].o_proj for la, _ in heads}, heads, lambda la: head_dim_of(model, la)):
            lg2, _ = run(model, inputs)
        assert maxdiff(run(model, inputs)[0], base_logits) == 0.0
        d_chk = maxdiff(lg, lg2)
        eff = maxdiff(lg, base_logits)
        log(f"[{family}] {key} {heads}: |Δ vs base| {eff:.3g}, hook vs zeroed-weights {d_chk:.3g}")
        assert d_chk < 1e-5 and eff > 1e-4, (key, d_chk, eff)
        r[key + "_heads"] = np.array(heads, dtype=np.int32)
        r[key + "_logits_all"] = lg

    # --- 2. visual knockout (multimodal) ---
    if family in MULTIMODAL:
        vis = ref["visual_positions"].astype(np.int64)
        kheads = [(0, 1), (last, 0)]
        with Knockout(model, kheads, vis) as ko:
            lg, att = run(model, inputs, attentions=True)
        empty = np.array(sorted(ko.empty), dtype=np.int32).reshape(-1, 3)
        text_keys = np.setdiff1d(np.arange(n_tok), vis)
        assert np.isfinite(att).all() and np.isfinite(lg).all()
        # knocked heads: no mass on visual keys; rows sum to 1 except the recorded empty rows (0)
        for layer, h in kheads:
            assert float(att[layer, h][:, vis].max()) == 0.0, (layer, h)
            rows = np.ones(n_tok)
            rows[empty[(empty[:, 0] == layer) & (empty[:, 1] == h), 2]] = 0.0
            assert maxdiff(att[layer, h].sum(-1), rows) < 1e-5
            # an empty row is one whose reference row had all its mass on visual keys
            if layer == 0:
                assert np.array_equal(rows == 0, ref["attn_all"][0, h][:, text_keys].sum(-1) == 0)
        if len(empty):
            log(f"[{family}] knockout: rows with no visible text key (zero attention): {empty.tolist()}")
        # layer 0: other heads unchanged; knocked head = ref row renormalised over text keys
        for h in range(att.shape[1]):
            if (0, h) in kheads:
                p = ref["attn_all"][0, h].astype(np.float64)
                exp = np.zeros_like(p)
                tsum = p[:, text_keys].sum(-1, keepdims=True)
                exp[:, text_keys] = p[:, text_keys] / np.where(tsum > 0, tsum, 1.0)
                d = maxdiff(att[0, h], exp)
                log(f"[{family}] knockout L0 h{h}: vs renormalised ref row {d:.3g}")
                assert d < 1e-5, d
            else:
                assert maxdiff(att[0, h], ref["attn_all"][0, h]) < 1e-6, h
        # last layer, non-knocked heads: the mask term for them is untouched (they may differ only
        # through the changed residual stream)
        eff = maxdiff(lg, base_logits)
        log(f"[{family}] knockout {kheads}: |Δ logits vs base| {eff:.3g}")
        assert eff > 1e-5
        r["knock_heads"] = np.array(kheads, dtype=np.int32)
        r["knock_logits_all"] = lg
        r["knock_attn_all"] = att
        r["knock_empty_rows"] = empty

    # --- 2b. span knockout (text families with KV sharing) ---
    # The default knockout's edges with a span of text standing in for the image: the span's keys
    # blocked for every query at or after its end, on heads of an owning and of a sharing layer.
    if family in SPAN_KNOCKOUT:
        span = np.arange(*SPAN_KNOCKOUT[family], dtype=np.int64)
        kheads = [(0, 1), (3, 2), (4, 0), (last, 3)]
        with Knockout(model, kheads, span, query_from=int(span[-1]) + 1) as ko:
            lg, att = run(model, inputs, attentions=True)
        assert not ko.empty and np.isfinite(lg).all()
        for layer, h in kheads:
            assert float(att[layer, h][span[-1] + 1 :, span].max()) == 0.0, (layer, h)
            assert maxdiff(att[layer, h].sum(-1), np.ones(n_tok)) < 1e-5
            # rows before the span's end see it as before (layer 0: the input is unchanged)
            if layer == 0:
                assert maxdiff(att[0, h][: span[-1] + 1], ref["attn_all"][0, h][: span[-1] + 1]) < 1e-6
        eff = maxdiff(lg, base_logits)
        log(f"[{family}] span knockout {kheads} keys {span.tolist()}: |Δ logits vs base| {eff:.3g}")
        assert eff > 1e-4
        r["span_knock_heads"] = np.array(kheads, dtype=np.int32)
        r["span_knock_keys"] = span.astype(np.int32)
        r["span_knock_logits_all"] = lg
        r["span_knock_attn_all"] = att

    # --- 3. answer-query RAM references (teacher forcing) ---
    # Multimodal answers reach corehead as Probe.answer text, so they must survive a text round trip;
    # the text families' tests feed the ids directly.
    if family in MULTIMODAL:
        ans, constrained = answer_ids_for(model, inputs, toks[-1], ref["greedy_ids"])
    else:
        ans, constrained = ref["greedy_ids"][:N_ANSWER].astype(np.int32), False
    if constrained:
        log(f"[{family}] greedy answer {ref['greedy_ids'][:N_ANSWER].tolist()} is not text "
            f"({toks[-1].decode(ref['greedy_ids'][:N_ANSWER].tolist())!r}): round-trip-constrained greedy "
            f"{ans.tolist()} ({toks[-1].decode(ans.tolist())!r})")
    a_inputs = dict(inputs)
    for nid in ans:
        a_inputs = C.default_extend(a_inputs, int(nid))
    a_logits, a_att = run(model, a_inputs, attentions=True)
    assert a_logits.shape[0] == n_tok + N_ANSWER
    d_prefix = maxdiff(a_logits[:n_tok], base_logits)
    pred = a_logits[n_tok - 1 : n_tok - 1 + N_ANSWER].argmax(-1)
    log(f"[{family}] answer {ans.tolist()}: prefix logits vs base {d_prefix:.3g}, argmax {pred.tolist()}")
    assert d_prefix < 1e-4, d_prefix
    assert constrained or np.array_equal(pred, ans), (pred, ans)
    assert family not in MULTIMODAL or text_round_trips(toks[-1], ans), ans
    r["answer_ids"] = ans
    r["answer_logits_all"] = a_logits
    r["answer_attn_all"] = a_att

    # --- 4. mean ablation (llama, llava) ---
    if family in MEAN_FAMILIES:
        mheads = [(0, 1), (last, 3)]
        store: dict = {}
        ref_inputs = [("prompt", inputs)]
        if family == "llama":
            ref_inputs.append(("p1_prompt", extra["p1_"]))
        with capture_hooks(model, mheads, store):
            for _, inp in ref_inputs:
                run(model, inp)
        means = []
        for key in mheads:
            allpos = torch.cat(store[key], dim=0).double()  # [sum T, hd]
            assert allpos.shape[0] == sum(int(i["input_ids"].shape[1]) for _, i in ref_inputs)
            means.append(allpos.mean(0).float())
        with mean_hooks(model, mheads, means):
            lg, _ = run(model, inputs)
        # independent check: zero the slice and add W[:, slice] @ mean as an o_proj output offset
        attn = text_attn_modules(model)
        with zero_hooks(model, mheads) as hz:
            for (layer, h), vec in zip(mheads, means):
                hd = head_dim_of(model, layer)
                off = attn[layer].o_proj.weight[:, h * hd : (h + 1) * hd].detach() @ vec
                hz.add(attn[layer].o_proj.register_forward_hook(lambda m, a, o, off=off: o + off))
            lg2, _ = run(model, inputs)
        d_chk = maxdiff(lg, lg2)
        log(f"[{family}] mean {mheads}: |Δ vs base| {maxdiff(lg, base_logits):.3g}, vs offset form {d_chk:.3g}")
        assert d_chk < 1e-4, d_chk
        r["mean_heads"] = np.array(mheads, dtype=np.int32)
        r["mean_ref_prompts"] = np.array([n for n, _ in ref_inputs])
        r["mean_vectors"] = torch.stack(means).numpy().astype(np.float32)
        r["mean_logits_all"] = lg

    for k, v in r.items():
        if v.dtype.kind == "f":
            assert v.dtype == np.float32 and np.isfinite(v).all(), k
    return r


def in_work_dir(family: str, prefix: str, fn):
    """fn(work) with a fresh temporary folder for the fixture rebuild, removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-{family}-"))
    try:
        return fn(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def save_refs(family: str, path: Path, arrays: dict) -> None:
    C.save_npz(path, arrays)
    print(f"[{family}] wrote {path} ({path.stat().st_size} bytes)", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("families", nargs="*", help=f"subset of {list(FAMILIES)}")
    ap.add_argument("--data", type=Path, default=C.REPO / "tests" / "data")
    ap.add_argument("--dry-run", action="store_true", help="verify and compute, write nothing")
    args = ap.parse_args()

    C.deterministic_torch()
    for f in check_families(ap, args.families):
        r = in_work_dir(f, "abl", lambda work, f=f: make_refs(f, args.data, work, lambda s: print(s, flush=True)))
        if not args.dry_run:
            save_refs(f, args.data / f / "ablation_ref.npz", r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
