"""The public surface of each package is exactly its ``__all__``: nothing public is left out
of it, and nothing internal is exported by accident (as httpx's test_exported_members)."""

from __future__ import annotations

import importlib
import types

import pytest

PACKAGES = ["proposals.llm", "proposals.store", "proposals.pipeline", "proposals.ingest"]


@pytest.mark.parametrize("name", PACKAGES)
def test_public_names_are_exactly_all(name: str) -> None:
    module = importlib.import_module(name)
    public = {
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and not isinstance(value, types.ModuleType)
        and n not in {"annotations", "TYPE_CHECKING"}
    }
    assert public == set(module.__all__), name
    assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), n))


def test_llm_exports_what_users_need_and_no_internals() -> None:
    import proposals.llm as llm

    assert {"LLMGateway", "GatewayConfig", "ResponseCache", "call_splitting", "pack"} <= set(
        llm.__all__
    )
    for internal in ("AdaptiveLimiter", "RateBudget", "RetryPolicy", "UsageLedger", "classify"):
        assert not hasattr(llm, internal), internal
