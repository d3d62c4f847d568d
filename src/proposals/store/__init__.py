"""The chunk store: hybrid retrieval over pgvector (HNSW, cosine) and PostgreSQL full text.

Search ranks chunks by vector and by full text, each filtered by country and type, and fuses
the two by rescoring their union: cosine similarity plus ``TEXT_WEIGHT`` times the share of
the question's rarity-weighted words a chunk holds (see ``_lexical``). Exact terms (a
product code, a rare word) come from full text; paraphrases come from the vectors. Both
halves, the fusion and the citations are one SQL statement: one pool checkout and one round
trip per search, which matters when a run issues hundreds of them.

The filter ``country="AR"`` returns documents of Argentina *and* documents with no country
(they apply everywhere), never another country's.

pgvector before 0.8 has no iterative index scan: a filtered HNSW query sees only
``hnsw.ef_search`` candidates and can return fewer rows than asked. So the share of chunks the
filter keeps is estimated (cached counts per country and type), ``ef_search`` is raised to match,
a filter that keeps few chunks is answered by an exact scan, and an HNSW answer that still comes
back short is retried with a wider beam, then exactly. Results are therefore complete, not just
usually complete. A large country gets its own partial HNSW index (its chunks and the global
ones), so its filter needs no over-fetch at all (:meth:`Store.ensure_country_indexes`).

The index records its embedding model in ``index_meta``; writing or searching with another
model raises :class:`~proposals.errors.EmbeddingModelMismatch`.
"""

from ._lexical import TEXT_WEIGHT
from ._models import Citation, DocumentInfo, IndexInfo, SearchHit, SearchMode
from ._schema import COUNTRY_INDEX_MIN_CHUNKS, check_index_model, ensure_index, read_index_info
from ._store import Store, search

__all__ = [
    "COUNTRY_INDEX_MIN_CHUNKS",
    "TEXT_WEIGHT",
    "Citation",
    "DocumentInfo",
    "IndexInfo",
    "SearchHit",
    "SearchMode",
    "Store",
    "check_index_model",
    "ensure_index",
    "read_index_info",
    "search",
]
