"""corehead native core (ggml engine)"""

from collections.abc import Callable, Sequence
from typing import Annotated

import numpy
from numpy.typing import NDArray


class ModelError(ValueError):
    """
    A model / mmproj file is malformed, unsupported or inconsistent (a ValueError).
    """

class ContextOverflowError(ValueError):
    """The request does not fit in the context window (a ValueError)."""

class TextInfo:
    """
    Facts about a language-model GGUF (inspect_model, Engine.text_info): arch = general.architecture, file_type e.g. 'Q4_K_M', n_head / n_head_kv = query / KV heads per layer, n_params = elements of all tensors, vocab_only = a tokenizer-only file, tokenizer / tokenizer_pre = tokenizer.ggml.model / .pre, n_tokens = tokens in the tokenizer, n_deepstack = layers that add DeepStack visual features (qwen3vl), n_expert / n_expert_used = experts per layer / routed per token (MoE; 0 = dense), attention_layers = the layers with attention heads (all but a hybrid model's Gated DeltaNet layers, qwen35), recurrent_state_bytes = those layers' state per sequence, deltanet_value_heads = value heads per Gated DeltaNet layer (0 without any), layer_head_dims = each layer's head size (head_dim: the global layers'), kv_source_layers = the layer whose K/V each layer attends over (KV sharing, gemma4: a layer reading another's holds no KV cache).
    """

    @property
    def path(self) -> str: ...

    @property
    def arch(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def file_type(self) -> str: ...

    @property
    def n_layer(self) -> int: ...

    @property
    def n_head(self) -> int: ...

    @property
    def n_head_kv(self) -> int: ...

    @property
    def n_embd(self) -> int: ...

    @property
    def n_ff(self) -> int: ...

    @property
    def head_dim(self) -> int: ...

    @property
    def n_vocab(self) -> int: ...

    @property
    def n_ctx_train(self) -> int: ...

    @property
    def layer_head_dims(self) -> list[int]: ...

    @property
    def kv_source_layers(self) -> list[int]: ...

    @property
    def n_deepstack(self) -> int: ...

    @property
    def n_expert(self) -> int: ...

    @property
    def n_expert_used(self) -> int: ...

    @property
    def attention_layers(self) -> list[int]: ...

    @property
    def recurrent_state_bytes(self) -> int: ...

    @property
    def deltanet_value_heads(self) -> int: ...

    @property
    def n_tensors(self) -> int: ...

    @property
    def n_params(self) -> int: ...

    @property
    def file_size(self) -> int: ...

    @property
    def vocab_only(self) -> bool: ...

    @property
    def tokenizer(self) -> str: ...

    @property
    def tokenizer_pre(self) -> str: ...

    @property
    def n_tokens(self) -> int: ...

    def to_dict(self) -> dict[str, object]:
        """The fields as a new dict (field name -> value), in declaration order."""

    def keys(self) -> list[str]:
        """The field names, in declaration order."""

    def __getitem__(self, key: str) -> object:
        """The field named key (KeyError for other names)."""

    def __repr__(self) -> str:
        """Every field, as ClassName(field=value, ...)."""

class VisionInfo:
    """
    Facts about an mmproj GGUF (inspect_mmproj, Engine.vision_info): projector = clip.projector_type, image_size = side of the square input the encoder was trained on, n_out = embedding size the projector produces, n_deepstack = DeepStack slices the projector emits per visual token after the main embedding (qwen3vl_merger; encode_image then returns n_out * (1 + n_deepstack) columns).
    """

    @property
    def path(self) -> str: ...

    @property
    def projector(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def file_type(self) -> str: ...

    @property
    def image_size(self) -> int: ...

    @property
    def patch_size(self) -> int: ...

    @property
    def n_embd(self) -> int: ...

    @property
    def n_ff(self) -> int: ...

    @property
    def n_layer(self) -> int: ...

    @property
    def n_head(self) -> int: ...

    @property
    def n_out(self) -> int: ...

    @property
    def n_deepstack(self) -> int: ...

    @property
    def n_tensors(self) -> int: ...

    @property
    def n_params(self) -> int: ...

    @property
    def file_size(self) -> int: ...

    def to_dict(self) -> dict[str, object]:
        """The fields as a new dict (field name -> value), in declaration order."""

    def keys(self) -> list[str]:
        """The field names, in declaration order."""

    def __getitem__(self, key: str) -> object:
        """The field named key (KeyError for other names)."""

    def __repr__(self) -> str:
        """Every field, as ClassName(field=value, ...)."""

class GgufTensorInfo:
    """
    One tensor of a GGUF file: type = ggml type name ('q4_K', 'f16', ...), shape in ggml order (ne[0] first), offset from the start of the tensor-data region, n_bytes of data.
    """

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def shape(self) -> list[int]: ...

    @property
    def offset(self) -> int: ...

    @property
    def n_bytes(self) -> int: ...

    def to_dict(self) -> dict[str, object]:
        """The fields as a new dict (field name -> value), in declaration order."""

    def keys(self) -> list[str]:
        """The field names, in declaration order."""

    def __getitem__(self, key: str) -> object:
        """The field named key (KeyError for other names)."""

    def __repr__(self) -> str:
        """Every field, as ClassName(field=value, ...)."""

class GgufSummary:
    """
    The layout of a GGUF file from its header (gguf_summary): the tensor-data region starts at data_offset and holds data_size bytes (what the engine loads as weights); tensors in file order.
    """

    @property
    def path(self) -> str: ...

    @property
    def version(self) -> int: ...

    @property
    def file_size(self) -> int: ...

    @property
    def alignment(self) -> int: ...

    @property
    def data_offset(self) -> int: ...

    @property
    def data_size(self) -> int: ...

    @property
    def tensors(self) -> list[GgufTensorInfo]: ...

    def to_dict(self) -> dict[str, object]:
        """The fields as a new dict (field name -> value), in declaration order."""

    def keys(self) -> list[str]:
        """The field names, in declaration order."""

    def __getitem__(self, key: str) -> object:
        """The field named key (KeyError for other names)."""

    def __repr__(self) -> str:
        """Every field, as ClassName(field=value, ...)."""

class VisionInput:
    """
    The largest single vision-encoder input of an mmproj (largest_vision_input): width x height pixels, n_patches = encoder sequence length (a class token included).
    """

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def n_patches(self) -> int: ...

    def to_dict(self) -> dict[str, object]:
        """The fields as a new dict (field name -> value), in declaration order."""

    def keys(self) -> list[str]:
        """The field names, in declaration order."""

    def __getitem__(self, key: str) -> object:
        """The field named key (KeyError for other names)."""

    def __repr__(self) -> str:
        """Every field, as ClassName(field=value, ...)."""

class KVStats:
    """
    What the KV cache holds now (Engine.kv_stats). The full part holds every token for the CoRe KV heads (all KV heads when dense), the compact part compact_tokens slots per other KV head; *_bytes count the tokens in use, *_allocated the backend buffers; *_kv_heads are per layer.
    """

    @property
    def sparse(self) -> bool: ...

    @property
    def n_tokens(self) -> int: ...

    @property
    def compact_tokens(self) -> int: ...

    @property
    def full_bytes(self) -> int: ...

    @property
    def compact_bytes(self) -> int: ...

    @property
    def full_allocated(self) -> int: ...

    @property
    def compact_allocated(self) -> int: ...

    @property
    def core_kv_heads(self) -> list[int]: ...

    @property
    def other_kv_heads(self) -> list[int]: ...

    def to_dict(self) -> dict[str, object]:
        """The fields as a new dict (field name -> value), in declaration order."""

    def keys(self) -> list[str]:
        """The field names, in declaration order."""

    def __getitem__(self, key: str) -> object:
        """The field named key (KeyError for other names)."""

    def __repr__(self) -> str:
        """Every field, as ClassName(field=value, ...)."""

class ImageCacheStats:
    """
    The image-embedding cache (Engine.image_cache_stats): bytes held, limit (0: disabled), cached views, and lookups served (hits) or encoded (misses).
    """

    @property
    def bytes(self) -> int: ...

    @property
    def limit(self) -> int: ...

    @property
    def entries(self) -> int: ...

    @property
    def hits(self) -> int: ...

    @property
    def misses(self) -> int: ...

    def to_dict(self) -> dict[str, object]:
        """The fields as a new dict (field name -> value), in declaration order."""

    def keys(self) -> list[str]:
        """The field names, in declaration order."""

    def __getitem__(self, key: str) -> object:
        """The field named key (KeyError for other names)."""

    def __repr__(self) -> str:
        """Every field, as ClassName(field=value, ...)."""

class SparseOptions:
    """
    The CoRe-sparse KV cache (docs/architecture.md §6): the core_kv_heads, (layer, KV head) pairs, keep every token; visual_keep: 'snapkv', 'first' or 'last'.
    """

    def __init__(self, *, core_kv_heads: Sequence[tuple[int, int]], sink: int = 4, visual_budget: int = 0, visual_keep: str = 'snapkv') -> None:
        """
        The other KV heads keep the first sink tokens, the text and visual_budget visual tokens per image (the engine validates the options).
        """

    @property
    def core_kv_heads(self) -> list[tuple[int, int]]: ...

    @property
    def sink(self) -> int: ...

    @property
    def visual_budget(self) -> int: ...

    @property
    def visual_keep(self) -> str: ...

    def to_dict(self) -> dict[str, object]:
        """The fields as a new dict (field name -> value), in declaration order."""

    def keys(self) -> list[str]:
        """The field names, in declaration order."""

    def __getitem__(self, key: str) -> object:
        """The field named key (KeyError for other names)."""

    def __repr__(self) -> str:
        """Every field, as ClassName(field=value, ...)."""

class GenerateOptions:
    """
    Sampling and stopping for Engine.generate*: temperature 0 = greedy, top_k 0 = all tokens, stop_at_eog = stop at the model's end-of-generation tokens.
    """

    def __init__(self, *, max_tokens: int = 64, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0, repeat_penalty: float = 1.0, repeat_last_n: int = 64, seed: int = 0, stop_at_eog: bool = True) -> None:
        """Generation options; every argument is a keyword."""

    @property
    def max_tokens(self) -> int: ...

    @property
    def temperature(self) -> float: ...

    @property
    def top_k(self) -> int: ...

    @property
    def top_p(self) -> float: ...

    @property
    def min_p(self) -> float: ...

    @property
    def repeat_penalty(self) -> float: ...

    @property
    def repeat_last_n(self) -> int: ...

    @property
    def seed(self) -> int: ...

    @property
    def stop_at_eog(self) -> bool: ...

    def to_dict(self) -> dict[str, object]:
        """The fields as a new dict (field name -> value), in declaration order."""

    def keys(self) -> list[str]:
        """The field names, in declaration order."""

    def __getitem__(self, key: str) -> object:
        """The field named key (KeyError for other names)."""

    def __repr__(self) -> str:
        """Every field, as ClassName(field=value, ...)."""

class Video:
    """
    A video clip for a multimodal prompt: (T, H, W, 3) uint8 frames taken at timestamps (seconds) by a sampler running at fps.
    """

    def __init__(self, frames: Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None, None), order='C', device='cpu', writable=False)], timestamps: Sequence[float], fps: float) -> None: ...

    @property
    def n_frames(self) -> int: ...

    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...

    @property
    def fps(self) -> float: ...

    @property
    def timestamps(self) -> list[float]: ...

