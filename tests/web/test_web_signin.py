"""Sign-in against a server that wants API keys: the page asks for a key, refuses a wrong one,
keeps the right one for the browser tab only, and shows only that tenant's data."""

from __future__ import annotations

from playwright.sync_api import expect

STACK_AUTH = True
STACK_WORKER = False


def test_sign_in_with_an_api_key(stack, page, new_page, console) -> None:
    console.allow(r"status of 401")  # the page's probe, and the wrong key
    key = stack.create_key("acme")
    page.goto(stack.url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()

    page.get_by_label("API key").fill("pk_wrong_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("That key was refused")

    page.get_by_label("API key").fill(key)
    page.keyboard.press("Enter")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('proposals.apiKey')") == key
    assert page.evaluate("localStorage.length") == 0

    # The key goes with every call (this tenant has no documents yet); another browser
    # session starts signed out.
    page.get_by_role("link", name="Documents").click()
    expect(page.get_by_text("No documents match.")).to_be_visible()
    other = new_page()
    other.goto(stack.url)
    expect(other.get_by_role("heading", name="Sign in")).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('proposals.apiKey')") is None
