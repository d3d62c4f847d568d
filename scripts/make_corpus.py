"""Write the text-format documents of the FICTIONAL sample corpus in examples/corpus/.

    python scripts/make_corpus.py            # then scripts/make_corpus_binaries.py

Deterministic: running it again rewrites the same files. The PDF and DOCX documents come from
make_corpus_binaries.py. Layout: examples/corpus/<CC>/<doc_type>/<file> and
examples/corpus/global/<doc_type>/<file>.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _corpus_data import COUNTRIES, NOTICE

ROOT = Path(__file__).resolve().parent.parent / "examples" / "corpus"


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def write(rel: str, text: str) -> None:
    path = ROOT / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.strip() + "\n", encoding="utf-8")


def savings_regulation(cc: str, c: dict) -> str:
    return f"""---
title: "{c["rule"]}: rules for small household savings accounts in {c["name"]}"
country: {cc}
doc_type: official
issuer: "{c["regulator"]}"
fictional: true
---
# {c["rule"]}: small household savings accounts

> {NOTICE}

## Purpose and scope
This circular of the {c["regulator"]} sets the conditions under which regulated banks,
cooperatives and savings banks may offer simplified household savings accounts in {c["name"]}.
It applies to every account opened by a natural person whose balance stays below
{_n(c["deposit_cap"])} {c["money"]} ({c["currency"]}). Accounts above that ceiling follow the general
deposit regime. The rules take effect on 1 March {c["year"]} and replace the transitional
guidance of {c["year"] - 2}.

## Article 1. Opening with minimal documents
An institution may open a simplified account with a national identity document only, without
proof of address or income. The first deposit may be as small as {_n(c["min_deposit"])}
{c["money"]}. Remote opening by video or by an agent of the institution is allowed, provided the
customer's identity is checked against the national registry within 72 hours.

## Article 2. Deposit guarantee
Balances in simplified accounts are covered by the deposit guarantee fund up to
{_n(c["guarantee"])} {c["money"]} per person and per institution. The institution must state the
coverage on the first screen of its app and on every paper statement, in a font no smaller
than the body text.

## Article 3. Indexation
Institutions may denominate a simplified account in {c["index_unit"]}. The value of one
{c["index_short"]} is published every business day by the {c["stats"]}. An account held in
{c["index_short"]} may not charge a withdrawal fee during the first two withdrawals of each
calendar month.

## Article 4. Fees and withdrawals
No maintenance fee may be charged while the balance is below 10 percent of the ceiling.
Withdrawal fees may not exceed {c["fee_pct"]} percent of the amount withdrawn. Institutions must
allow at least four free withdrawals per month at their own branches or agents.

## Article 5. Commitment features
An institution may offer commitment savings: the customer chooses a goal, an amount and a date,
and agrees not to withdraw before that date except in an emergency declared in the account
terms (illness, death of a household member, loss of the dwelling). The practice known locally
as the *{c["rare_term"]}*, {c["rare_meaning"]}, is recognised as a commitment feature under this
article, and the institution must show the maturity calendar in advance.

## Article 6. Reporting
Each institution reports quarterly to the {c["reg_short"]} the number of simplified accounts,
the average balance, the share of dormant accounts (no movement for 180 days) and complaints
received. Dormant balances may never be absorbed by the institution; after 5 years they are
transferred to the national unclaimed-funds registry and remain claimable.

