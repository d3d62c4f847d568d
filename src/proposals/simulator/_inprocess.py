"""The simulator's answers without a socket: an HTTP transport for the OpenAI client that
answers chat completions in process.

Plans replay a run through the real LLM gateway on this transport: the same request bodies,
token counts, retries and split-on-overflow as a run, and the same answers the simulator of
that profile and seed would give, with no network, no limits and no latency.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx2

from ._answer import Answerer, error_body, max_output
from ._profiles import SimulatorProfile

__all__ = ["InProcessProvider"]


class InProcessProvider(httpx2.AsyncBaseTransport):
    """An ``httpx2`` transport answering ``POST .../chat/completions`` like the simulator
    (context-window errors included) and ``GET .../models``; anything else is a 404."""

    def __init__(
        self,
        profile: SimulatorProfile,
        seed: int = 0,
        on_request: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.profile = profile
        self._answers = Answerer(profile, seed)
        self._on_request = on_request
        """Called with each chat request's body, in the calling task, before it is answered."""
        self.requests = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path.rstrip("/")
        headers = {"x-simulator": "proposals"}
        if request.method == "GET" and path.endswith("/models"):
            data = [
                {"id": m, "object": "model", "owned_by": "simulator"} for m in self.profile.models
            ]
            return httpx2.Response(200, json={"object": "list", "data": data}, headers=headers)
        if request.method != "POST" or not path.endswith("/chat/completions"):
            body = error_body(f"Invalid URL ({path}) on the simulator", "invalid_request_error")
            return httpx2.Response(404, content=body, headers=headers)
        self.requests += 1
        payload: dict[str, Any] = json.loads(await request.aread())
        if self._on_request is not None:
            self._on_request(payload)
        messages = payload["messages"]
        model = str(payload.get("model") or self.profile.models[0])
        max_out = max_output(payload)
        prompt_tokens = self._answers.prompt_tokens(messages)
        overflow = self._answers.overflow(model, prompt_tokens, max_out)
        if overflow is not None:
            return httpx2.Response(400, content=overflow, headers=headers)
        answer = self._answers.answer(payload, messages, prompt_tokens, max_out)
        return httpx2.Response(200, json=answer.completion(model), headers=headers)
