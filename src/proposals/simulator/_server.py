"""The simulator's HTTP/1.1 server: asyncio streams and h11, so connections, resets and
stalls are under our control (a framework would hide exactly what we need to misbehave)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import random
import socket
import struct
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import unquote

import h11

from ._answer import Answerer, error_body, max_output
from ._embeddings import embedding_request
from ._limits import RateLimiter, SimStats
from ._profiles import SimulatorProfile

__all__ = ["Simulator"]

log = logging.getLogger(__name__)
_JSON = (b"content-type", b"application/json")
_LABEL = (b"x-simulator", b"proposals")
_READ_SIZE = 65536
_PIECE_WORDS = 4
_MIN_SLEEP_S = 0.005


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), as an overloaded peer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _Closed(Exception):
    """The peer went away, or we dropped the connection on purpose."""


class Simulator:
    """One running simulated provider. Build it with :func:`run_simulator`.

    ``base_url`` is the OpenAI-style base (``http://HOST:PORT/v1``); ``stats()`` returns the
    same dict as ``GET /sim/stats``.
    """

    def __init__(
        self, profile: SimulatorProfile, *, host: str = "127.0.0.1", port: int = 0, seed: int = 0
    ) -> None:
        self.profile = profile
        self.host = host
        self.seed = seed
        self._port = port
        self._stats = SimStats()
        self._limiter = self._new_limiter()
        self._faults = self._new_faults()
        self._answers = Answerer(profile, seed)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._request_ids = itertools.count(1)

    def _new_limiter(self) -> RateLimiter:
        p = self.profile
        return RateLimiter(p.rpm, p.tpm, time_scale=p.time_scale, burst_s=p.burst_s)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen on the configured host and port (0: a free port)."""
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self._port, backlog=4096, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is None:
            return
        self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None

    @property
    def port(self) -> int:
        """The TCP port listened on."""
        return self._port

    @property
    def base_url(self) -> str:
        """Base URL for OpenAI clients: ``http://HOST:PORT/v1``."""
        return f"http://{self.host}:{self._port}/v1"

    @property
    def endpoint(self) -> str:
        """Root URL, used as ``azure_endpoint`` for Azure OpenAI clients."""
        return f"http://{self.host}:{self._port}"

    def stats(self) -> dict[str, Any]:
        """Counters since start or the last :meth:`reset` (as ``GET /sim/stats``)."""
        return {
            "simulator": "proposals",
            "simulated": True,
            "profile": self.profile.name,
            "seed": self.seed,
            **self._stats.as_dict(),
        }

    def reset(self) -> None:
        """Zero the counters, refill the rate buckets and start the fault sequence over, so
        runs after a reset meet the same faults in the same order as the first."""
        self._stats.reset()
        self._limiter = self._new_limiter()
        self._faults = self._new_faults()

    def _new_faults(self) -> random.Random:
        return random.Random(self.seed * 7919 + 17)

    # -- connections ----------------------------------------------------------------------
    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            cap = self.profile.max_connections
            initial = b""
            if cap is not None and self._stats.connections >= cap:
                # Over the cap: reset, unless it is a control request (/sim/stats must stay
                # readable while a benchmark saturates the server). Clients send at once,
                # so a short wait for the request line costs nothing.
                with contextlib.suppress(TimeoutError, ConnectionError):
                    initial = await asyncio.wait_for(reader.read(_READ_SIZE), 0.05)
                if initial.startswith((b"GET /sim/", b"POST /sim/")):
                    with contextlib.suppress(_Closed, ConnectionError, h11.ProtocolError):
                        await self._serve(reader, writer, initial)
                    writer.close()
                    return
                self._stats.rejects["connection_refused"] += 1
                _reset(writer)
                return
            self._stats.connection_opened()
            try:
                await self._serve(reader, writer, initial)
            except (_Closed, ConnectionError, h11.ProtocolError):
                pass
            except asyncio.CancelledError:
                # Only stop() cancels these tasks; end quietly so asyncio's stream callback
                # does not log the cancellation as an error.
                _reset(writer)
            finally:
                self._stats.connections -= 1
                if not writer.transport.is_closing():
                    writer.close()
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initial: bytes = b""
    ) -> None:
        conn = h11.Connection(h11.SERVER)
        if initial:
            conn.receive_data(initial)
        while True:
            request: h11.Request | None = None
            body: list[bytes] = []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(_READ_SIZE))
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # ConnectionClosed or PAUSED
                    return
            assert request is not None
            await self._dispatch(conn, reader, writer, request, b"".join(body))
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()

    async def _send(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        count: bool = True,
    ) -> None:
        if count:  # chat completions and embeddings are counted; /sim/* and /models not
            self._stats.count_status(status)
        all_headers = [_JSON, (b"content-length", str(len(body)).encode()), *self._headers()]
        if headers:
            all_headers.extend(headers)
        writer.write(conn.send(h11.Response(status_code=status, headers=all_headers)))
        writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    def _headers(self) -> list[tuple[bytes, bytes]]:
        return [
            _LABEL,
            (b"x-request-id", f"req_sim_{next(self._request_ids)}".encode()),
            *self._limiter.headers(),
        ]

    # -- routing --------------------------------------------------------------------------
    async def _dispatch(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        body: bytes,
    ) -> None:
        method = request.method.decode()
        path = unquote(request.target.decode("latin-1").partition("?")[0]).rstrip("/")
        parts = [p for p in path.split("/") if p]
        if method == "POST" and parts[-2:] == ["chat", "completions"]:
            deployment = None
            if len(parts) == 5 and parts[:2] == ["openai", "deployments"]:
                deployment = parts[2]
            elif parts[:-2] not in ([], ["v1"], ["openai"], ["openai", "v1"]):
                return await self._not_found(conn, writer, path)
            return await self._request(
                conn, writer, self._chat(conn, reader, writer, body, deployment)
            )
        if method == "POST" and parts[-1:] == ["embeddings"]:
            deployment = None
            if len(parts) == 4 and parts[:2] == ["openai", "deployments"]:
                deployment = parts[2]
            elif parts[:-1] not in ([], ["v1"], ["openai"], ["openai", "v1"]):
                return await self._not_found(conn, writer, path)
            return await self._request(conn, writer, self._embed(conn, writer, body, deployment))
        if method == "GET" and parts in (["v1", "models"], ["models"], ["openai", "models"]):
            return await self._send(conn, writer, 200, self._models_body(), count=False)
        if method == "GET" and parts == ["sim", "stats"]:
            return await self._send(
                conn, writer, 200, json.dumps(self.stats()).encode(), count=False
            )
        if method == "POST" and parts == ["sim", "reset"]:
            self.reset()
            return await self._send(
                conn, writer, 200, json.dumps(self.stats()).encode(), count=False
            )
        return await self._not_found(conn, writer, path)

    async def _request(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, handle: Coroutine[Any, Any, None]
    ) -> None:
        """Run a counted request's handler (a chat completion or embeddings)."""
        self._stats.request_started()
        try:
            await handle
        except (_Closed, ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a simulator bug must not look like a provider fault
            log.exception("simulator failed on a request")
            if conn.our_state is not h11.SEND_RESPONSE:
                _reset(writer)
                raise _Closed from exc
            await self._send(
                conn,
                writer,
                500,
                error_body(f"simulator internal error: {exc!r}", "simulator_error"),
            )
        finally:
            self._stats.in_flight -= 1

    async def _not_found(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, path: str
    ) -> None:
        body = error_body(f"Invalid URL ({path}) on the simulator", "invalid_request_error")
        await self._send(conn, writer, 404, body, count=False)

    def _models_body(self) -> bytes:
        owner = f"proposals-simulator ({self.profile.name}, simulated)"
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": owner}
            for m in self.profile.models
        ]
        return json.dumps({"object": "list", "data": data, "simulated": True}).encode()

    # -- chat completions -----------------------------------------------------------------
    async def _chat(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        raw: bytes,
        deployment: str | None,
    ) -> None:
        stats = self._stats
        profile = self.profile
        try:
            body = json.loads(raw)
            messages = body["messages"]
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise TypeError("messages must be a list of objects")
        except (ValueError, KeyError, TypeError) as exc:
            stats.rejects["bad_request"] += 1
            return await self._send(
                conn,
                writer,
                400,
                error_body(
                    f"Invalid request body: {exc}", "invalid_request_error", param="messages"
                ),
            )
        model = deployment or str(body.get("model") or profile.models[0])
        max_out = max_output(body)
        p_tokens = self._answers.prompt_tokens(messages)
        overflow = self._answers.overflow(model, p_tokens, max_out)
        if overflow is not None:
            stats.rejects["context_length"] += 1
            return await self._send(conn, writer, 400, overflow)

        cause, wait = self._limiter.try_acquire(p_tokens + (max_out or 0))
        if cause is not None:
            return await self._rate_limited(conn, writer, cause, wait)
        stats.charged_tokens += p_tokens + (max_out or 0)

        roll = self._faults.random()
        for fault in ("fault_500", "fault_503"):
            rate = getattr(profile, fault)
            if roll < rate:
                stats.rejects[fault] += 1
                status = 500 if fault == "fault_500" else 503
                text = (
                    "The server had an error while processing your request. Sorry about "
                    "that! (simulated fault)"
                    if status == 500
                    else "The engine is currently overloaded, please try again later. "
                    "(simulated fault)"
                )
                return await self._send(conn, writer, status, error_body(text, "server_error"))
            roll -= rate
        reset_now = roll < profile.fault_reset
        roll -= profile.fault_reset
        if not reset_now and roll < profile.fault_stall:
            stats.rejects["fault_stall"] += 1
            await self._stall(reader, writer)
            raise _Closed

        answer = self._answers.answer(body, messages, p_tokens, max_out)
        content, finish, c_tokens = answer.content, answer.finish, answer.completion_tokens
        if max_out is None:
            self._limiter.charge_tokens(c_tokens)
            stats.charged_tokens += c_tokens
        usage = answer.usage()
        meta = answer.meta(model)
        if body.get("stream"):
            options = body.get("stream_options") or {}
            await self._stream(
                conn,
                writer,
                meta,
                content,
                finish,
                usage,
                bool(options.get("include_usage")),
                reset_now,
            )
            stats.streamed += 1
        else:
            result = answer.completion(model)
            await asyncio.sleep(profile.latency_s(c_tokens))
            payload = json.dumps(result, ensure_ascii=False).encode()
            if reset_now:
                await self._reset_mid_response(conn, writer, payload)
            await self._send(conn, writer, 200, payload)
        stats.completed += 1
        stats.prompt_tokens += p_tokens
        stats.completion_tokens += c_tokens

    # -- embeddings -----------------------------------------------------------------------
    async def _embed(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        raw: bytes,
        deployment: str | None,
    ) -> None:
        """Embeddings under the same quotas as chat completions (no faults injected)."""
        stats = self._stats
        try:
            request = embedding_request(raw, deployment or "text-embedding-3-small")
        except ValueError as exc:
            stats.rejects["bad_request"] += 1
            body = error_body(str(exc), "invalid_request_error", param="input")
            return await self._send(conn, writer, 400, body)
        cause, wait = self._limiter.try_acquire(request.tokens)
        if cause is not None:
            return await self._rate_limited(conn, writer, cause, wait)
        stats.charged_tokens += request.tokens
        payload = request.answer()
        await asyncio.sleep(self.profile.latency_s(0))
        await self._send(conn, writer, 200, payload)
        stats.completed += 1
        stats.embeddings += 1
        stats.prompt_tokens += request.tokens

    async def _rate_limited(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, cause: str, wait: float
    ) -> None:
        self._stats.rejects[cause] += 1
        p = self.profile
        if cause == "rate_limit_rpm":
            kind, unit, limit = "requests", "requests per min (RPM)", p.rpm
        else:
            kind, unit, limit = "tokens", "tokens per min (TPM)", p.tpm
        message = (
            f"Rate limit reached for {p.name} (simulated) on {unit}: Limit {limit}. "
            f"Please try again in {wait:.3f}s."
        )
        headers = [
            (b"retry-after-ms", str(max(1, math.ceil(wait * 1000))).encode()),
            (b"retry-after", str(max(1, math.ceil(wait))).encode()),
        ]
        await self._send(
            conn, writer, 429, error_body(message, kind, code="rate_limit_exceeded"), headers
        )

    async def _stall(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Hang without answering until ``stall_s`` passes or the client gives up."""
        deadline = time.monotonic() + self.profile.stall_s
        while time.monotonic() < deadline:
            if reader.at_eof() or reader.exception() is not None or (writer.transport.is_closing()):
                break
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        _reset(writer)

    async def _reset_mid_response(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, payload: bytes
    ) -> None:
        """Send the headers and part of the body, then RST."""
        self._stats.rejects["fault_reset"] += 1
        self._stats.count_status(200)
        headers = [_JSON, (b"content-length", str(len(payload)).encode()), *self._headers()]
        writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
        writer.write(conn.send(h11.Data(data=payload[: len(payload) // 2])))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        _reset(writer)
        raise _Closed

    async def _stream(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        meta: dict[str, Any],
        content: str,
        finish: str,
        usage: dict[str, Any],
        include_usage: bool,
        reset_now: bool,
    ) -> None:
        """Server-sent events in OpenAI's chunk format, paced by the latency model."""
        p = self.profile
        self._stats.count_status(200)
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            *self._headers(),
        ]
        writer.write(conn.send(h11.Response(status_code=200, headers=headers)))
        await writer.drain()
        base = {**meta, "object": "chat.completion.chunk"}
        extra = {"usage": None} if include_usage else {}

        def event(delta: dict[str, Any], reason: str | None) -> bytes:
            chunk = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
                ],
                **extra,
            }
            return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

        await asyncio.sleep(p.ttft_s * p.time_scale)
        writer.write(
            conn.send(
                h11.Data(data=event({"role": "assistant", "content": "", "refusal": None}, None))
            )
        )
        words = content.split(" ")
        pieces = [
            " ".join(words[i : i + _PIECE_WORDS]) + (" " if i + _PIECE_WORDS < len(words) else "")
            for i in range(0, len(words), _PIECE_WORDS)
        ]
        per_char = p.per_token_s * p.time_scale * usage["completion_tokens"] / max(1, len(content))
        owed = 0.0
        for index, piece in enumerate(pieces):
            if reset_now and index == min(2, len(pieces) - 1):
                self._stats.rejects["fault_reset"] += 1
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                _reset(writer)
                raise _Closed
            writer.write(conn.send(h11.Data(data=event({"content": piece}, None))))
            owed += per_char * len(piece)
            if owed >= _MIN_SLEEP_S:
                await writer.drain()
                await asyncio.sleep(owed)
                owed = 0.0
        if reset_now:  # content too short to cut inside: cut before the end instead
            self._stats.rejects["fault_reset"] += 1
            _reset(writer)
            raise _Closed
        writer.write(conn.send(h11.Data(data=event({}, finish))))
        if include_usage:
            last = {**base, "choices": [], "usage": usage}
            writer.write(conn.send(h11.Data(data=b"data: " + json.dumps(last).encode() + b"\n\n")))
        writer.write(conn.send(h11.Data(data=b"data: [DONE]\n\n")))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
