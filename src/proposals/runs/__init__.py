"""Runs: typed events, the event log and run registry in PostgreSQL, execution and resume.

:func:`generate` starts a run of the proposal graph and streams its events;
:func:`resume` continues a run a previous process left unfinished.
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
from ._execute import Run, generate, resume
from ._services import Services, open_services
from ._store import EventLog, RunRecord, RunRegistry

__all__ = [
    "BatchFinished",
    "BatchStarted",
    "CallEvent",
    "EventLog",
    "ItemFailed",
    "NodeFinished",
    "NodeStarted",
    "ProposalEvent",
    "Run",
    "RunEvent",
    "RunFinished",
    "RunRecord",
    "RunRegistry",
    "RunStarted",
    "Services",
    "WarningEvent",
    "generate",
    "open_services",
    "parse_event",
    "resume",
]
