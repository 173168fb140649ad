"""Request bodies (pydantic), with OpenAI's field names, types and ranges.

Unknown fields are ignored, as OpenAI-compatible servers do (clients send many); known fields
whose non-default values this server cannot honour (n > 1, logprobs, tools, penalties) are
refused with a 400 naming the field rather than silently ignored.
"""

# Optional[...] / Union[...] stay: pydantic evaluates these annotations at run time, and Python 3.9
# (requires-python) has no `X | None` there.
# ruff: noqa: UP007, UP045

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from corehead.serve.errors import invalid
from corehead.serve.generation import Sampling

Head = tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ImageURL(_Body):
    url: str
    detail: Optional[str] = None


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ImagePart(_Body):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[Union[TextPart, ImagePart], Field(discriminator="type")]


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[ContentPart], None] = None
    name: Optional[str] = None


class ReturnAttention(_Body):
    heads: list[Head] = Field(min_length=1, max_length=256)
    positions: Union[Literal["last"], list[int]] = "last"


class CoreheadOptions(_Body):
    """The ``corehead`` object of a request: corehead's own extensions (docs/serve.md)."""

    # None or true: the server's mode (--core-heads, else dense); false or []: dense; pairs: CoRe-sparse.
    core_heads: Union[StrictBool, list[Head], None] = None
    visual_budget: Optional[Annotated[int, Field(ge=0, le=1 << 20)]] = None
    return_attention: Optional[ReturnAttention] = None


class StreamOptions(_Body):
    include_usage: bool = False


class _Generation(_Body):
    model: str
    max_tokens: Optional[Annotated[int, Field(ge=1)]] = None
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(ge=0, le=1)] = 1.0
    n: int = 1
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    stop: Union[str, Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=16)], None] = None
    seed: Optional[Annotated[int, Field(ge=0, lt=1 << 63)]] = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Optional[dict[str, float]] = None
    user: Optional[str] = None
    # llama.cpp's server extensions, same names
    top_k: Annotated[int, Field(ge=0)] = 0
    min_p: Annotated[float, Field(ge=0, le=1)] = 0.0
    repeat_penalty: Annotated[float, Field(gt=0)] = 1.0
    ignore_eos: bool = False
    corehead: Optional[CoreheadOptions] = None

    def check_supported(self) -> None:
        if self.n != 1:
            raise invalid("this server generates one choice per request: n must be 1", "n")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise invalid(f"{name} is not supported; use repeat_penalty (llama.cpp's) instead", name)
        if self.logit_bias:
            raise invalid("logit_bias is not supported", "logit_bias")
        if isinstance(self.stop, str) and not self.stop:
            raise invalid("stop must be a non-empty string or a list of them", "stop")

    def sampling(self, max_tokens: Optional[int]) -> Sampling:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return Sampling(max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                        min_p=self.min_p, repeat_penalty=self.repeat_penalty, seed=self.seed, stop=stops,
                        ignore_eos=self.ignore_eos)


class ChatCompletionRequest(_Generation):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[Annotated[int, Field(ge=1)]] = None
    logprobs: Optional[bool] = None
    top_logprobs: Optional[int] = None
    tools: Optional[list[Any]] = None
    tool_choice: Optional[Any] = None
    functions: Optional[list[Any]] = None
    response_format: Optional[dict[str, Any]] = None

    def check_supported(self) -> None:
        super().check_supported()
        if self.logprobs or self.top_logprobs:
            raise invalid("logprobs are not supported", "logprobs")
        for name in ("tools", "functions"):
            if getattr(self, name):
                raise invalid(f"{name} (function calling) is not supported", name)
        if self.tool_choice not in (None, "none"):
            raise invalid("tool_choice is not supported", "tool_choice")
        if self.response_format and self.response_format.get("type") != "text":
            raise invalid("response_format: only {'type': 'text'} is supported", "response_format")

    def token_limit(self) -> Optional[int]:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Generation):
    prompt: Union[str, list[Annotated[int, Field(ge=0)]], list[str], list[list[Annotated[int, Field(ge=0)]]]]
    max_tokens: Optional[Annotated[int, Field(ge=1)]] = 16  # OpenAI's default for completions
    echo: bool = False
    suffix: Optional[str] = None
    logprobs: Optional[int] = None
    best_of: Optional[int] = None

    def check_supported(self) -> None:
        super().check_supported()
        if self.echo:
            raise invalid("echo is not supported", "echo")
        if self.suffix:
            raise invalid("suffix (insertion) is not supported", "suffix")
        if self.logprobs:
            raise invalid("logprobs are not supported", "logprobs")
        if self.best_of not in (None, 1):
            raise invalid("best_of must be 1", "best_of")

    def single_prompt(self) -> Union[str, list[int]]:
        p = self.prompt
        if isinstance(p, str):
            if not p:
                raise invalid("prompt is empty", "prompt")
            return p
        if p and all(isinstance(x, int) for x in p):
            return list(p)  # type: ignore[arg-type]
        if len(p) != 1:
            raise invalid("this server takes one prompt per request (a string or a list of token ids)", "prompt")
        only = p[0]
        return self.__class__.model_validate({"model": self.model, "prompt": only}).single_prompt()


class ProbeIn(_Body):
    image: Optional[str] = None  # a data: or file:// URL
    question: str
    answer: Optional[str] = None
    bbox: Optional[Union[list[float], list[list[float]]]] = None
    choices: Optional[list[str]] = None
    span: Optional[tuple[int, int]] = None
    prompt: Optional[str] = None


class RankRequest(_Body):
    model: Optional[str] = None
    probes: list[ProbeIn] = Field(min_length=1, max_length=100_000)
    query: Literal["answer", "last"] = "answer"
    only_correct: bool = False
    stream: bool = False
