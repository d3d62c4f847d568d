"""Cited product proposals per country and customer profile, from a document corpus."""

from .ingest import ingest
from .store import search

__all__ = ["ingest", "search"]
