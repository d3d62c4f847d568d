"""An offline OpenAI-compatible provider, labelled as such everywhere it answers.

``POST /v1/chat/completions`` (also ``/openai/deployments/{name}/chat/completions`` for Azure
clients), plain and streamed; ``GET /v1/models``; ``GET /sim/stats``; ``POST /sim/reset``.
Answers are built from the prompt's own sentences (``json_schema`` outputs valid against the
schema, citation arrays filled with the prompt's ``[#id]`` chunk ids), deterministic by seed and
request body. Usage is counted exactly; context-window overflows, RPM/TPM 429s, a connection
cap, injected faults and a latency model behave like a hosted provider's. Every response carries
``x-simulator: proposals``.

```python
async with run_simulator("tier1", rpm=600) as sim:
    client = AsyncOpenAI(base_url=sim.base_url, api_key="sim")
```
"""

from ._inprocess import InProcessProvider
from ._limits import REJECT_CAUSES, RateLimiter
from ._profiles import PROFILES, SimulatorProfile, get_profile
from ._runner import SimulatorProcess, banner, run_simulator, serve_forever, serve_in_thread
from ._server import Simulator

__all__ = [
    "PROFILES",
    "REJECT_CAUSES",
    "InProcessProvider",
    "RateLimiter",
    "Simulator",
    "SimulatorProcess",
    "SimulatorProfile",
    "banner",
    "get_profile",
    "run_simulator",
    "serve_forever",
    "serve_in_thread",
]