## Article 7. Sanctions
Breaches are sanctioned under the general regime of the {c["reg_short"]}. A repeated failure to
display deposit-guarantee information is a serious infringement.
"""


def statistics_json(cc: str, c: dict) -> str:
    data = {
        "title": f"Household finance survey {c['year']} - {c['name']} ({c['stats_short']})",
        "country": cc,
        "doc_type": "official",
        "notice": NOTICE,
        "publisher": c["stats"],
        "survey": {
            "reference_year": c["year"],
            "households_interviewed": int(c["households_m"] * 1000),
            "households_total_millions": c["households_m"],
            "method": "stratified two-stage sample of dwellings; face-to-face interviews",
            "margin_of_error_pct": 1.8,
        },
        "headline_indicators": {
            "households_with_a_bank_or_cooperative_account_pct": c["banked_pct"],
            "households_that_saved_in_the_last_12_months_pct": c["saving_pct"],
            "households_with_any_insurance_pct": c["insured_pct"],
            "workers_in_informal_employment_pct": c["informal_pct"],
            "annual_consumer_price_inflation_pct": c["inflation_pct"],
            "adults_who_made_a_digital_payment_pct": c["digital_pay_pct"],
        },
        "how_households_save": [
            {
                "name": "Formal savings account",
                "share_of_savers_pct": round(c["saving_pct"] * 0.9, 1),
            },
            {
                "name": "Cash kept at home",
                "share_of_savers_pct": round(100 - c["banked_pct"] + 12, 1),
            },
            {
                "name": "Informal groups",
                "share_of_savers_pct": round(c["informal_pct"] / 2, 1),
                "note": f"mostly {c['informal_saving']}",
            },
            {"name": "Durable goods and livestock", "share_of_savers_pct": 9.4},
        ],
        "insurance": {
            "most_feared_risk": c["hazard"],
            "reasons_for_not_buying": [
                "premiums seen as too expensive",
                "distrust that claims are paid",
                "does not know where to buy",
                "does not need it",
            ],
            "households_hit_by_a_shock_last_year_pct": 31.0,
        },
        "regional_gaps": {
            "lagging_regions": c["region"],
            "account_ownership_gap_points": 17.5,
        },
    }
    return json.dumps(data, indent=2, ensure_ascii=False)


def payments_rule_html(cc: str, c: dict) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{c["pay_rule"]}: instant payments and e-wallets for households ({c["name"]})</title>
<meta name="country" content="{cc}"><meta name="doc_type" content="official">
</head><body>
<p><strong>{NOTICE}</strong></p>
<h1>{c["pay_rule"]}</h1>
<p>Issued by the {c["regulator"]}. This rule governs electronic wallets and instant transfers
used by households in {c["name"]}, including wallets run by non-bank payment institutions.</p>
<h2>1. Safeguarding of customer funds</h2>
<p>Wallet providers must hold 100 percent of customer balances in segregated accounts at
regulated banks or in government bills with a maturity below 90 days. Customer money may not
be lent out or used to pay the provider's expenses.</p>
<h2>2. Limits for simplified wallets</h2>
<ul>
<li>Maximum balance: {_n(c["deposit_cap"] // 10)} {c["money"]}.</li>
<li>Maximum monthly transfers out: {_n(c["transfer_cap"])} {c["money"]}.</li>
<li>Instant transfers between any two wallets or accounts must settle within 10 seconds,
24 hours a day, 7 days a week.</li>
</ul>
<h2>3. Fees</h2>
<p>Person-to-person transfers below {_n(c["transfer_cap"] // 20)} {c["money"]} are free of charge.
Merchant fees may not exceed 1.2 percent of the payment. A provider that advertises a wallet
as free must not charge for cash-in at its own agents.</p>
<h2>4. Fraud and reversals</h2>
<p>A customer who reports an unauthorised transfer within 72 hours is refunded within
5 business days unless the provider proves gross negligence. Providers must offer a
"trusted contacts" mode that delays large first-time transfers by 30 minutes.</p>
<h2>5. Interoperability</h2>
<p>Every wallet must be reachable through the national QR standard and must accept
transfers addressed by phone number. Closed-loop wallets have 12 months to comply.</p>
<h2>6. Distribution through agents</h2>
<p>Cash-in and cash-out may be offered through {c["channel"]}. Agents must display the
provider's fee table and the complaint channel of the {c["reg_short"]}.</p>
</body></html>"""


def market_study_txt(cc: str, c: dict) -> str:
    return f"""Market study: household savings and microinsurance in {c["name"]} ({c["year"]})
=================================================================

{NOTICE}

Prepared by the research unit of {c["provider"]} for internal planning. Sources: the
{c["stats_short"]} household finance survey, supervisory data of the {c["reg_short"]} and 40
focus groups held in {c["region"]}.

Summary
-------

{c["saving_pct"]} percent of households saved something in the last year, but only a minority did so
in a formal product. Households prefer liquidity: they fear losing access to money in an
emergency more than they value interest. The most promising product designs combine a savings
account that is easy to open with a small insurance cover and a commitment feature.

Demand
------

Low-income households in {c["name"]} save in irregular amounts, typically after a good week of
sales or a seasonal payment. Focus-group participants described {c["informal_saving"]} as their
main method. Savers distrust products that lock money for long periods unless they can see the
date they will get it back. The practice called {c["rare_term"]} ({c["rare_meaning"]}) was
mentioned spontaneously in 11 of the 40 groups as a method that "forces" discipline.

Inflation matters: with consumer prices rising {c["inflation_pct"]} percent a year, savers
compare any nominal interest rate against prices at the market. Accounts denominated in
{c["index_short"]} were understood by only a third of participants, but once explained, most
preferred them.

Supply
------

The {c["rule"]} allows simplified accounts with a single identity document. Cooperatives have
been the fastest adopters. Digital wallets grew quickly: {c["digital_pay_pct"]} percent of adults
made at least one digital payment, but balances in wallets are small and move out within days.

Insurance
---------

Only {c["insured_pct"]} percent of households hold any insurance. The risk most feared is
{c["hazard"]}. Products that pay a fixed sum quickly after an event (parametric cover) tested
better than indemnity products that require an adjuster's visit.

Recommendations
---------------

1. Bundle a free small life or home cover with any savings balance above a threshold.
2. Offer goal-based commitment savings with a visible maturity calendar.
3. Distribute through {c["channel"]}.
4. Denominate long-term goals in {c["index_short"]} where inflation is high.
5. Measure success by active savers after 6 months, not by accounts opened.
"""


