"""The page's pure modules run in the browser, served as plain files (no API needed): the
YAML reader for profile files agrees with PyYAML, and refuses what it does not read with the
line number."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator

import pytest
import yaml
from _browser import ROOT

STATIC = ROOT / "src" / "proposals" / "server" / "static"

SAMPLES = [
    (ROOT / "examples" / "profiles.yaml").read_text(),
    "profiles:\n- name: 'it''s'   # a comment\n  description: |\n    line one\n    line two\n",
    'AR:\n  - name: "savers \\u00e9"\n    description: >-\n      folded\n      text\n\n      next\n'
    "BR: []\n",
    "- name: x\n  description: null\n- name: 42\n",
]


@pytest.fixture(scope="module")
def static_url() -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(STATIC))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(10)


def open_blank(page, static_url: str) -> None:
    """A document of the static folder's origin (so modules import), without the app."""
    page.route("**/favicon.ico", lambda route: route.fulfill(status=204))
    page.goto(f"{static_url}/app.css")


def parse(page, text: str):
    return page.evaluate("async (text) => (await import('/js/yaml.js')).parseYaml(text)", text)


@pytest.mark.parametrize("sample", range(len(SAMPLES)))
def test_yaml_reader_agrees_with_pyyaml(page, static_url: str, sample: int) -> None:
    open_blank(page, static_url)
    assert parse(page, SAMPLES[sample]) == yaml.safe_load(SAMPLES[sample])


def test_yaml_reader_names_the_line_it_cannot_read(page, static_url: str) -> None:
    open_blank(page, static_url)
    for text, message in [
        ("- name: a\n  tags: [x, y]\n", "line 2: flow collections are not supported"),
        ("name: a\n   description: b\n", "line 2: unexpected indentation"),
    ]:
        error = page.evaluate(
            "async (text) => { try { (await import('/js/yaml.js')).parseYaml(text) }"
            " catch (e) { return e.message } }",
            text,
        )
        assert error is not None and error.startswith(message), error


def test_static_files_are_all_referenced() -> None:
    """Every module is imported by another (no dead files shipped)."""
    modules = {p.name for p in (STATIC / "js").glob("*.js")}
    text = "".join(p.read_text() for p in STATIC.rglob("*") if p.is_file())
    assert {m for m in modules if f"./{m}" not in text and f"js/{m}" not in text} == set()
