"""Loaders (every format, good and bad files), the splitter and the metadata precedence."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from proposals.errors import IngestError
from proposals.ingest import Block, load_file, split_blocks
from proposals.ingest._meta import UNSET, folder_hints, resolve_meta
from proposals.tokens import count_tokens

CORPUS = Path(__file__).resolve().parent.parent / "examples" / "corpus"


def _write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


# --- good files --------------------------------------------------------------------------------


def test_markdown_front_matter_and_heading_path(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "a.md",
        (
            "---\ntitle: Rules\ncountry: ar\ndoc_type: official\n---\n# Rules\n\n## Scope\n"
            "Applies to banks.\n\n```\n# not a heading\n```\n\n### Detail\nThree per month.\n"
        ),
    )
    doc = load_file(path)
    assert doc.title == "Rules"
    assert doc.metadata == {"title": "Rules", "country": "ar", "doc_type": "official"}
    body = [b for b in doc.blocks if not b.heading]
    assert body[0].text == "Applies to banks."
    assert body[0].section == "Rules > Scope"
    assert "# not a heading" in body[1].text and body[1].section == "Rules > Scope"
    assert body[-1].section == "Rules > Scope > Detail"


def test_html_title_headings_meta_and_no_scripts(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "p.html",
        (
            "<html><head><title>Wallet rule</title><meta name='country' content='BR'>"
            "<script>var secret = 1;</script></head><body><h1>Rule</h1><p>Intro text.</p>"
            "<h2>Limits</h2><ul><li>Max <b>5,000</b> reais.</li></ul></body></html>"
        ),
    )
    doc = load_file(path)
    assert doc.title == "Wallet rule"
    assert doc.metadata["country"] == "BR"
    texts = {b.text: b.section for b in doc.blocks if not b.heading}
    assert texts == {"Intro text.": "Rule", "Max 5,000 reais.": "Rule > Limits"}
    assert all("secret" not in b.text for b in doc.blocks)


def test_json_flattened_into_readable_sections(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "s.json",
        json.dumps(
            {
                "title": "Survey",
                "country": "MX",
                "doc_type": "official",
                "survey": {"year": 2024, "method": "sample"},
                "items": [
                    {"name": "Savings", "share_pct": 30.5},
                    {"name": "Cash", "share_pct": 20},
                ],
                "tags": ["a", "b"],
            }
        ),
    )
    doc = load_file(path)
    assert doc.title == "Survey" and doc.metadata["country"] == "MX"
    by_section = {b.section: b.text for b in doc.blocks if not b.heading}
    assert by_section[None] == "Tags: a, b"
    assert by_section["Survey"] == "Year: 2024\nMethod: sample"
    assert by_section["Items > Savings"] == "Name: Savings\nShare pct: 30.5"


def test_text_title_and_underlined_headings(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "t.txt",
        "Market study\n============\n\nFirst para.\n\nLimits\n------\n\nSecond.\n",
    )
    doc = load_file(path)
    assert doc.title == "Market study"
    assert [(b.text, b.section) for b in doc.blocks if not b.heading] == [
        ("First para.", "Market study"),
        ("Second.", "Limits"),
    ]


def test_non_utf8_latin1_text_is_decoded(tmp_path: Path) -> None:
    path = _write(tmp_path, "es.txt", "Año de ahorro: la cuota es pequeña.\n".encode("latin-1"))
    doc = load_file(path)
    assert doc.blocks[0].text == "Año de ahorro: la cuota es pequeña."


def test_pdf_pages_are_kept() -> None:
    doc = load_file(CORPUS / "AR" / "technical_report" / "savings-pilot-evaluation.pdf")
    assert doc.title == "Evaluation of the Cuenta Alcancia Quebracho pilot in Argentina"
    assert {b.page for b in doc.blocks} == {1, 2, 3}
    assert any("Operation Qbr-Harvest" in b.text and b.page == 3 for b in doc.blocks)


def _sec_10q() -> Path:
    """``../shared/data/sec-10q/docs`` beside the checkout (for a git worktree: beside the main
    checkout, found through git's common directory)."""
    root = Path(__file__).resolve().parents[1]
    common = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    for base in (root.parent, *([Path(common).parent.parent] if common else [])):
        if (base / "shared").is_dir():
            return base / "shared" / "data" / "sec-10q" / "docs"
    return root.parent / "shared" / "data" / "sec-10q" / "docs"


SEC_10Q = _sec_10q()


@pytest.mark.skipif(
    not SEC_10Q.is_dir(), reason="../shared/data/sec-10q is not beside the checkout"
)
def test_real_filing_loads_with_its_title_and_pages() -> None:
    doc = load_file(SEC_10Q / "2023 Q2 AAPL.pdf")
    assert doc.title == "0000320193-23-000064"  # the filing's own metadata title
    assert sorted({b.page for b in doc.blocks}) == list(range(1, 29))
    assert any(b.text.startswith("Note 2 \u2013 Revenue") for b in doc.blocks)


def test_docx_headings_and_tables() -> None:
    doc = load_file(CORPUS / "BR" / "technical_report" / "savings-pilot-evaluation.docx")
    assert doc.title == "Evaluation of the Cofre Ipe pilot in Brazil"
    sections = {b.section for b in doc.blocks if not b.heading}
    assert {"Summary", "Results", "Recommendations"} <= sections
    assert any(b.text.startswith("Status | Fictional") for b in doc.blocks)


# --- bad files ---------------------------------------------------------------------------------


def _pdf_bytes() -> bytes:
    return (CORPUS / "MX" / "technical_report" / "savings-pilot-evaluation.pdf").read_bytes()


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.txt", b"", "empty file"),
        ("blank.md", b"   \n\n  ", "empty file"),
        ("junk.txt", bytes(range(256)) * 40, "binary"),
        ("junk2.txt", b"\x01\x02\x03\x04\x05\x06\x07\x08abc" * 50, "control characters"),
        ("broken.json", b'{"a": [1, 2', "invalid JSON"),
        ("fake.pdf", b"hello, I am not a PDF", "not a PDF"),
        ("fake.docx", b"PK\x03\x04 not really a zip", "not a readable DOCX"),
        ("image.png", b"\x89PNG\r\n", "unsupported file type"),
        ("front.md", b"---\ntitle: [unclosed\n---\nbody\n", "invalid YAML"),
        ("only-heading.md", b"# Title only\n", "no text"),
    ],
)
def test_bad_files_raise_ingest_error_with_reason(
    tmp_path: Path, name: str, data: bytes, reason: str
) -> None:
    path = _write(tmp_path, name, data)
    with pytest.raises(IngestError, match=reason) as info:
        load_file(path)
    assert info.value.path == str(path)


