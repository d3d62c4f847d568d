"""Plans: what a run would take (LLM calls, tokens, cost, wall time per node), worked out
before it starts and without calling the LLM.

:func:`make_plan` retrieves and packs the request exactly as a run does (it runs the run's
own graph), replays every call through the real LLM gateway with the offline simulator's
answers standing in for the model's, and schedules the calls under the provider's limits.
Figures that depend on what the model answers are marked as estimates, with their source.
"""

from ._model import NodePlan, Plan, PlanLimits, render_plan
from ._plan import make_plan, provider_profile
from ._schedule import PlannedCall, Schedule, schedule

__all__ = [
    "NodePlan",
    "Plan",
    "PlanLimits",
    "PlannedCall",
    "Schedule",
    "make_plan",
    "provider_profile",
    "render_plan",
    "schedule",
]
