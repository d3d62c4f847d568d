"""Write the PDF and DOCX documents of the FICTIONAL sample corpus (needs fpdf2, python-docx).

    python scripts/make_corpus_binaries.py

The generated files are committed, so this only needs running after editing the texts below.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import docx
from fpdf import FPDF

sys.path.insert(0, str(Path(__file__).parent))
from _corpus_data import COUNTRIES, NOTICE

ROOT = Path(__file__).resolve().parent.parent / "examples" / "corpus"
_FIXED_DATE = datetime(2024, 6, 1, tzinfo=UTC)  # reproducible files


def pilot_report(cc: str, c: dict) -> tuple[str, list[tuple[str, list[str]]]]:
    """(title, [(heading, paragraphs)]) of a country's pilot evaluation."""
    title = f"Evaluation of the {c['savings_product']} pilot in {c['name']}"
    sections = [
        (
            "Summary",
            [
                NOTICE,
                f"Between February and November {c['year'] - 1}, {c['provider']} piloted the "
                f"{c['savings_product']} account (code {c['savings_code']}) with 2,400 households in "
                f"{c['region']}. Half of them were offered the commitment feature; the other half a "
                "plain account. This report, commissioned by the "
                f"{c['reg_short']}, compares the two groups.",
                "Main result: households offered commitment goals held balances 46 percent higher "
                "after nine months, and 61 percent of them were still depositing at least once a "
                "month, against 38 percent in the plain group.",
            ],
        ),
        (
            "Design of the pilot",
            [
                "Households were drawn at random from the client lists of 31 agents. Randomisation "
                "was done by agent, not by household, to avoid spill-overs between neighbours.",
                f"The commitment group could choose the {c['rare_term']}, {c['rare_meaning']}. "
                "Uptake of that option was 27 percent among those offered it.",
                f"Balances could be held in {c['money']} or in {c['index_short']}; 35 percent of savers "
                "chose the indexed option after an agent explained it with a price-of-bread example.",
            ],
        ),
        (
            "Results",
            [
                f"Average balance after nine months: {c['min_deposit'] * 41:,} {c['money']} in the "
                f"commitment group against {c['min_deposit'] * 28:,} {c['money']} in the plain group.",
                "Emergency withdrawals were used by 12 percent of committed savers, mostly for "
                "medical costs. None of them closed the account afterwards.",
                "Dormancy after nine months: 14 percent (commitment) against 29 percent (plain).",
                "Complaints: 23 in total, 17 about agent cash shortages on paydays.",
            ],
        ),
        (
            "Cost to the provider",
            [
                "Cost per active account per year was estimated at 4.10 US dollars, two thirds of "
                "it agent commissions. SMS reminders cost 0.22 dollars per saver and explained "
                "about a quarter of the difference between groups, the cheapest lever observed.",
            ],
        ),
        (
            "Recommendations",
            [
                "Scale the commitment feature to all branches; keep emergency exits simple; pay "
                "agents a bonus for active savers rather than for accounts opened; add the "
                f"{c['insurance_product']} cover as an opt-in for balances above the threshold.",
                f"Internal project name for the scale-up: Operation {c['savings_code'].split('-')[0].title()}-Harvest.",
            ],
        ),
    ]
    return title, sections


GLOBAL_PDF = (
    "Behavioural levers for household savings: a review of 60 field experiments",
    [
        (
            "Summary",
            [
                NOTICE,
                "This review, prepared for the International Household Finance Forum (IHFF), "
                "summarises 60 randomised field experiments on household savings run between 2008 "
                "and 2023, most of them in Latin America. It ranks levers by effect per dollar.",
            ],
        ),
        (
            "Reminders",
            [
                "Simple reminders by SMS or app notification raised deposits by 6 percent on average. "
                "Reminders that named the saver's own goal (for example 'your roof fund') doubled "
                "the effect. The cost was below 0.30 dollars per saver per year.",
            ],
        ),
        (
            "Commitment devices",
            [
                "Locked goal accounts raised balances by 30 to 80 percent among those who chose them, "
                "but only 20 to 30 percent chose them. Soft commitment (a label, no lock) reached "
                "more people with smaller effects.",
                "The so-called Villarrica ladder, a sequence of deposits each unlocked one month "
                "after the previous, kept liquidity anxiety low and was the best-liked design.",
            ],
        ),
        (
            "Defaults and round-ups",
            [
                "Default enrolment of a share of wages or transfers into savings was the most "
                "powerful lever (participation above 80 percent) where an employer or a social "
                "programme pays the household electronically.",
                "Round-ups of card payments saved small amounts (2 to 4 dollars a month) but "
                "created a habit: users were twice as likely to make voluntary deposits later.",
            ],
        ),
        (
            "Lotteries and prizes",
            [
                "Prize-linked savings, where interest is pooled and paid as prizes drawn among "
                "savers, attracted younger and poorer savers than interest-paying accounts. Legal "
                "status varies: some countries classify them as gambling.",
            ],
        ),
        (
            "Conclusion",
            [
                "Combine a default or a commitment option with goal-named reminders; measure active "
                "savers at six and twelve months; publish the results.",
            ],
        ),
    ],
)

