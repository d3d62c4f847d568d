"""The browser harness itself: chromium starts headless, screenshots land, errors are caught."""

from __future__ import annotations

from _browser import ARTIFACTS, ConsoleWatch


def test_chromium_renders_and_screenshots(page, screenshot) -> None:
    page.set_content("<main><h1>harness</h1><label>name <input id=n></label></main>")
    page.get_by_label("name").fill("chromium")
    assert page.locator("#n").input_value() == "chromium"
    assert page.evaluate("navigator.userAgent").find("HeadlessChrome") >= 0
    path = screenshot(page, "harness")
    assert path.parent == ARTIFACTS
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_errors_and_exceptions_are_caught(browser) -> None:
    watch = ConsoleWatch()
    context = browser.new_context()
    try:
        page = context.new_page()
        watch.attach(page)
        page.set_content("<script>console.error('boom'); console.log('fine')</script>")
        with page.expect_event("pageerror"):
            page.evaluate("setTimeout(() => { throw new Error('kaput') }, 0)")
    finally:
        context.close()
    assert "console.error: boom" in watch.errors
    assert any("kaput" in e for e in watch.errors)
    assert all("fine" not in e for e in watch.errors)
    watch.allow(r"boom|kaput")
    assert watch.unexpected() == []
