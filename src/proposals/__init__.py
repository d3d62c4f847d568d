"""Cited product proposals per country and customer profile, from a document corpus."""

from .ingest import ingest
from .runs import generate
from .store import search

__all__ = ["generate", "ingest", "search"]