GLOBAL_DOCX = (
    "Interoperability of household payment wallets: technical guidance",
    [
        (
            "Purpose",
            [
                NOTICE,
                "This guidance from the IHFF payments working group describes how wallets of "
                "different providers should exchange instant payments addressed by phone number "
                "or QR code.",
            ],
        ),
        (
            "Addressing",
            [
                "A central directory maps phone numbers to account identifiers. Each provider "
                "queries it through an API with a 300 ms response-time objective. Customers confirm "
                "the recipient's masked name before sending.",
            ],
        ),
        (
            "Settlement",
            [
                "Transfers settle in central-bank money in real time; providers pre-fund a "
                "settlement position. A provider whose position falls below 110 percent of its "
                "peak-hour flows receives an automatic alert called a Tanager warning.",
            ],
        ),
        (
            "Fraud controls",
            [
                "Scoring of every transfer in under 50 ms; a 30-minute delay for first-time large "
                "transfers; a shared mule-account list updated every hour.",
            ],
        ),
        (
            "Fees",
            [
                "Interchange between wallets is capped at 0.15 percent; person-to-person transfers "
                "must be free to the customer up to a national threshold.",
            ],
        ),
    ],
)


def _latin1(text: str) -> str:
    return (
        text.replace("\u2014", "-")
        .replace("\u2019", "'")
        .encode("latin-1", "replace")
        .decode("latin-1")
    )


def write_pdf(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> None:
    pdf = FPDF()
    pdf.set_creation_date(_FIXED_DATE)
    pdf.set_title(_latin1(title))
    pdf.set_author("Fictional sample corpus")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 8, _latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for n, (heading, paragraphs) in enumerate(sections):
        if n and n % 2 == 0:
            pdf.add_page()  # several pages, so page numbers matter
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(0, 7, _latin1(heading), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 10.5)
        for para in paragraphs:
            pdf.multi_cell(0, 5.5, _latin1(para), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))


def write_docx(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> None:
    document = docx.Document()
    document.core_properties.title = title
    document.core_properties.author = "Fictional sample corpus"
    document.core_properties.created = _FIXED_DATE.replace(tzinfo=None)
    document.core_properties.modified = _FIXED_DATE.replace(tzinfo=None)
    document.add_heading(title, level=0)
    for heading, paragraphs in sections:
        document.add_heading(heading, level=1)
        for para in paragraphs:
            document.add_paragraph(para)
    table = document.add_table(rows=3, cols=2)
    for row, (key, value) in zip(
        table.rows,
        [("Status", "Fictional"), ("Audience", "Testing"), ("Version", "1.0")],
        strict=True,
    ):
        row.cells[0].text, row.cells[1].text = key, value
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(str(path))


def main() -> None:
    for cc, c in COUNTRIES.items():
        title, sections = pilot_report(cc, c)
        if cc in ("BR", "CL"):
            write_docx(
                ROOT / cc / "technical_report" / "savings-pilot-evaluation.docx", title, sections
            )
        else:
            write_pdf(
                ROOT / cc / "technical_report" / "savings-pilot-evaluation.pdf", title, sections
            )
    write_pdf(ROOT / "global" / "technical_report" / "behavioural-savings-levers.pdf", *GLOBAL_PDF)
    write_docx(ROOT / "global" / "technical_report" / "wallet-interoperability.docx", *GLOBAL_DOCX)
    print(f"PDF and DOCX documents written under {ROOT}")


if __name__ == "__main__":
    main()