def test_truncated_pdf_is_refused(tmp_path: Path) -> None:
    data = _pdf_bytes()
    path = _write(tmp_path, "cut.pdf", data[: len(data) // 2])
    with pytest.raises(IngestError, match="truncated"):
        load_file(path)


def test_encrypted_pdf_is_refused(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(_pdf_bytes())).pages:
        writer.add_page(page)
    writer.encrypt(user_password="s3cret", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    path = _write(tmp_path, "locked.pdf", buf.getvalue())
    with pytest.raises(IngestError, match="encrypted PDF"):
        load_file(path)


def test_pdf_that_neither_engine_reads_is_reported_as_damaged(tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.pdf", b"%PDF-1.7\n" + bytes(range(256)) + b"\n%%EOF\n")
    with pytest.raises(IngestError, match="damaged PDF") as info:
        load_file(path)
    assert info.value.path == str(path)


# --- splitter ----------------------------------------------------------------------------------


def test_splitter_respects_size_sections_and_overlap() -> None:
    para = " ".join(
        f"Sentence number {i} talks about savings goals and deposits." for i in range(12)
    )
    blocks = [
        Block(para, section="A", page=1),
        Block(para, section="A", page=2),
        Block("Short one.", section="B", page=2),
    ]
    chunks = split_blocks(blocks, chunk_tokens=60, overlap=10)
    assert all(c.token_count <= 60 for c in chunks)
    assert [c.ord for c in chunks] == list(range(len(chunks)))
    assert {c.section for c in chunks} == {"A", "B"}
    assert chunks[-1].text == "Short one." and chunks[-1].page == 2
    assert chunks[0].page == 1
    a_chunks = [c for c in chunks if c.section == "A"]
    # consecutive chunks of one section share their boundary words
    assert a_chunks[1].text.split()[0] in a_chunks[0].text.split()[-12:]


def test_huge_single_line_is_split_by_tokens() -> None:
    line = "x" * 400_000 + " " + "word " * 100_000  # no sentence ends, no newlines
    chunks = split_blocks([Block(line)], chunk_tokens=200, overlap=20)
    assert len(chunks) > 100
    assert max(c.token_count for c in chunks) <= 200
    total_x = sum(c.text.count("x") for c in chunks)
    assert total_x >= 400_000  # nothing dropped (overlap may repeat some)


def test_chunk_token_counts_are_real_counts() -> None:
    chunks = split_blocks(
        [Block("Alpha beta gamma. " * 300, section="S")], chunk_tokens=100, overlap=0
    )
    assert all(c.token_count == count_tokens(c.text) for c in chunks)


# --- metadata precedence -----------------------------------------------------------------------


def test_folder_convention(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    assert folder_hints(root / "AR" / "official" / "x.md", root) == ("AR", "official")
    assert folder_hints(root / "global" / "products" / "x.md", root) == (
        None,
        "product_description",
    )
    country, doc_type = folder_hints(root / "co" / "notes" / "x.md", root)
    assert country is UNSET and doc_type is None  # lower-case 'co' is not taken for Colombia
    # a single file: its two nearest folders
    assert folder_hints(tmp_path / "CL" / "technical-reports" / "r.txt", None) == (
        "CL",
        "technical_report",
    )


def test_precedence_flags_over_front_matter_over_folder(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    path = root / "AR" / "official" / "x.md"
    meta = resolve_meta(path, root, {}, None)
    assert (meta.country, meta.doc_type, meta.title) == ("AR", "official", "x")
    meta = resolve_meta(path, root, {"country": "br", "doc_type": "products"}, "T")
    assert (meta.country, meta.doc_type, meta.title) == ("BR", "product_description", "T")
    meta = resolve_meta(path, root, {"country": "BR"}, "T", country="global", doc_type="other")
    assert (meta.country, meta.doc_type) == (None, "other")
    with pytest.raises(IngestError, match="ISO 3166-1"):
        resolve_meta(path, root, {"country": "Argentina"}, None)