class MultimodalTokens:
    """A prompt with images as token ids (Engine.tokenize_images)."""

    @property
    def ids(self) -> Annotated[NDArray[numpy.int32], dict(shape=(None,))]:
        """int32 [n_tokens]: the image placeholder id at the visual positions."""

    @property
    def visual_positions(self) -> Annotated[NDArray[numpy.int32], dict(shape=(None,))]:
        """int32 [n_visual]: indices into ids, in context order."""

    @property
    def rope_positions(self) -> Annotated[NDArray[numpy.int32], dict(shape=(None, None))]:
        """
        int32 [3, n_tokens]: the (t, h, w) M-RoPE positions of every token (Qwen-VL); [0, n_tokens] otherwise.
        """

    def to_dict(self) -> dict[str, object]:
        """The fields as a new dict (field name -> value), in declaration order."""

    def keys(self) -> list[str]:
        """The field names, in declaration order."""

    def __getitem__(self, key: str) -> object:
        """The field named key (KeyError for other names)."""

    def __repr__(self) -> str:
        """Every field, as ClassName(field=value, ...)."""

class AttentionTaps:
    """
    Attention probabilities read by the taps (docs/architecture.md §4) for the selected layers and query positions (ascending), n_kv keys (tokens in the context), n_regions relevance regions (0: none asked).
    """

    @property
    def layers(self) -> list[int]: ...

    @property
    def positions(self) -> list[int]: ...

    @property
    def n_head(self) -> int: ...

    @property
    def n_kv(self) -> int: ...

    @property
    def n_regions(self) -> int: ...

    @property
    def rows(self) -> Annotated[NDArray[numpy.float32], dict(shape=(None, None, None, None))] | None:
        """
        float32 [n_layer, n_head, n_pos, n_kv] full rows, or None unless asked.
        """

    @property
    def masses(self) -> Annotated[NDArray[numpy.float32], dict(shape=(None, None, None, None))] | None:
        """
        float32 [n_layer, n_head, n_pos, n_regions] masses on the relevance regions, or None.
        """

    def to_dict(self) -> dict[str, object]:
        """The fields as a new dict (field name -> value), in declaration order."""

    def keys(self) -> list[str]:
        """The field names, in declaration order."""

    def __getitem__(self, key: str) -> object:
        """The field named key (KeyError for other names)."""

    def __repr__(self) -> str:
        """Every field, as ClassName(field=value, ...)."""

