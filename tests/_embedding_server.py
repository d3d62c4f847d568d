"""A tiny OpenAI-compatible ``/v1/embeddings`` server on loopback, for the embedder tests: vectors
are hashed bags of words (``hash_vector``), rows shuffled so a client must reorder by ``index``;
``fail_with`` makes it answer every request with that HTTP status."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from _embedder import hash_vector
from proposals.config import Settings

DIM = 48


def remote_settings(settings: Settings, base_url: str, model: str, **more: object) -> Settings:
    """``settings`` with the OpenAI embedder calling ``model`` at ``base_url`` (this server or
    the simulator), and ``more`` fields replaced."""
    return settings.model_copy(
        update={
            "embedding_provider": "openai",
            "embedding_model": model,
            "openai_base_url": base_url,
            "openai_api_key": "sk-test",
            **more,
        }
    )


class EmbeddingServer:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_with: int | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                if self.path != "/v1/embeddings":
                    return self._send(404, {"error": {"message": "not found"}})
                if server.fail_with:
                    return self._send(
                        server.fail_with, {"error": {"message": "boom", "type": "server_error"}}
                    )
                inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                rows = [
                    {"object": "embedding", "index": i, "embedding": hash_vector(t, DIM)}
                    for i, t in enumerate(inputs)
                ]
                random.Random(len(inputs)).shuffle(rows)
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": rows,
                        "model": body["model"],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    },
                )

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> EmbeddingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
