"""Documents page in a real browser against the real server: upload with per-file outcome,
a bad file named with its reason while the others are stored, filters and delete."""

from __future__ import annotations

import re
from pathlib import Path

from _stack import UPLOAD_LIMIT_MB
from playwright.sync_api import expect

STACK_WORKER = False


def test_upload_reports_each_file_and_lists_filters_deletes(stack, page, tmp_path: Path) -> None:
    good = tmp_path / "pension-note.md"
    good.write_text(
        "---\ntitle: Pension note\ncountry: CL\ndoc_type: technical_report\n---\n"
        "# Pension note\n\nVoluntary pension savings grew among gig workers in Chile.\n"
    )
    plain = tmp_path / "market.txt"
    plain.write_text("Mobile wallets reach most adults in Peru; agents cash out remittances.\n")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.7\nthis is not really a PDF\n")
    huge = tmp_path / "huge.txt"
    huge.write_bytes(b"x" * (UPLOAD_LIMIT_MB * 1024 * 1024 + 1))

    page.goto(f"{stack.url}/#/documents")
    page.locator("input[type=file]:not([webkitdirectory])").set_input_files(
        [good, plain, broken, huge]
    )
    # Per-file country and type: the text file is Peru's, an official document.
    page.get_by_label("Country of market.txt").select_option("PE")
    page.get_by_label("Type of market.txt").select_option("official")
    page.get_by_role("button", name="Upload 4 files").click()

    def status(name: str):
        return page.locator(f'tr[data-file="{name}"] .file-status')

    expect(status("pension-note.md")).to_contain_text(re.compile(r"ingested \(\d+ chunks?\)"))
    expect(status("market.txt")).to_contain_text("ingested")
    expect(status("broken.pdf")).to_contain_text("failed")
    expect(status("broken.pdf")).to_contain_text(re.compile(r"failed: .{8,}"))  # a reason
    expect(status("huge.txt")).to_contain_text(f"upload limit ({UPLOAD_LIMIT_MB} MB)")
    expect(page.get_by_role("status").filter(has_text="files stored")).to_have_text(
        "2 of 4 files stored, 2 failed (reasons above)."
    )

    docs = page.locator("tr[data-doc]")
    expect(docs).to_have_count(2)
    page.get_by_label("Country", exact=True).select_option("PE")
    expect(docs).to_have_count(1)
    expect(docs.first).to_contain_text("official")
    page.get_by_label("Country", exact=True).select_option("")
    page.get_by_label("Search").fill("pension")
    expect(docs).to_have_count(1)
    expect(docs.first).to_contain_text("Pension note")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Pension note").click()
    expect(page.get_by_text("No documents match.")).to_be_visible()
    page.get_by_label("Search").fill("")
    expect(docs).to_have_count(1)
    listed = stack.api("GET", "/v1/documents").json()["documents"]
    assert [d["country"] for d in listed] == ["PE"]
