"""The Engine: a GGUF language model (and optional mmproj vision projector) loaded in ggml."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from corehead import _core
from corehead._paths import as_path, check_int, check_real, check_text
from corehead.images import load_images
from corehead.memory import memory_estimate as _memory_estimate
from corehead.tokenizer import TextStream, Tokenizer
from corehead.videos import load_videos

if TYPE_CHECKING:
    import numpy.typing as npt

    from corehead.attention_export import AttentionRecord
    from corehead.probes import Probe
    from corehead.ram import HeadRanking


class Engine:
    """A quantized (multimodal) LLM loaded from GGUF files.

    Args:
        model: path to the language-model GGUF (the file you would give llama.cpp's ``-m``);
            None loads the toy VLM embedded in the package (with its mmproj).
        mmproj: path to the vision projector GGUF (llama.cpp's ``--mmproj``), or None.
        n_threads: CPU threads; None picks the number of physical cores.
        n_ctx: context window in tokens.
        backend: "auto" (a GPU when compiled in, else CPU), "cpu", "cuda" or "metal".
        kv_type: KV cache type, "auto" (f32 for f32 model files, else f16), "f16" or "f32".
        n_batch: prompt tokens per forward pass during prefill.
        core_heads: start in the CoRe-sparse mode (:mod:`corehead.sparse`): a head file (the
            HeadRanking JSON of ``corehead rank``, its top ``core_fraction``; or a HeadSet JSON),
            a HeadSet, or (layer, head) pairs. None = the dense cache.
        visual_budget, sink: visual tokens per image each non-CoRe KV head keeps, and leading
            tokens every head keeps (CoRe-sparse mode only).
        visual_keep: how those visual_budget tokens are picked: "snapkv" (the attention of the
            last prompt rows), "first" or "last" (positional baselines).

    Interventions: :meth:`ablated` (zero / mean / knockout of attention heads), :meth:`knockout`
    (attention edges), :meth:`sparse` (CoRe-sparse cache) and, on hybrid models (Qwen3.5),
    :meth:`ablated_deltanet` (zeroing Gated DeltaNet value heads, which are not attention heads).

    Weights stay in their stored (quantized) type. Use as a context manager or call
    :meth:`close` to free memory right away; garbage collection frees it too.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        mmproj: str | os.PathLike | None = None,
        n_threads: int | None = None,
        n_ctx: int = 4096,
        backend: str = "auto",
        kv_type: str = "auto",
        n_batch: int = 512,
        core_heads=None,
        visual_budget: int = 0,
        sink: int = 4,
        core_fraction: float = 0.05,
        visual_keep: str = "snapkv",
    ) -> None:
        if model is None:  # the toy VLM embedded in the package (with its mmproj)
            from corehead.models import default_model

            model, default_mmproj = default_model()
            mmproj = default_mmproj if mmproj is None else mmproj
        model_path = as_path(model, "model")
        mmproj_path = as_path(mmproj, "mmproj") if mmproj is not None else ""
        if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
            raise ValueError(f"n_threads must be a positive int or None, got {n_threads!r}")
        if n_threads is not None:
            check_int(n_threads, "n_threads", 1, 1024)
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int):
            raise TypeError(f"n_ctx must be an int, got {type(n_ctx).__name__}")
        for name, value in (("kv_type", kv_type), ("backend", backend)):
            if not isinstance(value, str):
                raise TypeError(f"{name} must be a str, got {type(value).__name__}")
        if isinstance(n_batch, bool) or not isinstance(n_batch, int):
            raise TypeError(f"n_batch must be an int, got {type(n_batch).__name__}")
        check_int(n_ctx, "n_ctx", 16, 1 << 24)
        check_int(n_batch, "n_batch", 1, 65536)
        sparse_options = None
        if core_heads is not None:  # validated against the model file before any weights load
            from corehead import sparse

            visual_budget, sink = sparse.check_options(visual_budget, sink, visual_keep)
            core_kv = sparse.core_kv_heads(core_heads, _core.inspect_model(model_path).to_dict(), core_fraction)
            sparse_options = _core.SparseOptions(core_kv_heads=core_kv, sink=sink, visual_budget=visual_budget,
                                                 visual_keep=visual_keep)
        native = _core.Engine(model_path, mmproj=mmproj_path, n_threads=n_threads or 0, n_ctx=n_ctx, backend=backend,
                              kv_type=kv_type, n_batch=n_batch, sparse=sparse_options)
        self._interventions: tuple[list, list, list, list] = ([], [], [], [])
        self._knockout_queries = "after"
        self._deltanet_ablation: list[tuple[int, int]] = []  # ablated_deltanet
        self._head_mean_cache: dict = {}  # head_means(..., cached=True)
        # One call at a time per Engine (see _Serialized); typed as the native engine it forwards to.
        self._core: _core.Engine | None = cast(_core.Engine, _Serialized(native))
        native_tok = self._core.tokenizer
        self._tokenizer = Tokenizer(_native=native_tok) if native_tok is not None else None

    @classmethod
    def toy(cls, **kwargs: Any) -> Engine:
        """The trained toy VLM embedded in the package (what ``Engine()`` loads); its probes come
        from :func:`corehead.toy.probes`."""
        return cls(None, None, **kwargs)

    @classmethod
    def from_pretrained(cls, repo_id: str, filename: str | None = None, mmproj=None, revision: str | None = None,
                        quant: str | None = "Q4_K_M", cache_dir: str | os.PathLike | None = None,
                        **kwargs: Any) -> Engine:
        """Load a GGUF repo of the Hugging Face Hub (needs ``pip install 'corehead[hub]'``).

        filename: the model file (None: the one named with `quant`; ``quant=None`` picks
        automatically). mmproj: None pairs the repo's ``mmproj*.gguf`` (same quant, else F16/Q8_0),
        False loads none, a str names the file. Uses the normal Hugging Face cache and honours
        ``HF_HUB_OFFLINE``; see :mod:`corehead.hub`. Other kwargs go to :class:`Engine`."""
        from corehead import hub

        model, mmproj_path = hub.resolve(repo_id, filename=filename, mmproj=mmproj, revision=revision, quant=quant,
                                         cache_dir=cache_dir)
        return cls(model, mmproj_path, **kwargs)

    #: ``Engine.memory_estimate(model, mmproj=None, n_ctx=4096, kv_type="auto", n_batch=512)``: the
    #: bytes an Engine will hold (weights, KV cache, compute), from the files, before loading.
    memory_estimate = staticmethod(_memory_estimate)

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Free the weights and backends now. The engine is unusable afterwards."""
        self._core = None

    @property
    def closed(self) -> bool:
        return self._core is None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _native(self) -> _core.Engine:
        if self._core is None:
            raise RuntimeError("this Engine is closed")
        return self._core

    # -- facts ---------------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        """Architecture and sizes: arch, n_layer, n_head, n_head_kv, n_embd, n_vocab, n_ctx_train,
        file_type, …, plus ``vision`` (a dict for the mmproj, or None) and runtime settings."""
        core = self._native()
        info: dict[str, Any] = core.text_info.to_dict()  # every field of the native TextInfo
        vision = core.vision_info
        info["vision"] = vision.to_dict() if vision is not None else None
        info.update(backend=core.backend, n_threads=core.n_threads, n_ctx=core.n_ctx, weight_bytes=core.weight_bytes)
        # Which ggml backend ran which part (nodes of the last graph per part) and the ops that fell
        # back to the CPU on a GPU backend; filled once a part has run.
        info.update(placement=core.placement, cpu_fallback_ops=core.cpu_fallback_ops)
        return info

    # -- tokens ------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer (from the GGUF's tokenizer.ggml.* metadata)."""
        self._native()
        if self._tokenizer is None:
            raise ValueError("this model file carries no tokenizer; pass token ids instead of text")
        return self._tokenizer

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return self.tokenizer.tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, ids: Sequence[int], remove_special: bool = False) -> str:
        return self.tokenizer.detokenize(ids, remove_special=remove_special)

    # -- text --------------------------------------------------------------------------------
    def token_ids(self, prompt: str | Sequence[int]) -> list[int]:
        """A prompt as token ids: a list of ints is taken as is (checked), a str is tokenized."""
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("the prompt is empty")
            return self.tokenize(prompt)
        if isinstance(prompt, np.ndarray):
            prompt = prompt.tolist()
        if not isinstance(prompt, Sequence) or isinstance(prompt, (bytes, bytearray)):
            raise TypeError(f"prompt must be a str or a sequence of token ids, got {type(prompt).__name__}")
        ids = []
        n_vocab = self._native().text_info.n_vocab
        for t in prompt:
            if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
                raise TypeError(f"token ids must be ints, got {type(t).__name__}")
            if not 0 <= int(t) < n_vocab:
                raise ValueError(f"token id {int(t)} is out of range [0, {n_vocab})")
            ids.append(int(t))
        if not ids:
            raise ValueError("the prompt is empty")
        return ids

    # -- images --------------------------------------------------------------------------------
    #: The text that marks where an image goes in a prompt (llama.cpp's mtmd marker). Each marker
    #: is replaced by the model's image token layout; without markers the images go first.
    image_marker: str = "<__media__>"

    def load_images(self, images) -> list[np.ndarray]:
        """`images` (paths, PIL images or arrays) loaded as (H, W, 3) uint8 arrays, [] when there
        are none; a ValueError when this engine has no vision projector."""
        if images is None or (isinstance(images, (list, tuple)) and not images):
            return []
        if self._native().vision_info is None:
            raise ValueError("this engine has no vision projector: load the model with its mmproj "
                             "(Engine(model, mmproj=...)) to pass images")
        if isinstance(images, (list, tuple)) and any(isinstance(i, _core.Video) for i in images):
            # A media list from _media (images and native clips in prompt order) passes through.
            return [i if isinstance(i, _core.Video) else load_images([i])[0] for i in images]
        return load_images(images)

    #: The text that marks where a video goes in a prompt; without any image or video marker the
    #: images go first, then the videos.
    video_marker: str = "<__video__>"

    def load_videos(self, videos, fps: float | None = None, max_frames: int | None = None) -> list[_core.Video]:
        """`videos` (paths, (T, H, W, 3) uint8 arrays or lists of frames) as native clips, sampled at
        `fps` frames per second, at most `max_frames` each (see :mod:`corehead.videos`); [] when
        there are none; a ValueError when this engine has no vision projector."""
        if videos is None or (isinstance(videos, (list, tuple)) and not videos):
            from corehead.videos import check_video_options

            check_video_options(fps, max_frames)
            return []
        if self._native().vision_info is None:
            raise ValueError("this engine has no vision projector: load the model with its mmproj "
                             "(Engine(model, mmproj=...)) to pass videos")
        return load_videos(videos, fps=fps, max_frames=max_frames)

    def _media(self, prompt, images, videos=(), fps: float | None = None,
               max_frames: int | None = None) -> tuple[str, list]:
        """The prompt with one image marker per media item and the items in prompt order (images
        and videos); ([], prompt) without media. Video markers become image markers here: the
        native engine takes both kinds through one marker, in order."""
        imgs = self.load_images(images)
        vids = self.load_videos(videos, fps=fps, max_frames=max_frames)
        if not vids:
            return (self._mm_prompt(prompt) if imgs else prompt), list(imgs)
        text = self._mm_prompt(prompt)
        check_text(self.video_marker, "video_marker")
        im, vm = self.image_marker, self.video_marker
        n_im, n_vm = text.count(im), text.count(vm)
        if n_im == 0 and n_vm == 0:
            return im * (len(imgs) + len(vids)) + text, [*imgs, *vids]
        if n_im != len(imgs) or n_vm != len(vids):
            raise ValueError(f"the prompt has {n_im} image marker(s) ({im!r}) and {n_vm} video marker(s) ({vm!r}) "
                             f"for {len(imgs)} image(s) and {len(vids)} video(s): use one marker per image and "
                             "per video, or none at all (images first, then videos)")
        media: list = []
        out, at, i_img, i_vid = [], 0, 0, 0
        while True:
            a, b = text.find(im, at), text.find(vm, at)
            if a < 0 and b < 0:
                break
            if b < 0 or 0 <= a < b:
                out.append(text[at:a] + im)
                media.append(imgs[i_img])
                i_img, at = i_img + 1, a + len(im)
            else:
                out.append(text[at:b] + im)
                media.append(vids[i_vid])
                i_vid, at = i_vid + 1, b + len(vm)
        out.append(text[at:])
        return "".join(out), media

    def _mm_prompt(self, prompt) -> str:
        if not isinstance(prompt, str):
            raise TypeError("with images the prompt must be text (with an image marker "
                            f"{self.image_marker!r} per image, or none to put the images first)")
        check_text(self.image_marker, "image_marker")
        return check_text(prompt, "prompt")

    def multimodal_tokens(self, prompt: str, images=(), videos=(), fps: float | None = None,
                          max_frames: int | None = None) -> np.ndarray:
        """The token ids of `prompt` with its images and videos expanded as the model's processor
        does (the image / video placeholder id at the visual positions)."""
        return self.prepare(prompt, images, videos=videos, fps=fps, max_frames=max_frames)[0]

    def visual_token_positions(self, prompt: str, images=(), videos=(), fps: float | None = None,
                               max_frames: int | None = None) -> np.ndarray:
        """Context positions (int32) of the visual tokens of `prompt` with `images` / `videos`, in order."""
        return self.prepare(prompt, images, videos=videos, fps=fps, max_frames=max_frames)[1]

    def prepare(self, prompt: str, images=(), videos=(), fps: float | None = None,
                max_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The layout of a multimodal prompt, from one preprocessing pass: (token ids with the
        image / video placeholder id at the visual positions, the visual positions)."""
        text, media = self._media(prompt, images, videos, fps, max_frames)
        if not media:
            raise ValueError("prepare() needs at least one image or video")
        t = self._native().tokenize_images(text, media, marker=self.image_marker)
        return t.ids, t.visual_positions

    def rope_positions(self, prompt: str, images=(), videos=(), fps: float | None = None,
                       max_frames: int | None = None) -> np.ndarray:
        """The (t, h, w) M-RoPE positions (int32 ``[3, n_tokens]``) of a multimodal prompt, as
        transformers' get_rope_index gives them (Qwen-VL); a ValueError for models without M-RoPE."""
        text, media = self._media(prompt, images, videos, fps, max_frames)
        if not media:
            raise ValueError("rope_positions() needs at least one image or video")
        pos = self._native().tokenize_images(text, media, marker=self.image_marker).rope_positions
        if pos.shape[0] == 0:
            raise ValueError("this model has no M-RoPE positions: a token's position is its index")
        return pos

    def visual_token_boxes(self, image) -> np.ndarray:
        """For every visual token of `image`, in context order (tiles row-major, then the global
        view where the model has one), the rectangle of the original image it covers:
        float32 ``[n_visual, 4]`` as (x0, y0, x1, y1) in pixels."""
        (img,) = self.load_images([image])
        return self._native().visual_token_boxes(img)

    def visual_token_frames(self, video, fps: float | None = None, max_frames: int | None = None) -> np.ndarray:
        """For every visual token of `video` (a path, a (T, H, W, 3) uint8 array, a list of frames
        or a clip from :meth:`load_videos`; sampled at `fps`, at most `max_frames`), in the order of
        :meth:`visual_token_boxes` of the clip, the first and last sampled frame it shows: int32
        ``[n_visual, 2]``. Qwen-VL's tokens cover a temporal patch of two frames (2g, 2g + 1; an odd
        clip's last patch shows its last frame twice: (T - 1, T - 1)); SmolVLM and InternVL give
        every frame its own tokens (f0 == f1). Frame k is the clip's k-th sampled frame, taken at
        ``clip.timestamps[k]`` seconds (:meth:`visual_token_times`)."""
        return self._native().visual_token_frames(self._one_clip(video, fps, max_frames))

    def visual_token_times(self, video, fps: float | None = None, max_frames: int | None = None) -> np.ndarray:
        """float64 ``[n_visual, 2]``: the timestamps (seconds) of the first and last frame each visual
        token of `video` shows (:meth:`visual_token_frames` through the clip's timestamps)."""
        clip = self._one_clip(video, fps, max_frames)
        frames = self._native().visual_token_frames(clip)
        return np.asarray(clip.timestamps, dtype=np.float64)[frames]

    def _one_clip(self, video, fps: float | None, max_frames: int | None) -> _core.Video:
        clips = self.load_videos(video, fps=fps, max_frames=max_frames)
        if len(clips) != 1:
            raise ValueError(f"give one video (a path, a (T, H, W, 3) uint8 array, a list of frames or a clip), "
                             f"got {len(clips)}")
        return clips[0]

    def encode_image(self, image) -> np.ndarray:
        """The projector output for `image` (what replaces its visual tokens): ``[n_visual, n_embd]``; for
        DeepStack models (Qwen3-VL) ``[n_visual, n_embd * (1 + n_deepstack)]``, the main embedding first, then
        the slice added after each of the first ``n_deepstack`` text layers."""
        (img,) = self.load_images([image])
        return self._native().encode_image(img)

    @property
    def image_cache(self) -> dict[str, Any]:
        """The image-embedding cache: bytes, limit, entries, hits, misses. Projector outputs of
        recently seen images (LRU, 256 MiB by default) are reused, so evaluating many ablations
        over the same probes runs the vision encoder once per image."""
        return self._image_cache_core().image_cache_stats().to_dict()

    def set_image_cache(self, max_bytes: int) -> None:
        """Limit the image-embedding cache to `max_bytes` (0 disables it and frees it)."""
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
        self._image_cache_core().set_image_cache_limit(max_bytes)

    def clear_image_cache(self) -> None:
        """Forget every cached image embedding and the last preprocessed image (the engine keeps
        one, since scoring a probe tokenizes, boxes and encodes the same image in a row)."""
        self._image_cache_core().clear_image_cache()

    def _image_cache_core(self) -> _core.Engine:
        """The native engine, checked to have a vision projector (the image caches' owner)."""
        core = self._native()
        if core.vision_info is None:
            raise ValueError("this engine has no vision projector, hence no image cache")
        return core

    def preprocess_image(self, image) -> list[np.ndarray]:
        """The encoder inputs for `image` after resizing / cropping / tiling and normalization:
        one float32 ``[3, H, W]`` array per view (tiles, then the global view)."""
        (img,) = self.load_images([image])
        return self._native().preprocess_image(img)

    def logits(self, prompt: str | Sequence[int], images: Sequence[Any] = (),
               all_positions: bool = False, positions: Sequence[int] | None = None, videos: Sequence[Any] = (),
               fps: float | None = None, max_frames: int | None = None) -> npt.NDArray[np.float32]:
        """Next-token logits (float32): ``[n_vocab]`` for the last position, or
        ``[n_tokens, n_vocab]`` for every position when ``all_positions``, or
        ``[len(positions), n_vocab]`` for the given positions (negative values count from the end;
        rows in the order given) — only those rows are copied out of the forward pass.
        `videos` are sampled at `fps` (at most `max_frames` each), see :mod:`corehead.videos`."""
        mm_prompt, imgs = self._media(prompt, images, videos, fps, max_frames)
        if imgs:
            prompt = mm_prompt
        if positions is not None:
            if all_positions:
                raise ValueError("pass either all_positions=True or positions=, not both")
            want = _int_list(positions, "positions")
            n = len(self.multimodal_tokens(prompt, imgs)) if imgs else len(self.token_ids(prompt))
            for p in want:
                if not -n <= p < n:
                    raise ValueError(f"position {p} is out of range for a prompt of {n} tokens")
            rows = sorted({p % n for p in want})
            if imgs:
                out = self._native().logits_at_images(self._mm_prompt(prompt), imgs, rows, marker=self.image_marker)
            else:
                out = self._native().logits_at(self.token_ids(prompt), rows)
            index = {r: i for i, r in enumerate(rows)}
            return out[[index[p % n] for p in want]]
        if imgs:
            return self._native().logits_images(self._mm_prompt(prompt), imgs, all_positions=bool(all_positions),
                                                marker=self.image_marker)
        return self._native().logits(self.token_ids(prompt), all_positions=bool(all_positions))

    @property
    def n_past(self) -> int:
        """Positions in the current sequence (the last prompt run, plus what was appended)."""
        return int(self._native().n_past)

    def append(self, tokens: Sequence[int], all_positions: bool = False) -> npt.NDArray[np.float32]:
        """Continues the current sequence (the last prompt run) with `tokens`, reusing its KV cache:
        logits ``[n_vocab]`` of the last one, or ``[len(tokens), n_vocab]`` of each."""
        return self._native().append(self.token_ids(tokens), all_positions=bool(all_positions))

    def append_branches(self, branches: Sequence[tuple[int, Sequence[int]]]) -> list[npt.NDArray[np.float32]]:
        """Scores several continuations of the current sequence at once: each ``(prefix, tokens)``
        continues its first `prefix` positions (as after ``truncate(prefix)``) and sees only those
        and its own tokens. Returns per branch the logits ``[len(tokens), n_vocab]`` of each of its
        tokens, equal to ``truncate(prefix); append(tokens, all_positions=True)`` but computed in
        one forward pass per ``n_batch`` rows. The sequence keeps its length."""
        plan = []
        for b in branches:
            if not isinstance(b, (tuple, list)) or len(b) != 2:
                raise TypeError(f"each branch is a (prefix length, tokens) pair, got {b!r}")
            prefix, tokens = b
            if isinstance(prefix, bool) or not isinstance(prefix, (int, np.integer)):
                raise TypeError(f"a branch's prefix length must be an int, got {type(prefix).__name__}")
            plan.append((int(prefix), self.token_ids(tokens)))
        flat = self._native().append_branches(plan)
        return np.split(flat, np.cumsum([len(t) for _, t in plan])[:-1])

    def truncate(self, n: int) -> None:
        """Rolls the current sequence back to its first `n` positions (after the prompt's images):
        the next :meth:`append` continues at `n`, so continuations of one prompt are scored after a
        single prefill."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        self._native().truncate(int(n))

    def attention(self, prompt: str | Sequence[int], images: Sequence[Any] = (),
                  positions: Sequence[int] | None = None,
                  layers: Sequence[int] | None = None, videos: Sequence[Any] = (), fps: float | None = None,
                  max_frames: int | None = None) -> npt.NDArray[np.float32]:
        """Attention probabilities of query `positions` over all keys, per layer and head:
        float32 ``[n_layer, n_head, n_pos, n_kv]`` (``n_layer`` = len(layers) when given).

        positions default to the last prompt position; negative values count from the end.
        Computed on a side branch for the tapped rows only (the main path keeps flash
        attention), so the cost grows with the number of positions, not the prompt squared.
        Rows of the returned array follow the sorted, de-duplicated positions.
        """
        rows = self._taps(prompt, images, positions, layers, True, None, videos, fps, max_frames).rows
        assert rows is not None
        return rows

    def attention_export(self, item, heads, path: str | os.PathLike, images: Sequence[Any] = (),
                         positions: Sequence[int] | str | None = None,
                         include_images: bool = True) -> AttentionRecord:
        """Write the attention rows of `heads` ((layer, head) pairs, a HeadSet, or a HeadRanking =
        its top 5%) for `item` (a :class:`corehead.Probe`, or a prompt with `images`) to `path` as
        safetensors, with the token strings, visual spans, token boxes, image sizes and the probe's
        target box; readable without corehead (see :mod:`corehead.attention_export`). Query
        positions default to those that predict a probe's answer, else the last one; "text" = every
        position that is not a visual token. Returns the
        :class:`~corehead.attention_export.AttentionRecord` written."""
        from corehead.attention_export import attention_export

        return attention_export(self, item, heads, path, images=images, positions=positions,
                                include_images=include_images)

    def attention_masses(self, prompt: str | Sequence[int], relevance: np.ndarray,
                         positions: Sequence[int] | None = None, layers: Sequence[int] | None = None,
                         images: Sequence[Any] = (), videos: Sequence[Any] = (), fps: float | None = None,
                         max_frames: int | None = None) -> npt.NDArray[np.float32]:
        """Attention mass of query `positions` on weighted key sets, reduced on the graph:
        ``relevance`` is ``[n_regions, n_tokens]`` (weights per context position, images
        expanded); returns ``[n_layer, n_head, n_pos, n_regions]`` = Σ_j relevance[r, j] · A[l, h][pos, j]."""
        w = np.ascontiguousarray(relevance, dtype=np.float32)
        if w.ndim != 2:
            raise ValueError(f"relevance must have shape [n_regions, n_tokens], got {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError("relevance has non-finite values")
        masses = self._taps(prompt, images, positions, layers, False, w, videos, fps, max_frames).masses
        assert masses is not None
        return masses

    def _taps(self, prompt, images, positions, layers, full_rows: bool,
              relevance: np.ndarray | None, videos=(), fps: float | None = None,
              max_frames: int | None = None) -> _core.AttentionTaps:
        pos, lay = _int_list(positions, "positions"), _int_list(layers, "layers")
        mm_prompt, imgs = self._media(prompt, images, videos, fps, max_frames)
        if imgs:
            # The expanded length is known only after preprocessing: the native call checks
            # that relevance holds n_regions x n_tokens values.
            return self._native().attention_images(mm_prompt, imgs, positions=pos, layers=lay,
                                                   full_rows=full_rows, relevance=relevance,
                                                   marker=self.image_marker)
        ids = self.token_ids(prompt)
        if relevance is not None and relevance.shape[1] != len(ids):
            raise ValueError(f"relevance must have shape [n_regions, {len(ids)}], got {relevance.shape}")
        return self._native().attention(ids, positions=pos, layers=lay, full_rows=full_rows, relevance=relevance)

    # -- CoRe heads -----------------------------------------------------------------------------
    def rank_heads(self, probes: Sequence[Probe] | Probe, query: str = "answer", only_correct: bool = False,
                   progress: bool = True, score: Any = "ram") -> HeadRanking:
        """Score every head over `probes`: Retrieval Attention Mass, SparseMM's visual score and the
        retrieval-head copy score in one tapped pass; `score` ("ram", "visual", "retrieval" or a
        callable) orders the ranking. See :mod:`corehead.ram` for the exact definitions."""
        from corehead import ram

        return ram.rank_heads(self, probes, query=query, only_correct=only_correct, progress=progress, score=score)

    # -- CoRe-sparse cache ----------------------------------------------------------------------
    def sparse(self, heads, visual_budget: int = 0, sink: int = 4, core_fraction: float = 0.05,
               visual_keep: str = "snapkv"):
        """Context manager: the block runs on the CoRe-sparse KV cache for `heads` (see
        :mod:`corehead.sparse`); the previous cache mode is restored afterwards."""
        from corehead import sparse

        return sparse.sparse(self, heads, visual_budget=visual_budget, sink=sink, core_fraction=core_fraction,
                             visual_keep=visual_keep)

    def kv_stats(self) -> dict[str, Any]:
        """Bytes the KV cache holds now, per group: ``full`` = the CoRe KV heads (every KV head when
        dense), every token; ``compact`` = the other KV heads, the tokens they keep. ``bytes`` counts
        the tokens in use (K and V), ``allocated_bytes`` the backend buffers."""
        s = self._native().kv_stats()
        full = {"kv_heads": int(sum(s.core_kv_heads)), "tokens": s.n_tokens, "bytes": s.full_bytes,
                "allocated_bytes": s.full_allocated}
        compact = {"kv_heads": int(sum(s.other_kv_heads)), "tokens": s.compact_tokens, "bytes": s.compact_bytes,
                   "allocated_bytes": s.compact_allocated}
        return {"mode": "sparse" if s.sparse else "dense", "tokens": s.n_tokens,
                "bytes": s.full_bytes + s.compact_bytes, "allocated_bytes": s.full_allocated + s.compact_allocated,
                "groups": {"full": full, "compact": compact},
                "per_layer": {"core_kv_heads": list(s.core_kv_heads), "other_kv_heads": list(s.other_kv_heads)}}

    @contextmanager
    def kv_mode(self, core_kv_heads=None, sink: int = 4, visual_budget: int = 0, visual_keep: str = "snapkv"):
        """Context manager, low level: the block runs on the CoRe-sparse KV cache whose CoRe KV heads
        are `core_kv_heads` ((layer, kv_head) pairs; None = the dense cache); the previous mode comes
        back afterwards. :meth:`sparse` is the friendly form (query heads, rankings, fractions)."""
        native = self._native()
        previous = native.sparse_options
        if core_kv_heads is None:
            native.set_sparse(None)
        else:
            native.set_sparse(_core.SparseOptions(core_kv_heads=core_kv_heads, sink=sink, visual_budget=visual_budget,
                                                  visual_keep=visual_keep))
        try:
            yield self
        finally:
            native.set_sparse(previous)

    # -- head interventions ---------------------------------------------------------------------
    def ablated(self, heads, method: str = "zero", reference=None, knockout_keys=(), means=None,
                queries: str = "after"):
        """Context manager applying a head intervention ("zero", "mean" or "knockout") to `heads`
        for every call inside the block; see :mod:`corehead.ablation`. For knockout, `queries`:
        "after" (the queries after an image lose its visual tokens) or "all" (every query does)."""
        from corehead import ablation

        return ablation.ablated(self, heads, method=method, reference=reference, knockout_keys=knockout_keys,
                                means=means, queries=queries)

    def ablated_deltanet(self, value_heads):
        """Context manager zeroing Gated DeltaNet value heads (hybrid models: qwen35, qwen35moe) for
        every call inside the block; the previous set comes back on leaving (blocks nest).

        `value_heads`: (layer, value head) pairs; `layer` one of the recurrent layers (the layers
        not in ``info["attention_layers"]``), the value head numbered as transformers numbers it
        (0 .. ``info["deltanet_value_heads"]`` - 1; value head v reads key head
        v // (value heads / key heads)). What is zeroed is that head's output after the gated
        RMSNorm, ``RMSNorm(o_v) · norm.weight · silu(z_v)``: its slice [v*d, (v+1)*d) of the input of
        the layer's output projection (transformers' ``out_proj``, GGUF ``ssm_out``). The layer's
        conv window and delta-rule state are computed as usual, so decoding after an ablated
        prefill continues the same ablated model. Composes with :meth:`ablated` (attention heads);
        ``[]`` inside a block clears it. An attention layer, a value head out of range or a model
        without DeltaNet layers raises ValueError saying which pairs are valid (docs/qwen35.md)."""
        from corehead import ablation

        return ablation.ablated_deltanet(self, value_heads)

    @property
    def active_deltanet_ablation(self) -> list[tuple[int, int]]:
        """The (layer, value head) pairs :meth:`ablated_deltanet` zeroes now ([] = none)."""
        return list(self._deltanet_ablation)

    def _set_deltanet_ablation(self, pairs: list[tuple[int, int]]) -> None:
        self._native().set_deltanet_ablation(pairs)
        self._deltanet_ablation = list(pairs)

    def knockout(self, edges, heads=None, layers=None, prompt=None, images=(), question: str | None = None):
        """Context manager blocking attention edges (query positions -> key positions) for `heads`
        (None: every head of `layers`; layers None: every layer); see :mod:`corehead.knockout`."""
        from corehead import knockout

        return knockout.knockout(self, edges, heads=heads, layers=layers, prompt=prompt, images=images,
                                 question=question)

    def information_flow(self, probe, presets=None, window: int = 9, progress: bool = False):
        """The relative change of the answer's first-token probability when each preset's edges
        (Image->Question, Image->Last, Question->Last) are blocked in a window of layers sliding over
        depth; returns a :class:`corehead.knockout.FlowResult`."""
        from corehead import knockout

        return knockout.information_flow(self, probe, presets=presets, window=window, progress=progress)

    def evaluate(self, probes, metric: str = "exact", progress: bool = True, max_tokens: int = 16):
        """Accuracy on `probes` ("exact", "contains" or "choice" by log-likelihood), with the head
        interventions currently active; returns a :class:`corehead.EvalReport`."""
        from corehead import evaluate

        return evaluate.evaluate(self, probes, metric=metric, progress=progress, max_tokens=max_tokens)

    def ablation_curve(self, ranking, probes, fractions=(0.01, 0.02, 0.05, 0.1, 0.2),
                       baselines=("top", "bottom", "random"), seeds: int = 5, method: str = "zero",
                       metric: str | None = None, reference=None, seed: int = 0, progress: bool = True,
                       max_tokens: int = 16, queries: str = "after"):
        """Accuracy with the top / bottom / random `fractions` of heads by RAM ablated; returns a
        :class:`corehead.AblationCurve` (``.table()``, ``.plot(path)``). See :mod:`corehead.evaluate`."""
        from corehead import evaluate

        return evaluate.ablation_curve(self, ranking, probes, fractions=fractions, baselines=baselines, seeds=seeds,
                                       method=method, metric=metric, reference=reference, seed=seed,
                                       progress=progress, max_tokens=max_tokens, queries=queries)

    def head_means(self, prompts, cached: bool = False) -> np.ndarray:
        """Mean output of every head over all positions of `prompts` (text, token ids or probes):
        [n_layer, n_head, head_dim]. `cached=True` computes it once per engine and reference set,
        always on the unablated model (what mean ablation replaces a head's output with)."""
        from corehead import ablation

        if not cached:
            return ablation.head_means(self, prompts)
        key = ablation.reference_key(prompts)
        if key not in self._head_mean_cache:
            with self.interventions([]), self.ablated_deltanet([]):  # means of the unablated model
                self._head_mean_cache[key] = ablation.head_means(self, prompts)
        return self._head_mean_cache[key]

    def head_output_sums(self, prompt, images=None, videos=(), fps: float | None = None,
                         max_frames: int | None = None) -> tuple[np.ndarray, int]:
        """Σ over every position of `prompt` (with `images` / `videos`) of each head's output (before the
        output projection): ([n_layer, head_dim * n_head] float64 in ggml order, n positions)."""
        native = self._native()
        mm_prompt, media = self._media(prompt, images, videos, fps, max_frames)
        if media:
            sums, n = native.head_output_sums_images(mm_prompt, media, marker=self.image_marker)
        else:
            sums, n = native.head_output_sums(self.token_ids(prompt))
        return np.asarray(sums, dtype=np.float64), int(n)

    @property
    def active_interventions(self) -> tuple[list, list, list, list]:
        """The head interventions every call applies now, as last passed to :meth:`interventions`:
        (items, knockout_keys, knockout_from, knockout_until); all empty = the unablated model."""
        return self._interventions

    @property
    def active_knockout_queries(self) -> str:
        """Which queries of a multimodal prompt the active knockout heads block: "after" or "all"."""
        return self._knockout_queries

    @contextmanager
    def interventions(self, items: list, knockout_keys: Sequence[int] = (), knockout_from: Sequence[int] = (),
                      knockout_until: Sequence[int] = (), queries: str = "after"):
        """Context manager: the low-level head interventions for every call inside the block, in
        place of the current ones, which come back on leaving (so blocks nest in any order).
        `items` are (layer, head, "zero" | "mean" | "knockout", mean vector or []); knockout heads
        get −inf on `knockout_keys` (context positions), for the queries at positions
        knockout_from[i] <= q < knockout_until[i] of key i when those are given (else all; a key
        may be listed once per query range). Without ranges, a multimodal prompt's knockout heads
        lose its visual tokens for the queries after each image (`queries="after"`, outside every
        image) or for every query (`queries="all"`). :meth:`ablated` and :meth:`knockout` are the
        friendly forms."""
        if queries not in ("after", "all"):
            raise ValueError(f"queries must be 'after' or 'all', got {queries!r}")
        previous = (self._interventions, self._knockout_queries)
        state = (list(items), [int(k) for k in knockout_keys], [int(k) for k in knockout_from],
                 [int(k) for k in knockout_until])
        self._set_interventions(state, queries)
        try:
            yield self
        finally:
            self._set_interventions(*previous)

    def _set_interventions(self, state: tuple[list, list, list, list], queries: str = "after") -> None:
        items, keys, starts, ends = state
        self._native().set_head_interventions(items, knockout_keys=keys, knockout_from=starts, knockout_until=ends,
                                              knockout_queries=queries)
        self._interventions = state
        self._knockout_queries = queries

    def generate_ids(self, prompt: str | Sequence[int], max_tokens: int = 64, temperature: float = 0.0,
                     top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0, repeat_penalty: float = 1.0,
                     repeat_last_n: int = 64, seed: int = 0, stop_at_eog: bool = True,
                     on_token=None, images: Sequence = (), videos: Sequence = (), fps: float | None = None,
                     max_frames: int | None = None) -> list[int]:
        """Generated token ids (greedy when temperature == 0). ``on_token(id) -> bool`` may stop early."""
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
            raise ValueError(f"max_tokens must be an int >= 0, got {max_tokens!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
        check_int(max_tokens, "max_tokens", 0, 2**62)
        top_k = check_int(top_k, "top_k", -(2**31), 2**31 - 1)
        repeat_last_n = check_int(repeat_last_n, "repeat_last_n", -(2**31), 2**31 - 1)
        temperature, top_p, min_p, repeat_penalty = (
            check_real(v, n) for v, n in ((temperature, "temperature"), (top_p, "top_p"), (min_p, "min_p"),
                                          (repeat_penalty, "repeat_penalty")))
        on_token = _token_callback(on_token)
        options = _core.GenerateOptions(max_tokens=max_tokens, temperature=float(temperature), top_k=int(top_k),
                                        top_p=float(top_p), min_p=float(min_p), repeat_penalty=float(repeat_penalty),
                                        repeat_last_n=int(repeat_last_n), seed=seed, stop_at_eog=bool(stop_at_eog))
        mm_prompt, imgs = self._media(prompt, images, videos, fps, max_frames)
        if imgs:
            return self._native().generate_images(mm_prompt, imgs, options=options, on_token=on_token,
                                                  marker=self.image_marker)
        return self._native().generate(self.token_ids(prompt), options=options, on_token=on_token)

    def stream_ids(self, prompt: str | Sequence[int], **kwargs) -> Iterator[int]:
        """Like :meth:`generate_ids`, yielding ids as they come (runs in a worker thread)."""
        import queue
        import threading

        q: queue.Queue = queue.Queue()
        stop = threading.Event()
        done = object()

        def on_token(t: int) -> bool:
            q.put(t)
            return not stop.is_set()

        def work() -> None:
            try:
                self.generate_ids(prompt, on_token=on_token, **kwargs)
            except BaseException as e:  # surfaced in the consumer
                q.put(e)
            finally:
                q.put(done)

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        try:
            while (item := q.get()) is not done:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

    def generate(self, prompt: str | Sequence[int], images: Sequence = (), max_tokens: int = 64,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
                 repeat_penalty: float = 1.0, seed: int = 0, stop: str | Sequence[str] = (),
                 stream: bool = False, videos: Sequence = (), fps: float | None = None,
                 max_frames: int | None = None):
        """Generate text after `prompt` (greedy when temperature == 0).

        Stops at the model's end-of-generation tokens, after `max_tokens`, at the end of the
        context, or where a `stop` string appears (the stop string is not returned). With
        ``stream=True`` returns an iterator of text pieces instead of a str. `videos` (paths,
        (T, H, W, 3) uint8 arrays or lists of frames) go at :attr:`video_marker` (without markers:
        after the images, before the text), sampled at `fps` frames per second, at most
        `max_frames` each (see :mod:`corehead.videos`).
        """
        if not isinstance(stop, (str, Sequence)):
            raise TypeError(f"stop must be a str or a sequence of strs, got {type(stop).__name__}")
        stops = [stop] if isinstance(stop, str) else list(stop)
        if any(not isinstance(s, str) or not s for s in stops):
            raise ValueError("stop must be a non-empty str or a sequence of non-empty strs")
        # Decoded and checked here, before any generation starts.
        mm_prompt, imgs = self._media(prompt, images, videos, fps, max_frames)
        if imgs:
            prompt = mm_prompt
        kwargs = dict(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                      repeat_penalty=repeat_penalty, seed=seed, images=imgs)
        if stream:
            return self._text_pieces(prompt, stops, **kwargs)
        return self._text(prompt, stops, **kwargs)

    def _text(self, prompt, stops: list[str], **kwargs) -> str:
        """generate() without streaming: on the calling thread, so Ctrl-C interrupts the native
        work between forward passes (a worker thread would only see it at the next token)."""
        text_stream = TextStream(self.tokenizer)
        eog = set(self.tokenizer.eog_tokens)
        keep = max((len(s) for s in stops), default=0)
        text = [""]

        def on_token(tok: int) -> bool:
            if tok in eog:
                return False
            piece = text_stream.push(tok)
            text[0] += piece
            tail = text[0][-(keep + len(piece)):]
            return not any(s in tail for s in stops)

        self.generate_ids(prompt, on_token=on_token, **kwargs)
        hits = [text[0].find(s) for s in stops if s in text[0]]
        if hits:
            return text[0][: min(hits)]
        return text[0] + text_stream.flush()

    def _text_pieces(self, prompt, stops: list[str], **kwargs) -> Iterator[str]:
        text_stream = TextStream(self.tokenizer)
        eog = set(self.tokenizer.eog_tokens)
        held = ""  # text that might be the start of a stop string
        keep = max((len(s) for s in stops), default=0) - 1
        for tok in self.stream_ids(prompt, **kwargs):
            if tok in eog:
                break
            held += text_stream.push(tok)
            hits = [held.find(s) for s in stops if s in held]
            if hits:
                yield held[: min(hits)]
                return
            if len(held) > keep:
                cut = len(held) - keep if keep > 0 else len(held)
                yield held[:cut]
                held = held[cut:]
        held += text_stream.flush()
        if held:
            yield held

    def chat(self, messages: Sequence[dict], images: Sequence = (), add_generation_prompt: bool = True,
             videos: Sequence = (), fps: float | None = None, max_frames: int | None = None, **kwargs):
        """Render `messages` with the model's chat template (tokenizer.chat_template, jinja2 as in
        transformers) and generate the assistant's reply; kwargs as for :meth:`generate`.

        Images go where a message's content holds :attr:`image_marker` (videos: :attr:`video_marker`);
        without any marker they go at the start of the last user message, images first."""
        imgs = self.load_images(images)
        vids = self.load_videos(videos, fps=fps, max_frames=max_frames)
        markers = (self.image_marker, self.video_marker)
        if (imgs or vids) and not any(isinstance(m, dict) and isinstance(m.get("content"), str) and
                                      any(k in m["content"] for k in markers) for m in messages):
            messages = [dict(m) for m in messages]
            users = [i for i, m in enumerate(messages) if m.get("role") == "user" and isinstance(m.get("content"), str)]
            if not users:
                raise ValueError("images and videos need a user message to go in")
            last = messages[users[-1]]
            last["content"] = self.image_marker * len(imgs) + self.video_marker * len(vids) + last["content"]
        return self.generate(self.apply_chat_template(messages, add_generation_prompt), images=imgs, videos=vids,
                             **kwargs)

    def apply_chat_template(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        from corehead import chat

        template = self._native().metadata_string("tokenizer.chat_template")
        if not template:
            raise ValueError("this model file has no chat template (tokenizer.chat_template); use generate() "
                             "with a prompt written in the model's format")
        tok = self.tokenizer
        bos = tok.token_text(tok.bos) if tok.bos >= 0 else ""
        eos = tok.token_text(tok.eos) if tok.eos >= 0 else ""
        return chat.render(template, messages, add_generation_prompt=add_generation_prompt, bos_token=bos,
                           eos_token=eos)

    def __repr__(self) -> str:
        if self._core is None:
            return "Engine(closed)"
        i = self._core.text_info
        v = self._core.vision_info
        vis = f", vision={v.projector}" if v else ""
        return f"Engine({i.arch}, {i.n_layer} layers x {i.n_head} heads, {i.file_type}{vis})"


def _token_callback(on_token):
    """on_token checked up front and its return value checked per call: True (or None) goes on,
    False stops; anything else is a TypeError rather than a native cast failure."""
    if on_token is None:
        return None
    if not callable(on_token):
        raise TypeError(f"on_token must be callable (token id -> bool) or None, got {type(on_token).__name__}")

    def call(tok: int) -> bool:
        r = on_token(tok)
        if r is None:
            return True
        if isinstance(r, (bool, np.bool_)):
            return bool(r)
        raise TypeError(f"on_token must return a bool (False stops generation), got {type(r).__name__}")

    return call


class _Serialized:
    """The native engine behind a lock. The native calls release the GIL while they compute, so
    without it two Python threads could interleave their forward passes on one KV cache; with it,
    calls from several threads on one Engine run one after another (use one Engine per thread for
    parallelism). A call re-entering the engine from a callback of a running call on the same
    thread (e.g. on_token) raises RuntimeError instead of deadlocking."""

    __slots__ = ("_obj", "_lock", "_owner")

    def __init__(self, obj) -> None:
        self._obj = obj
        self._lock = threading.Lock()
        self._owner: int | None = None

    def __getattr__(self, name: str):
        attr = getattr(self._obj, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            me = threading.get_ident()
            if self._owner == me:
                raise RuntimeError(f"this Engine is busy with another call on this thread ({name} was called from "
                                   "a callback such as on_token); call it after the running call returns")
            with self._lock:
                self._owner = me
                try:
                    return attr(*args, **kwargs)
                finally:
                    self._owner = None

        return call


def _int_list(values: Sequence[int] | None, what: str) -> list[int]:
    if values is None:
        return []
    if isinstance(values, (int, np.integer)):
        values = [values]
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{what} must be ints, got {type(v).__name__}")
        if not -(2**31) <= int(v) < 2**31:
            raise ValueError(f"{what}: {int(v)} is out of range")
        out.append(int(v))
    if not out:
        raise ValueError(f"{what} is empty")
    return out


def inspect(model: str | os.PathLike | None = None, mmproj: str | os.PathLike | None = None) -> dict[str, Any]:
    """Validate GGUF files without loading weights and return their facts.

    Works on tokenizer-only files (llama.cpp's ``ggml-vocab-*.gguf``) too. Returns
    ``{"model": dict | None, "vision": dict | None}``.
    """
    if model is None and mmproj is None:
        raise ValueError("pass a model path, an mmproj path, or both")
    out: dict[str, Any] = {"model": None, "vision": None}
    if model is not None:
        out["model"] = _core.inspect_model(as_path(model, "model")).to_dict()
    if mmproj is not None:
        out["vision"] = _core.inspect_mmproj(as_path(mmproj, "mmproj")).to_dict()
    return out