def savings_product_md(cc: str, c: dict) -> str:
    return f"""---
title: "{c["savings_product"]} ({c["savings_code"]}) - product sheet"
country: {cc}
doc_type: product_description
provider: "{c["provider"]}"
fictional: true
---
# {c["savings_product"]}

> {NOTICE}

Product code **{c["savings_code"]}**, offered by {c["provider"]} under the {c["rule"]}.

## Who it is for
Households with irregular income who want to put money aside for a goal: school fees, a
roof repair, a festival, or a cushion for emergencies. No proof of income is needed.

## How it works
- Open with an identity document at {c["channel"]} or in the app.
- Minimum deposit: {_n(c["min_deposit"])} {c["money"]}; maximum balance
  {_n(c["deposit_cap"])} {c["money"]}.
- Choose up to three goals, each with a target amount and a date. Money assigned to a goal is
  locked until its date, except for declared emergencies.
- Optional round-up: every payment made with the linked card is rounded up to the next
  100 {c["money"]} and the difference is saved.
- Balances can be held in {c["money"]} or in {c["index_short"]}.

## Interest and fees
- Nominal annual rate: {c["rate_pct"]} percent on balances in {c["money"]}; balances in
  {c["index_short"]} earn 1.5 percent above the index.
- No maintenance fee. Four free withdrawals a month; then {c["fee_pct"]} percent per withdrawal.
- Deposit guarantee up to {_n(c["guarantee"])} {c["money"]}.

## Extras
Savers who keep a balance above {_n(c["min_deposit"] * 20)} {c["money"]} for three months receive
free life cover equal to twice their balance, provided by {c["insurer"]}. A "savings streak"
badge rewards every month with at least one deposit; after 12 streak months the saver gets a
one-off bonus of 2 percent of the average balance.

## What it is not
It is not an investment fund: the value in {c["money"]} never falls. It is not a loan product,
although a good saving record is shared (with consent) with the credit team.
"""


def insurance_html(cc: str, c: dict) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8">
<title>{c["insurance_product"]} ({c["insurance_code"]})</title>
<meta name="country" content="{cc}"><meta name="doc_type" content="product_description">
</head><body>
<p><em>{NOTICE}</em></p>
<h1>{c["insurance_product"]}</h1>
<p>Microinsurance by {c["insurer"]}, product code {c["insurance_code"]}, designed for
households exposed to {c["hazard"]}.</p>
<h2>Cover</h2>
<table>
<tr><th>Item</th><th>Detail</th></tr>
<tr><td>Sum insured</td><td>{_n(c["sum_insured"])} {c["money"]} per dwelling</td></tr>
<tr><td>Monthly premium</td><td>{_n(c["premium"])} {c["money"]}</td></tr>
<tr><td>Waiting period</td><td>30 days from the first premium</td></tr>
<tr><td>Payout</td><td>Fixed amount within 5 business days after the event is confirmed</td></tr>
</table>
<h2>Trigger</h2>
<p>The cover is parametric: it pays when an official measurement for the customer's postal
area crosses a threshold (for example rainfall above 120 mm in 24 hours, wind above 118 km/h or
ground shaking of intensity VII), without an adjuster's visit. A complementary indemnity cover
for household goods pays up to 20 percent of the sum insured against receipts or photographs.</p>
<h2>Eligibility</h2>
<ul><li>Adults up to 70 years old who live in the insured dwelling.</li>
<li>Tenants and owners alike; informal tenure is accepted with a neighbour's declaration.</li>
<li>Premiums can be paid from the {c["savings_product"]} account or in cash at agents.</li></ul>
<h2>Exclusions</h2>
<p>War, nuclear events, deliberate damage and dwellings built after an official evacuation
order are excluded. Claims must be filed within 60 days.</p>
<h2>Why it exists</h2>
<p>Surveys of the {c["stats_short"]} show that {100 - c["insured_pct"]:.1f} percent of households have
no insurance at all; most cite price and distrust of claims. A low premium and a fast, automatic
payout address both.</p>
</body></html>"""


def payments_product(cc: str, c: dict) -> tuple[str, str]:
    if cc in ("BR", "CL"):
        text = f"""{c["payments_product"]} ({c["payments_code"]}): wallet and instant transfers
