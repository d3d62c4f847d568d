"""Runs: the run manager, the PostgreSQL queue and leases, workers, the event log and its
broadcast, typed events.

:class:`RunManager` owns every run of a process (CLI and server use it): submit, look up,
cancel, subscribe. :class:`Worker` claims queued runs and executes them under a lease; a run
whose holder died is claimed again and resumed from its checkpoint. :func:`generate` and
:func:`resume` run one run here, for scripts.
"""

from ._events import (
    BatchFinished,
    BatchStarted,
    CallEvent,
    ItemFailed,
    NodeFinished,
    NodeStarted,
    ProposalEvent,
    RunEvent,
    RunFinished,
    RunStarted,
    WarningEvent,
    parse_event,
)
from ._local import Run, generate, resume
from ._log import EventLog, LeaseLost
from ._manager import RunManager
from ._services import Services, open_services
from ._store import TERMINAL, NodeProgress, RunRecord, RunRegistry
from ._worker import Worker

__all__ = [
    "TERMINAL",
    "BatchFinished",
    "BatchStarted",
    "CallEvent",
    "EventLog",
    "ItemFailed",
    "LeaseLost",
    "NodeFinished",
    "NodeProgress",
    "NodeStarted",
    "ProposalEvent",
    "Run",
    "RunEvent",
    "RunFinished",
    "RunManager",
    "RunRecord",
    "RunRegistry",
    "RunStarted",
    "Services",
    "WarningEvent",
    "Worker",
    "generate",
    "open_services",
    "parse_event",
    "resume",
]