class Tokenizer:
    """A GGUF file's tokenizer (ids match llama.cpp's)."""

    @staticmethod
    def from_file(path: str) -> Tokenizer:
        """The tokenizer of any GGUF file (vocabulary-only files included)."""

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """
        Token ids of text; add_special adds BOS/EOS as the file says, parse_special maps special-token texts.
        """

    def detokenize(self, ids: Sequence[int], remove_special: bool = False, unparse_special: bool = True) -> bytes:
        """The UTF-8 bytes of ids (may end in a partial character)."""

    def token_to_piece(self, id: int, unparse_special: bool = True) -> bytes:
        """Raw bytes one token contributes to the text."""

    def token_text(self, id: int) -> str:
        """The vocabulary entry of a token."""

    def find(self, text: str) -> int:
        """Id of the vocabulary entry spelled exactly text, or -1."""

    def is_eog(self, id: int) -> bool:
        """Whether id ends generation."""

    def is_control(self, id: int) -> bool:
        """Whether id is a control token."""

    @property
    def n_tokens(self) -> int:
        """Tokens in the vocabulary."""

    @property
    def bos(self) -> int:
        """Beginning-of-sequence id, -1 when none."""

    @property
    def eos(self) -> int:
        """End-of-sequence id, -1 when none."""

    @property
    def type(self) -> str:
        """tokenizer.ggml.model."""

    @property
    def pre(self) -> str:
        """tokenizer.ggml.pre."""

    @property
    def eog_tokens(self) -> list[int]:
        """End-of-generation ids."""

