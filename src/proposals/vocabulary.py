"""The shared vocabulary of document scope: country codes and document types.

Ingest, the store and the pipeline all accept a country (ISO 3166-1 alpha-2, or a word meaning
"applies everywhere") and a document type (with a few aliases); this module is the one place
that says which values are valid and how they are spelled once normalised.
"""

from __future__ import annotations

from typing import Literal

from .errors import InputError

__all__ = [
    "COUNTRY_CODES",
    "DOC_TYPES",
    "GLOBAL_WORDS",
    "DocType",
    "doc_type_alias",
    "normalize_country",
    "normalize_doc_type",
]

_ASSIGNED = """
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ
DE DJ DK DM DO DZ
EC EE EG EH ER ES ET
FI FJ FK FM FO FR
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY
HK HM HN HR HT HU
ID IE IL IM IN IO IQ IR IS IT
JE JM JO JP
KE KG KH KI KM KN KP KR KW KY KZ
LA LB LC LI LK LR LS LT LU LV LY
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ
NA NC NE NF NG NI NL NO NP NR NU NZ
OM
PA PE PF PG PH PK PL PM PN PR PS PT PW PY
QA
RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ
UA UG UM US UY UZ
VA VC VE VG VI VN VU
WF WS
YE YT
ZA ZM ZW
"""
COUNTRY_CODES: frozenset[str] = frozenset(_ASSIGNED.split())

# Words that explicitly mean "no country: applies everywhere".
GLOBAL_WORDS = frozenset({"global", "all", "any", "none", "world", "international", "*"})


def normalize_country(value: object) -> str | None:
    """``"ar"`` -> ``"AR"``; ``None``/``""``/``"global"`` -> ``None``; anything else: InputError."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.lower() in GLOBAL_WORDS:
        return None
    code = text.upper()
    if code not in COUNTRY_CODES:
        raise InputError(
            f"{text!r} is not an ISO 3166-1 alpha-2 country code (e.g. AR, BR, MX); "
            "use 'global' or leave it out for documents that apply everywhere"
        )
    return code


DocType = Literal["official", "technical_report", "product_description", "other"]
DOC_TYPES: tuple[str, ...] = ("official", "technical_report", "product_description", "other")

_DOC_TYPE_ALIASES = {
    "official": "official",
    "officials": "official",
    "regulation": "official",
    "regulations": "official",
    "statistics": "official",
    "technical_report": "technical_report",
    "technical_reports": "technical_report",
    "technical-report": "technical_report",
    "technical-reports": "technical_report",
    "report": "technical_report",
    "reports": "technical_report",
    "product_description": "product_description",
    "product_descriptions": "product_description",
    "product-description": "product_description",
    "product-descriptions": "product_description",
    "product": "product_description",
    "products": "product_description",
    "other": "other",
}


def doc_type_alias(value: str) -> str | None:
    """The doc_type a word names (``"products"`` -> ``"product_description"``), else None."""
    return _DOC_TYPE_ALIASES.get(value.strip().lower())


def normalize_doc_type(value: object) -> str | None:
    """Validate a doc_type (aliases accepted); ``None``/``""`` -> ``None``."""
    if value is None or str(value).strip() == "":
        return None
    found = doc_type_alias(str(value))
    if found is None:
        raise InputError(f"unknown document type {value!r}; expected one of {', '.join(DOC_TYPES)}")
    return found
