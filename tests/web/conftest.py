"""Browser fixtures: Debian's headless chromium driven by Playwright's sync API.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (``make test``
installs it with apt where it is missing). Every page is watched: a console error or an
uncaught exception fails the test unless the test allowed that message by pattern (a test
that stops the server on purpose expects refused connections). Screenshots go to
``test-artifacts/`` at the top of the checkout (ignored by git), and a failing test leaves
one of the page as it was.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import ARTIFACTS, CHROMIUM, DESKTOP, LAUNCH_ARGS, ConsoleWatch, artifact_name
from _stack import Stack, running_stack
from playwright.sync_api import expect

# Ingesting, a run, a restart: the page gets a generous deadline, and fails loudly past it.
expect.set_options(timeout=60_000)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="session", autouse=True)
def _fresh_failure_screenshots() -> None:
    """Screenshots of failures from an earlier session would mislead: remove them."""
    for stale in ARTIFACTS.glob("failed-*.png"):
        stale.unlink()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium per test module. Not for the whole session: while Playwright's
    sync API is running it leaves its event loop marked as running in this thread, and an
    asyncio test collected after a browser test would fail to start its own."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield browser
        browser.close()
    finally:
        pw.stop()


@pytest.fixture
def console() -> ConsoleWatch:
    """The console watch of this test's pages (``console.allow(pattern)`` to expect one)."""
    return ConsoleWatch()


@pytest.fixture
def new_page(
    browser: Any, console: ConsoleWatch, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Any]]:
    """Opens watched pages (``new_page(viewport=PHONE)``); fails the test on console errors."""
    contexts: list[Any] = []
    pages: list[Any] = []

    def open_page(viewport: dict[str, int] | None = None) -> Any:
        context = browser.new_context(viewport=viewport or DESKTOP, accept_downloads=True)
        context.set_default_timeout(20_000)
        contexts.append(context)
        page = context.new_page()
        console.attach(page)
        pages.append(page)
        return page

    yield open_page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        for i, page in enumerate(pages):
            name = artifact_name(f"failed-{request.node.name}-{i}")
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    for context in contexts:
        context.close()
    unexpected = console.unexpected()
    if unexpected:
        pytest.fail("the page logged errors:\n" + "\n".join(unexpected))


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    """A watched page at 1280x800."""
    return new_page()


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    """``screenshot(page, name)`` writes ``test-artifacts/<name>.png`` (whole page)."""

    def take(page: Any, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{artifact_name(name)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture(scope="module")
def stack(
    pg_server: Any, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    """``proposals worker`` and ``proposals serve --no-auth`` on loopback over a fresh database
    (one per test module); their logs are kept in ``test-artifacts/logs/<module>/``. A module
    sets ``STACK_AUTH = True`` for a server that wants API keys, ``STACK_WORKER = False`` when
    it starts no run."""
    import psycopg

    name = f"web_{uuid.uuid4().hex[:10]}"
    pg_server.psql(f"CREATE DATABASE {name};")
    module = tmp_path_factory.mktemp("web")
    logs = ARTIFACTS / "logs" / request.module.__name__
    shutil.rmtree(logs, ignore_errors=True)
    try:
        auth = getattr(request.module, "STACK_AUTH", False)
        worker = getattr(request.module, "STACK_WORKER", True)
        with running_stack(
            pg_server.get_uri(name), module / "data", logs, auth=auth, worker=worker
        ) as running:
            yield running
    finally:
        with psycopg.connect(pg_server.get_uri("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