class Engine:
    """A language model (and optional vision projector) loaded in ggml."""

    def __init__(self, model: str, *, mmproj: str = '', n_threads: int = 0, n_ctx: int = 4096, backend: str = 'auto', kv_type: str = 'auto', n_batch: int = 512, sparse: SparseOptions | None = None) -> None:
        """
        Loads the weights (mmproj '' = text only; n_threads 0 = automatic; sparse: start CoRe-sparse).
        """

    def set_sparse(self, options: SparseOptions | None) -> None:
        """
        Switches to the CoRe-sparse cache (options) or back to the dense one (None).
        """

    @property
    def sparse_options(self) -> SparseOptions | None:
        """A copy of the CoRe-sparse options in force, None when dense."""

    def kv_stats(self) -> KVStats:
        """What the KV cache holds now."""

    @property
    def text_info(self) -> TextInfo:
        """Facts about the model file."""

    @property
    def vision_info(self) -> VisionInfo | None:
        """Facts about the mmproj file, None without one."""

    @property
    def backend(self) -> str:
        """The backend in use ('cpu', 'cuda', 'metal')."""

    @property
    def placement(self) -> dict[str, dict[str, int]]:
        """
        Per part ('text', 'vision'): graph nodes each ggml backend ran in the last graph.
        """

    @property
    def cpu_fallback_ops(self) -> dict[str, list[str]]:
        """
        Per part: the ggml ops that ran on the CPU because the GPU backend lacks them.
        """

    @property
    def n_threads(self) -> int:
        """CPU threads."""

    @property
    def n_ctx(self) -> int:
        """Context window in tokens."""

    @property
    def weight_bytes(self) -> int:
        """Text + vision weights held in backend memory."""

    @property
    def kv_bytes(self) -> int:
        """Bytes of the KV cache."""

    @property
    def n_past(self) -> int:
        """Tokens in the current sequence."""

    @property
    def eog_tokens(self) -> list[int]:
        """End-of-generation ids of the model's tokenizer."""

    def logits(self, tokens: Sequence[int], *, all_positions: bool = False) -> NDArray[numpy.float32]:
        """
        Runs tokens from an empty context: float32 logits [n_vocab], or [n_tokens, n_vocab] for all positions.
        """

    def logits_at(self, tokens: Sequence[int], rows: Sequence[int]) -> NDArray[numpy.float32]:
        """
        Runs tokens from an empty context: float32 logits [len(rows), n_vocab] of the input positions rows (ascending, distinct); only those rows are copied out.
        """

    def logits_images(self, prompt: str, images: Sequence[Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None), order='C', device='cpu', writable=False)] | Video], *, all_positions: bool = False, marker: str = '<__media__>') -> NDArray[numpy.float32]:
        """
        logits() of a prompt with images (one per marker; without markers they go first).
        """

    def logits_at_images(self, prompt: str, images: Sequence[Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None), order='C', device='cpu', writable=False)] | Video], rows: Sequence[int], *, marker: str = '<__media__>') -> NDArray[numpy.float32]:
        """
        logits_at() of a prompt with images (rows are positions of the expanded prompt).
        """

    def append(self, tokens: Sequence[int], *, all_positions: bool = False) -> NDArray[numpy.float32]:
        """
        Continues the current sequence with tokens; float32 logits [n_vocab] of the last one, or [n_tokens, n_vocab] of every appended one.
        """

    def append_branches(self, branches: Sequence[tuple[int, Sequence[int]]]) -> NDArray[numpy.float32]:
        """
        Continuations (prefix length, tokens) of the current sequence in one forward pass, each seeing only its prefix and itself; float32 logits [total tokens, n_vocab], branches in order. The cache keeps its length.
        """

    def truncate(self, n: int) -> None:
        """
        Rolls the current sequence back to its first n positions (after the prompt's images); the next append continues at n.
        """

    def generate(self, prompt: Sequence[int], *, options: GenerateOptions, on_token: Callable[[int], bool] | None = None) -> list[int]:
        """
        Generated ids after prompt; on_token(id) -> bool is called per token (False stops).
        """

    def generate_images(self, prompt: str, images: Sequence[Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None), order='C', device='cpu', writable=False)] | Video], *, options: GenerateOptions, on_token: Callable[[int], bool] | None = None, marker: str = '<__media__>') -> list[int]:
        """generate() after a prompt with images."""

    def attention(self, tokens: Sequence[int], *, positions: Sequence[int], layers: Sequence[int], full_rows: bool = False, relevance: Annotated[NDArray[numpy.float32], dict(shape=(None, None), order='C', device='cpu', writable=False)] | None = None) -> AttentionTaps:
        """
        Attention taps on query positions (negative: from the end) of layers (empty: all); full_rows returns the rows, relevance (float32 [n_regions, n_tokens]) their masses per region.
        """

    def attention_images(self, prompt: str, images: Sequence[Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None), order='C', device='cpu', writable=False)] | Video], *, positions: Sequence[int], layers: Sequence[int], full_rows: bool = False, relevance: Annotated[NDArray[numpy.float32], dict(shape=(None, None), order='C', device='cpu', writable=False)] | None = None, marker: str = '<__media__>') -> AttentionTaps:
        """
        attention() for a prompt with images (relevance over the expanded tokens).
        """

    def tokenize_images(self, prompt: str, images: Sequence[Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None), order='C', device='cpu', writable=False)] | Video], *, marker: str = '<__media__>') -> MultimodalTokens:
        """
        The token ids of a prompt with its images expanded, and the visual positions.
        """

    def encode_image(self, image: Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None), order='C', device='cpu', writable=False)]) -> Annotated[NDArray[numpy.float32], dict(shape=(None, None))]:
        """
        The projector output for one (H, W, 3) uint8 image: float32 [n_visual, n_embd], or [n_visual, n_embd * (1 + n_deepstack)] with the DeepStack slices after the main embedding.
        """

    def preprocess_image(self, image: Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None), order='C', device='cpu', writable=False)]) -> list[Annotated[NDArray[numpy.float32], dict(shape=(None, None, None))]]:
        """The encoder inputs of an image: one float32 [3, H, W] array per view."""

    def visual_token_boxes(self, image: Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None), order='C', device='cpu', writable=False)] | Video) -> Annotated[NDArray[numpy.float32], dict(shape=(None, None))]:
        """
        float32 [n_visual, 4]: the (x0, y0, x1, y1) pixels of the image (a Video: of its frames) each visual token covers.
        """

    def visual_token_frames(self, image: Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None), order='C', device='cpu', writable=False)] | Video) -> Annotated[NDArray[numpy.int32], dict(shape=(None, None))]:
        """
        int32 [n_visual, 2]: the first and last sampled frame each visual token of a Video shows, in the order of visual_token_boxes ((-1, -1) for an image's tokens).
        """

    def set_image_cache_limit(self, bytes: int) -> None:
        """Limits the image-embedding cache (0 disables it)."""

    def clear_image_cache(self) -> None:
        """Empties the image-embedding cache."""

    def set_progress(self, callback: Callable[[str, int, int], None] | None) -> None:
        """
        callback(phase, done, total) after each vision pass ('encode', images) and prefill forward pass ('prefill', input positions) of a prompt; None removes it.
        """

    def image_cache_stats(self) -> ImageCacheStats:
        """The image-embedding cache's counters."""

    @property
    def tokenizer(self) -> Tokenizer | None:
        """The model's tokenizer, None when the file carries none."""

    def set_head_interventions(self, interventions: Sequence[tuple[int, int, str, Sequence[float]]], *, knockout_keys: Sequence[int] = [], knockout_from: Sequence[int] = [], knockout_until: Sequence[int] = [], knockout_queries: str = 'after') -> None:
        """
        Replaces the head interventions, (layer, head, 'zero' | 'mean' | 'knockout', mean), of every later call.
        """

    def set_deltanet_ablation(self, value_heads: Sequence[tuple[int, int]]) -> None:
        """
        Replaces the zeroed Gated DeltaNet value heads, (layer, value head) in transformers' numbering, of every later call (hybrid models; [] = none). Independent of set_head_interventions.
        """

    def head_output_sums(self, tokens: Sequence[int]) -> tuple[Annotated[NDArray[numpy.float64], dict(shape=(None, None))], int]:
        """
        Σ over the positions of each head's output: (float64 [n_layer, n_head * head_dim], n).
        """

    def head_output_sums_images(self, prompt: str, images: Sequence[Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None), order='C', device='cpu', writable=False)] | Video], *, marker: str = '<__media__>') -> tuple[Annotated[NDArray[numpy.float64], dict(shape=(None, None))], int]:
        """head_output_sums() for a prompt with images."""

    def metadata_string(self, key: str) -> str | None:
        """A string metadata value of the model file, or None."""

def inspect_model(path: str) -> TextInfo:
    """
    Validate a language-model GGUF without loading weights; returns its facts.
    """

def inspect_mmproj(path: str) -> VisionInfo:
    """Validate an mmproj GGUF without loading weights; returns its facts."""

def gguf_summary(path: str) -> GgufSummary:
    """
    The header of any GGUF file: the tensor-data region and every tensor's type and shape.
    """

def largest_vision_input(path: str) -> VisionInput:
    """
    The largest single encoder input (pixels, patches) an mmproj's preprocessing makes.
    """

def compiled_backends() -> list[str]:
    """Backends compiled into this build."""

def system_info() -> dict:
    """
    How ggml was built (native or portable), the CPU variant and features it runs, its backends and devices.
    """

def resize_image(image: Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None), order='C', device='cpu', writable=False)], width: int, height: int, filter: str) -> Annotated[NDArray[numpy.uint8], dict(shape=(None, None, None))]:
    """Pillow-exact resampling of an (H, W, 3) uint8 image (for tests)."""

def default_thread_count() -> int:
    """The default n_threads (physical cores)."""
