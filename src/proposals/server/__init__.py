"""The HTTP service: FastAPI app (REST, SSE, WebSocket, API-key auth), run by ``proposals serve``.

```python
app = create_app(settings, ServerOptions(workers=1))     # serve with uvicorn
```
Routes: ``/v1/documents``, ``/v1/search``, ``/v1/chunks/{id}``, ``/v1/runs`` (and its events as
SSE or WebSocket), ``/v1/meta``, ``/healthz``, ``/readyz``; OpenAPI at ``/docs``. The server
knows nothing of prompts: it calls the store, ingest and the run manager.
"""

from ._app import create_app
from ._auth import is_loopback
from ._state import ServerOptions

__all__ = ["ServerOptions", "create_app", "is_loopback"]
