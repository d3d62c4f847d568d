"""One chat completion as the simulator answers it, without a socket: the context-window check,
the deterministic content, truncation at ``max_tokens`` and exact usage.

The HTTP server answers through :class:`Answerer` (limits, faults and latency around it are
its own business), and so does :class:`InProcessProvider`, which plans use to replay a run
without any network: the same request body gets the same answer, byte for byte.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..tokens import count_tokens, estimate_prompt_tokens, truncate_to_tokens
from ._generate import generate_content, material_for, request_key, request_rng
from ._profiles import SimulatorProfile

__all__ = ["Answerer", "ChatAnswer", "error_body", "max_output"]

_OUTPUT_CACHE_SIZE = 2048


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    """An error response body in OpenAI's shape."""
    return json.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    ).encode()


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    """What the simulator says to one chat request (before any delivery choice)."""

    key: bytes
    """The request's digest (seed and body, delivery keys aside)."""
    content: str
    finish: str
    prompt_tokens: int
    completion_tokens: int

    def meta(self, model: str) -> dict[str, Any]:
        """The response fields that identify it (id, created, model, fingerprint)."""
        return {
            "id": f"chatcmpl-sim{self.key.hex()[:24]}",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_proposals_simulator",
        }

    def completion(self, model: str) -> dict[str, Any]:
        """The whole (non-streamed) ``chat.completion`` response body."""
        return {
            **self.meta(model),
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": self.content,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": self.finish,
                }
            ],
            "usage": self.usage(),
            "service_tier": "default",
        }

    def usage(self) -> dict[str, Any]:
        """The ``usage`` object of the response."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }


def max_output(body: dict[str, Any]) -> int | None:
    """The request's cap on the answer (``max_completion_tokens`` or ``max_tokens``)."""
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return int(value) if isinstance(value, int | float) and value > 0 else None


class Answerer:
    """Answers chat requests for one profile and seed; full answers are cached for retries."""

    def __init__(self, profile: SimulatorProfile, seed: int = 0) -> None:
        self.profile = profile
        self.seed = seed
        self._outputs: OrderedDict[bytes, tuple[str, int]] = OrderedDict()

    @staticmethod
    def prompt_tokens(messages: list[dict[str, Any]]) -> int:
        """The prompt's token count as the simulator bills it."""
        return estimate_prompt_tokens(messages)

    def overflow(self, model: str, prompt_tokens: int, max_out: int | None) -> bytes | None:
        """The 400 body of a request over the model's context window, or None when it fits."""
        window = self.profile.window_for(model)
        if prompt_tokens + (max_out or 0) <= window:
            return None
        if max_out:
            detail = (
                f"However, you requested {prompt_tokens + max_out} tokens ({prompt_tokens} in "
                f"the messages, {max_out} in the completion). Please reduce the "
                "length of the messages or completion."
            )
        else:
            detail = (
                f"However, your messages resulted in {prompt_tokens} tokens. Please "
                "reduce the length of the messages."
            )
        message = f"This model's maximum context length is {window} tokens. {detail}"
        return error_body(
            message, "invalid_request_error", param="messages", code="context_length_exceeded"
        )

    def answer(
        self,
        body: dict[str, Any],
        messages: list[dict[str, Any]],
        prompt_tokens: int,
        max_out: int | None,
    ) -> ChatAnswer:
        """The answer to ``body``: generated from the prompt, cut at ``max_out`` tokens."""
        key = request_key(body, self.seed)
        content, full_tokens = self._output(key, body, messages)
        finish = "stop"
        tokens = full_tokens
        if max_out is not None and full_tokens > max_out:
            content = truncate_to_tokens(content, max_out)
            tokens = count_tokens(content)
            finish = "length"
        return ChatAnswer(key, content, finish, prompt_tokens, tokens)

    def _output(
        self, key: bytes, body: dict[str, Any], messages: list[dict[str, Any]]
    ) -> tuple[str, int]:
        """The full (untruncated) answer and its token count, cached for retries."""
        hit = self._outputs.get(key)
        if hit is not None:
            self._outputs.move_to_end(key)
            return hit
        p = self.profile
        content = generate_content(
            body,
            material_for(messages),
            request_rng(key),
            list_mean=p.list_mean,
            nested_list_mean=p.nested_list_mean,
            citations_mean=p.citations_mean,
            text_sentences=p.text_sentences,
        )
        result = (content, count_tokens(content))
        self._outputs[key] = result
        if len(self._outputs) > _OUTPUT_CACHE_SIZE:
            self._outputs.popitem(last=False)
        return result
