"""Tokenizers read from GGUF metadata (any GGUF, vocabulary-only files included)."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable

import numpy as np

from corehead import _core
from corehead._paths import as_path, check_text


class Tokenizer:
    """The tokenizer of a GGUF file: SentencePiece-style (``llama``) or byte-level BPE (``gpt2``)
    with the pre-tokenizer named by ``tokenizer.ggml.pre``; token ids match llama.cpp's."""

    def __init__(self, path: str | os.PathLike | None = None, *, _native: _core.Tokenizer | None = None) -> None:
        if _native is None:
            if path is None:
                raise TypeError("Tokenizer(path) needs the path of a GGUF file")
            _native = _core.Tokenizer.from_file(as_path(path, "tokenizer file"))
        self._t = _native

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Token ids of `text`. add_special adds BOS/EOS as the GGUF says; parse_special turns
        special-token texts such as ``<|im_start|>`` into their ids."""
        return self._t.tokenize(check_text(text, "text"), bool(add_special), bool(parse_special))

    def detokenize(self, ids: Iterable[int], remove_special: bool = False, unparse_special: bool = True) -> str:
        """Text of `ids` (invalid UTF-8 from partial byte tokens becomes U+FFFD)."""
        raw = self._t.detokenize(_check_ids(ids, self.n_tokens), bool(remove_special), bool(unparse_special))
        return raw.decode("utf-8", "replace")

    def token_to_piece(self, token: int) -> bytes:
        """Raw bytes one token contributes to the text (may be part of a UTF-8 sequence)."""
        return self._t.token_to_piece(_check_id(token, self.n_tokens))

    def token_text(self, token: int) -> str:
        return self._t.token_text(_check_id(token, self.n_tokens))

    def find(self, text: str) -> int:
        """Id of the vocabulary entry spelled exactly `text`, or -1."""
        return self._t.find(check_text(text, "text"))

    def is_eog(self, token: int) -> bool:
        return self._t.is_eog(_check_id(token, self.n_tokens))

    @property
    def n_tokens(self) -> int:
        return self._t.n_tokens

    @property
    def bos(self) -> int:
        return self._t.bos

    @property
    def eos(self) -> int:
        return self._t.eos

    @property
    def eog_tokens(self) -> list[int]:
        return list(self._t.eog_tokens)

    @property
    def type(self) -> str:
        return self._t.type

    @property
    def pre(self) -> str:
        return self._t.pre

    def __len__(self) -> int:
        return self.n_tokens

    def __repr__(self) -> str:
        return f"Tokenizer({self.type}, pre={self.pre or 'default'}, {self.n_tokens} tokens)"


class TextStream:
    """Turns token ids into text pieces, holding back incomplete UTF-8 sequences."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")

    def push(self, token: int) -> str:
        return self._dec.decode(self._tok.token_to_piece(token))

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


def _check_id(token, n_tokens: int) -> int:
    if isinstance(token, (bool, np.bool_)) or not hasattr(token, "__index__"):
        raise TypeError(f"token ids must be ints, got {type(token).__name__}")
    token = int(token)
    if not 0 <= token < n_tokens:
        raise ValueError(f"token id {token} is out of range [0, {n_tokens})")
    return token


def _check_ids(ids: Iterable[int], n_tokens: int) -> list[int]:
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1:
            raise ValueError(f"ids must be one-dimensional, got shape {ids.shape}")
        ids = ids.tolist()
    if isinstance(ids, (str, bytes, bytearray)) or not isinstance(ids, Iterable):
        raise TypeError(f"ids must be a sequence of ints, got {type(ids).__name__}")
    return [_check_id(t, n_tokens) for t in ids]
