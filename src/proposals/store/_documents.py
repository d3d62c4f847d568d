"""Document administration: list stored documents, read chunks by id, remove a document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from ._models import Citation, DocumentInfo, SearchHit

__all__ = ["HIT_COLUMNS", "get_chunks", "hit_from_row", "list_documents", "remove_document"]

HIT_COLUMNS = "c.id, c.text, c.section, c.page, d.id, d.title, d.path, d.country, d.doc_type"
"""The columns :func:`hit_from_row` reads, over ``chunks c JOIN documents d``."""

_HIT_SQL = f"""
SELECT {HIT_COLUMNS}
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.id = ANY(%s) AND c.tenant = %s
"""


def hit_from_row(row: Sequence[Any], score: float) -> SearchHit:
    """A hit from a row laid out as :data:`HIT_COLUMNS`."""
    citation = Citation(
        chunk_id=row[0],
        document_id=row[4],
        title=row[5],
        path=row[6],
        page=row[3],
        section=row[2],
        country=row[7],
        doc_type=row[8],
    )
    return SearchHit(chunk_id=row[0], text=row[1], score=score, citation=citation)


async def get_chunks(
    conn: psycopg.AsyncConnection, ids: Sequence[int], tenant: str
) -> list[SearchHit]:
    """The chunks of ``tenant`` with these ids, in the order given (unknown ids and other
    tenants' are left out); score 0."""
    wanted = [int(i) for i in ids]
    if not wanted:
        return []
    cur = await conn.execute(_HIT_SQL, (wanted, tenant))
    rows = {r[0]: r for r in await cur.fetchall()}
    return [hit_from_row(rows[cid], 0.0) for cid in dict.fromkeys(wanted) if cid in rows]


async def list_documents(conn: psycopg.AsyncConnection, tenant: str) -> list[DocumentInfo]:
    """Every document of ``tenant``, ordered by country (global first), type and path."""
    cur = await conn.execute(
        "SELECT d.id, d.path, d.title, d.doc_type, d.country, d.content_hash, "
        "d.embedding_model, count(c.id), coalesce(sum(c.token_count), 0), d.updated_at "
        "FROM documents d LEFT JOIN chunks c ON c.document_id = d.id WHERE d.tenant = %s "
        "GROUP BY d.id ORDER BY d.country NULLS FIRST, d.doc_type, d.path",
        (tenant,),
    )
    return [
        DocumentInfo(
            id=r[0],
            path=r[1],
            title=r[2],
            doc_type=r[3],
            country=r[4],
            content_hash=r[5],
            embedding_model=r[6],
            chunks=r[7],
            tokens=r[8],
            updated_at=r[9],
        )
        for r in await cur.fetchall()
    ]


async def remove_document(
    conn: psycopg.AsyncConnection, document: int | str, tenant: str
) -> str | None:
    """Delete a document of ``tenant`` (by id or stored path) and its chunks; its stored path,
    or None if not found."""
    column = "id" if isinstance(document, int) else "path"
    cur = await conn.execute(
        sql.SQL("DELETE FROM documents WHERE {} = %s AND tenant = %s RETURNING path").format(
            sql.Identifier(column)
        ),
        (document, tenant),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None
