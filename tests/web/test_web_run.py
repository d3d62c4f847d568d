"""The run pages in a real browser against real processes (a worker, a server, the simulator):
upload the sample corpus, start a run from the form, watch it finish, read a cited excerpt,
download the report; the live view across a server restart; the form's errors by field.

Requests stay small (one country, one profile, two or three themes) so the module runs in
about a minute. Screenshots of the live view and the results at desktop and phone widths are
written to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from _browser import PHONE, ROOT
from playwright.sync_api import expect

CORPUS = ROOT / "examples" / "corpus"
NODES = [
    "retrieve",
    "analyze",
    "plan",
    "market_fit",
    "regulation",
    "feasibility",
    "positioning",
    "synthesize",
]
RUN_DEADLINE_MS = 240_000


def seqs(page: Any) -> list[int]:
    """The seq of every row of the page's event log, in order."""
    return page.eval_on_selector_all("#event-log li", "rows => rows.map(r => +r.dataset.seq)")


def unnamed_controls(page: Any) -> list[str]:
    """Form controls and buttons of the page that have no accessible name (label,
    aria-label or text): each one is a control a screen reader cannot announce."""
    return page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(el => !(el.labels?.length || el.getAttribute('aria-label')
                            || el.textContent.trim()))
            .map(el => el.outerHTML.slice(0, 120))"""
    )


def wait_finished(page: Any) -> None:
    expect(page.locator("#connection")).to_have_attribute(
        "data-state", "finished", timeout=RUN_DEADLINE_MS
    )


@pytest.fixture(scope="module")
def corpus(stack: Any, browser: Any, tmp_path_factory: pytest.TempPathFactory) -> int:
    """Argentina's and the global documents of the sample corpus, uploaded through the page
    (a folder pick: country and type come from the folder names). Returns the file count."""
    folder = tmp_path_factory.mktemp("corpus") / "corpus"
    for part in ("AR", "global"):
        shutil.copytree(CORPUS / part, folder / part)
    count = sum(1 for p in folder.rglob("*") if p.is_file())
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/#/documents")
        page.locator("input[webkitdirectory]").set_input_files(folder)
        page.get_by_role("button", name=f"Upload {count} files").click()
        expect(page.get_by_role("status").filter(has_text="files stored")).to_have_text(
            f"{count} of {count} files stored."
        )
        expect(page.locator("tr[data-doc]")).to_have_count(count)
    finally:
        context.close()
    return count


def test_whole_flow(stack, corpus, page, new_page, screenshot, tmp_path: Path) -> None:
    # Documents stored with country and type from their folders.
    docs = stack.api("GET", "/v1/documents").json()["documents"]
    assert len(docs) == corpus
    assert {
        (d["country"], d["doc_type"]) for d in docs if d["path"].endswith("/savings-account.md")
    } == {("AR", "product_description")}

    # New run from the form.
    page.goto(f"{stack.url}/#/new")
    page.get_by_label("Brief").fill("savings products for households")
    page.get_by_label("Search countries").fill("argen")
    page.locator('.checklist input[value="AR"]').check()
    expect(page.locator(".chips")).to_contain_text("AR")
    # Profiles from the sample YAML file; the second one removed to keep the run small.
    page.locator('input[type=file][accept=".yaml,.yml,.json"]').set_input_files(
        ROOT / "examples" / "profiles.yaml"
    )
    expect(page.get_by_text("2 profiles loaded from profiles.yaml.")).to_be_visible()
    expect(page.get_by_label("Profile 2 name", exact=True)).to_have_value(
        "rural smallholder families"
    )
    page.get_by_role("button", name="Remove profile 2").click()
    expect(page.get_by_label("Profile 1 name", exact=True)).to_have_value("young urban savers")
    expect(page.get_by_label("Profile 2 name", exact=True)).to_have_count(0)
    page.get_by_label("Variable 1", exact=True).fill("channel")
    page.get_by_label("Value", exact=True).fill("mobile")
    page.locator("details.options summary").click()
    expect(page.get_by_label("Themes")).to_have_attribute("placeholder", "9")  # the default
    page.get_by_label("Themes").fill("2")
    page.get_by_label("Proposals per country and profile").fill("2")
    assert unnamed_controls(page) == []
    page.get_by_role("button", name="Start run").click()
    expect(page).to_have_url(re.compile(r"#/runs/[0-9a-f]+$"))
    run_id = page.url.rsplit("/", 1)[1]

    # Live view until the end: every event once, in order; every node done.
    wait_finished(page)
    expect(page.locator("#run-status")).to_have_text("completed")
    record = stack.api("GET", f"/v1/runs/{run_id}").json()
    assert record["status"] == "completed"
    assert record["request"]["variables"] == {"channel": "mobile"}
    assert record["request"]["options"]["themes"] == 2
    assert seqs(page) == list(range(1, record["last_seq"] + 1))
    for node in NODES:
        expect(page.locator(f'.node[data-node="{node}"]')).to_have_attribute("data-state", "done")
    expect(page.locator("#stat-left")).to_have_text("done")
    expect(page.locator("#stat-tokens")).to_contain_text(" in / ")
    page.get_by_label("Show").select_option("proposals")
    expect(page.locator("#event-log li")).to_have_count(2)
    page.get_by_label("Show").select_option("all")
    assert unnamed_controls(page) == []
    screenshot(page, "live-desktop")

    phone = new_page(viewport=PHONE)
    phone.goto(f"{stack.url}/#/runs/{run_id}")
    wait_finished(phone)
    assert seqs(phone) == list(range(1, record["last_seq"] + 1))
    screenshot(phone, "live-phone")

    # Results: simulated banner, grouped by country and profile, sortable by score.
    page.locator("#results-link").click()
    expect(page.locator("#simulated-banner")).to_contain_text("SIMULATED")
    group = page.locator('section.country[data-country="AR"] section.pair')
    expect(group).to_have_attribute("data-profile", "young urban savers")
    cards = group.locator("article.proposal")
    expect(cards).to_have_count(2)
    page.get_by_label("Sort proposals by").select_option("score-asc")
    scores = [float(s) for s in cards.evaluate_all("cs => cs.map(c => c.dataset.score)")]
    assert scores == sorted(scores)
    page.get_by_label("Sort proposals by").select_option("score-desc")
    scores = [float(s) for s in cards.evaluate_all("cs => cs.map(c => c.dataset.score)")]
    assert scores == sorted(scores, reverse=True)
    assert unnamed_controls(page) == []
    screenshot(page, "results-desktop")

    # A citation opens its excerpt with document, page and section.
    citation = cards.first.locator("button.citation").first
    chunk_id = citation.get_attribute("data-chunk")
    hit = stack.api("GET", f"/v1/chunks/{chunk_id}").json()
    citation.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#excerpt-title")).to_have_text(hit["citation"]["title"])
    expect(dialog.locator("#excerpt-where")).to_contain_text(hit["citation"]["path"])
    expect(dialog.locator("#excerpt-where")).to_contain_text(f"chunk {chunk_id}")
    expect(dialog.locator("#excerpt-text")).to_have_text(hit["text"].strip())
    screenshot(page, "results-excerpt-desktop")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()

    # Downloads: Markdown from the API, JSON of the result.
    with page.expect_download() as info:
        page.locator("#download-md").click()
    markdown = Path(info.value.path()).read_text()
    first_title = cards.first.locator("h4").inner_text().split(" ", 1)[1]
    assert first_title in markdown and "SIMULATED" in markdown.upper()
    with page.expect_download() as info:
        page.locator("#download-json").click()
    assert info.value.suggested_filename == f"proposals-{run_id}.json"
    result = json.loads(Path(info.value.path()).read_text())
    assert result["run_id"] == run_id and len(result["proposals"]) == 2

    phone.goto(f"{stack.url}/#/runs/{run_id}/results")
    expect(phone.locator("#simulated-banner")).to_be_visible()
    screenshot(phone, "results-phone")

    # The runs list shows it, completed, with its age.
    page.get_by_role("link", name="Runs", exact=True).click()
    row = page.locator(f'tr[data-run="{run_id}"]')
    expect(row).to_contain_text("completed")
    expect(row).to_contain_text("ago")
    assert unnamed_controls(page) == []
    page.get_by_role("link", name="Documents").click()
    expect(page.locator("tr[data-doc]")).to_have_count(corpus)
    assert unnamed_controls(page) == []

    # Keyboard: on a fresh load the skip link comes first and moves focus to the content.
    page.reload()
    expect(page.locator("tr[data-doc]")).to_have_count(corpus)
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    expect(page).to_have_url(re.compile(r"#/documents$"))


def test_live_view_survives_a_server_restart(stack, corpus, page, console) -> None:
    """The server is killed mid-run and started again: the page says it is reconnecting,
    resumes after the last event it saw, then follows the rest live."""
    # While the server is down the page's reconnection attempts are refused; a request in
    # flight when it is killed ends empty, cut, or reset.
    console.allow(
        r"ERR_CONNECTION_REFUSED|ERR_CONNECTION_RESET|ERR_EMPTY_RESPONSE"
        r"|ERR_INCOMPLETE_CHUNKED_ENCODING"
    )
    request = {
        "brief": "microinsurance for rural households",
        "countries": ["AR"],
        "profiles": [{"name": "rural smallholder families", "description": "seasonal income"}],
        "options": {"themes": 3, "proposals_per_pair": 2},
    }
    run_id = stack.api("POST", "/v1/runs", json=request).json()["id"]
    page.goto(f"{stack.url}/#/runs/{run_id}")
    expect(page.locator('.node[data-node="retrieve"]')).not_to_have_attribute(
        "data-state", "waiting"
    )
    # Freeze the run where it is (the worker keeps its lease), so that it is still going when
    # the server is back and its last events can only arrive live.
    stack.worker.send(signal.SIGSTOP)
    try:
        stack.server.stop(signal.SIGKILL)  # no goodbye: the stream just breaks
        expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
        expect(page.locator("#connection")).to_have_text("reconnecting…")
        before = seqs(page)
        stack.start_server()
        expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        assert stack.api("GET", f"/v1/runs/{run_id}").json()["status"] == "running"
    finally:
        stack.worker.send(signal.SIGCONT)

    wait_finished(page)
    record = stack.api("GET", f"/v1/runs/{run_id}").json()
    assert record["status"] == "completed"
    after = seqs(page)
    assert after[: len(before)] == before
    assert after == list(range(1, record["last_seq"] + 1))  # every event exactly once
    assert page.locator("#event-log li").last.get_attribute("data-type") == "run_finished"
    expect(page.locator("#run-status")).to_have_text("completed")
    for node in NODES:
        expect(page.locator(f'.node[data-node="{node}"]')).to_have_attribute("data-state", "done")


def test_invalid_run_form_shows_errors_next_to_fields(stack, page, console) -> None:
    console.allow(r"status of 422")  # the server's answer to the invalid form
    page.goto(f"{stack.url}/#/new")
    page.get_by_label("Brief").fill("ab")
    page.get_by_label("Description").fill("a profile without a name")
    page.locator("details.options summary").click()
    page.get_by_label("Themes").fill("0")
    page.get_by_role("button", name="Start run").click()

    expect(page.locator('[data-for="brief"]')).to_contain_text("at least 3 characters")
    expect(page.locator('[data-for="countries"]')).to_contain_text("at least 1 item")
    expect(page.locator('[data-for="profiles.0.name"]')).to_contain_text("at least 1 character")
    expect(page.locator('[data-for="options.themes"]')).to_contain_text(
        "greater than or equal to 1"
    )
    expect(page.get_by_label("Brief")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Themes")).to_have_attribute("aria-invalid", "true")
    expect(page).to_have_url(re.compile(r"#/new$"))
    runs = stack.api("GET", "/v1/runs").json()["runs"]
    assert all(r["request"]["brief"] != "ab" for r in runs)

    # Corrected, the same form starts the run; with no worker running it stays queued and
    # is cancelled from the page.
    stack.worker.stop()
    try:
        page.get_by_label("Brief").fill("pension savings for gig workers")
        page.locator('.checklist input[value="AR"]').check()
        page.get_by_label("Profile 1 name", exact=True).fill("gig workers")
        page.get_by_label("Themes").fill("1")
        page.get_by_role("button", name="Start run").click()
        expect(page).to_have_url(re.compile(r"#/runs/[0-9a-f]+$"))
        run_id = page.url.rsplit("/", 1)[1]
        expect(page.locator("#run-status")).to_have_text("queued")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Cancel run").click()
        expect(page.locator("#run-status")).to_have_text("cancelled")
        wait_finished(page)
        assert stack.api("GET", f"/v1/runs/{run_id}").json()["status"] == "cancelled"
        assert page.locator("#event-log li").last.get_attribute("data-type") == "run_finished"
    finally:
        stack.worker.start()
