"""Tokenizers read from GGUF metadata (any GGUF, vocabulary-only files included)."""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterable, Sequence

from corehead import _core
from corehead._paths import as_path


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
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        try:
            return self._t.tokenize(text, bool(add_special), bool(parse_special))
        except TypeError:
            # nanobind could not convert the str: it is not encodable as UTF-8.
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(f"text is not valid Unicode ({e.reason} at index {e.start}); "
                                 "remove lone surrogates or decode the input with errors='replace'") from None
            raise

    def detokenize(self, ids: Iterable[int], remove_special: bool = False, unparse_special: bool = True) -> str:
        """Text of `ids` (invalid UTF-8 from partial byte tokens becomes U+FFFD)."""
        raw = self._t.detokenize(_check_ids(ids), bool(remove_special), bool(unparse_special))
        return raw.decode("utf-8", "replace")

    def token_to_piece(self, token: int) -> bytes:
        """Raw bytes one token contributes to the text (may be part of a UTF-8 sequence)."""
        return self._t.token_to_piece(int(token))

    def token_text(self, token: int) -> str:
        return self._t.token_text(int(token))

    def find(self, text: str) -> int:
        """Id of the vocabulary entry spelled exactly `text`, or -1."""
        return self._t.find(text)

    def is_eog(self, token: int) -> bool:
        return self._t.is_eog(int(token))

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


def _check_ids(ids: Iterable[int]) -> list[int]:
    if isinstance(ids, (str, bytes)):
        raise TypeError("ids must be a sequence of ints")
    out = []
    for t in ids if isinstance(ids, (Sequence, Iterable)) else ():
        if isinstance(t, bool) or not hasattr(t, "__index__"):
            raise TypeError(f"token ids must be ints, got {type(t).__name__}")
        out.append(int(t))
    return out