==========================================

{NOTICE}

Provider: {c["fintech"]}, a payment institution supervised under the {c["pay_rule"]}.

What it does
------------

{c["payments_product"]} is a phone wallet for households and micro-merchants. Customers receive
wages and transfers, pay by QR code at shops and send money to anyone by phone number. Cash
can be added or withdrawn at {c["channel"]}.

Limits and prices
-----------------

Balance limit: {_n(c["deposit_cap"] // 10)} {c["money"]}. Transfers out per month:
{_n(c["transfer_cap"])} {c["money"]}. Person-to-person transfers are free; merchants pay 0.9
percent per QR payment, settled the same day. Cash-out at agents costs a flat
{_n(max(1, c["premium"] // 4))} {c["money"]} after the second free cash-out of the month.

Savings pockets
---------------

Customers can split the balance into "pockets". A pocket can be locked until a date, and
money in pockets is swept every night into the {c["savings_product"]} account of a partner bank,
so it earns interest and is covered by the deposit guarantee.

Safety
------

Large first-time transfers are delayed 30 minutes in trusted-contacts mode. Unauthorised
transfers reported within 72 hours are refunded.
"""
        return "txt", text
    data = {
        "title": f"{c['payments_product']} ({c['payments_code']}) - wallet and transfers",
        "country": cc,
        "doc_type": "product_description",
        "notice": NOTICE,
        "provider": {"name": c["fintech"], "supervised_under": c["pay_rule"]},
        "features": [
            {
                "name": "QR payments",
                "detail": "pay at shops with the national QR standard",
                "merchant_fee_pct": 0.9,
            },
            {"name": "Phone-number transfers", "detail": "instant, 24/7, free between people"},
            {
                "name": "Savings pockets",
                "detail": f"locked pockets swept nightly into {c['savings_product']}",
                "earns_interest": True,
            },
            {
                "name": "Remittance receipt",
                "detail": "receive money from abroad directly in the wallet",
                "fx_margin_pct": 1.1,
            },
        ],
        "limits": {
            "max_balance": f"{_n(c['deposit_cap'] // 10)} {c['money']}",
            "max_monthly_transfers_out": f"{_n(c['transfer_cap'])} {c['money']}",
        },
        "cash_network": c["channel"],
        "safety": {
            "trusted_contacts_delay_minutes": 30,
            "refund_if_reported_within_hours": 72,
        },
    }
    return "json", json.dumps(data, indent=2, ensure_ascii=False)


GLOBAL_DOCS: dict[str, str] = {
    "global/official/ihff-consumer-protection-principles.md": f"""---
title: IHFF principles for household financial products
doc_type: official
country: global
fictional: true
---
# IHFF principles for household financial products

> {NOTICE}

The International Household Finance Forum (IHFF) adopted these eight principles at its
plenary in Valparaiso. They apply in every member country and are referred to by national
supervisors when they review savings, insurance and payment products for households.

## Principle 1: Fair design
Products are designed for an identified target market; the designer documents the needs of that
market and tests the product with real customers before launch.

## Principle 2: Plain disclosure
Key facts fit on one page: price, what is covered, how to get money out, how to complain. The
total annual cost is stated as one number called the IHFF Cost Figure.

## Principle 3: Suitability of commitment
Locking savings is allowed only with a visible maturity date and emergency exits.

## Principle 4: Claims that are paid
Insurers publish their claims ratio by product every year. A ratio below 35 percent triggers a
review of the product's value to customers.

## Principle 5: Data dignity
Customer data may be used to offer credit only with explicit, revocable consent.

## Principle 6: Agents
Agents act on behalf of the provider; the provider is liable for their conduct.

## Principle 7: Redress
Every complaint receives a written answer within 15 days.

## Principle 8: Dormancy
Dormant balances remain the customer's property without time limit.
""",
    "global/technical_report/parametric-insurance-note.md": f"""---
title: "Technical note: basis risk in parametric household insurance"
doc_type: technical_report
fictional: true
---
# Basis risk in parametric household insurance

> {NOTICE}

## Summary
Parametric (index) insurance pays a fixed amount when a measured index crosses a threshold,
instead of indemnifying the assessed loss. It is cheap to run and pays fast, but it suffers
from **basis risk**: the index can trigger when the household lost nothing, or fail to trigger
when it lost a lot. This note measures basis risk for three index designs.

## Data
We matched 18,400 household loss reports from five Latin American pilots with gridded rainfall,
wind and seismic-intensity data at 5 km resolution, over 2015-2023.

## Findings
- Single-station rainfall triggers missed 41 percent of flood losses.
- Gridded rainfall with a 3-cell neighbourhood reduced misses to 23 percent.
- Combining rainfall with river-gauge levels (a "dual trigger") reduced misses to 14 percent
  while raising false payouts from 6 to 9 percent.
- Seismic triggers based on modified Mercalli intensity VII matched losses well (misses 8
  percent) because damage is strongly tied to shaking.

## The Kessler smoothing method
We propose weighting neighbouring grid cells by elevation difference, a technique we call
Kessler smoothing after the pilot site where it was developed. It lowers flood misses by a
further 4 points at no extra data cost.

## Pricing consequence
Every 10 points of basis risk removed allowed premiums about 7 percent lower at the same
expected customer value, because fewer top-up indemnity claims had to be reserved for.
""",
    "global/product_description/remittance-linked-savings-blueprint.html": f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Blueprint: remittance-linked savings account</title>
<meta name="doc_type" content="product_description"></head><body>
<p><em>{NOTICE}</em></p>
<h1>Blueprint: remittance-linked savings account</h1>
<p>A product template any member institution can adapt. Families that receive money from
relatives abroad often spend it within days. This account lets the sender earmark part of
each transfer for the recipient household's savings goal.</p>
<h2>Mechanics</h2>
<ul><li>The sender chooses a split, for example 80 percent spendable and 20 percent to savings.</li>
<li>The savings part goes to a locked goal pocket with a maturity date chosen together.</li>
<li>Both sender and recipient see the goal's progress; the sender cannot withdraw.</li>
<li>A matching bonus of up to 5 percent of saved remittances is paid by partner institutions
when the goal is reached.</li></ul>
<h2>Costs</h2>
<p>The foreign-exchange margin is capped at 1.5 percent and shown before each transfer.
No fee is charged on the savings split.</p>
<h2>Evidence</h2>
<p>Pilots in three countries raised the share of remittances saved from 4 to 13 percent after
one year. The code name used in pilots was "Project Hummingbird Bridge".</p>
</body></html>""",
    "global/other/glossary.json": json.dumps(
        {
            "title": "Glossary of household finance terms used in this corpus",
            "doc_type": "other",
            "country": None,
            "notice": NOTICE,
            "terms": [
                {
                    "name": "Basis risk",
                    "definition": "the gap between what a parametric "
                    "index pays and the loss a household actually suffered",
                },
                {
                    "name": "Commitment savings",
                    "definition": "savings locked until a date or "
                    "goal chosen by the saver, with emergency exits",
                },
                {
                    "name": "Dormant account",
                    "definition": "an account with no customer-initiated movement for 180 days",
                },
                {
                    "name": "Rotating savings and credit association",
                    "definition": "a group "
                    "whose members contribute regularly and take turns receiving the pot; known "
                    "by local names such as tanda, natillera or consorcio",
                },
                {
                    "name": "Agent banking",
                    "definition": "financial services offered through "
                    "shops and other non-bank outlets on behalf of a provider",
                },
                {
                    "name": "IHFF Cost Figure",
                    "definition": "the single total annual cost of a "
                    "product as required by IHFF principle 2",
                },
                {
                    "name": "Sweep",
                    "definition": "an automatic nightly transfer of wallet "
                    "balances into an interest-bearing account",
                },
            ],
        },
        indent=2,
    ),
}


def main() -> None:
    for cc, c in COUNTRIES.items():
        write(f"{cc}/official/savings-accounts-regulation.md", savings_regulation(cc, c))
        write(f"{cc}/official/household-finance-survey.json", statistics_json(cc, c))
        write(f"{cc}/official/instant-payments-rule.html", payments_rule_html(cc, c))
        write(
            f"{cc}/technical_report/savings-microinsurance-market-study.txt",
            market_study_txt(cc, c),
        )
        write(f"{cc}/product_description/savings-account.md", savings_product_md(cc, c))
        write(f"{cc}/product_description/home-microinsurance.html", insurance_html(cc, c))
        ext, text = payments_product(cc, c)
        write(f"{cc}/product_description/wallet.{ext}", text)
    for rel, text in GLOBAL_DOCS.items():
        write(rel, text)
    print(f"text documents written under {ROOT}")


if __name__ == "__main__":
    main()
