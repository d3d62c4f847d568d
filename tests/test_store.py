"""Hybrid retrieval: filters, the value of each half of the fusion, and complete filtered results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg import sql

from _embedder import HashEmbedder, hash_vector, local_embedder
from proposals.config import Settings
from proposals.db import Database
from proposals.embeddings import CachingEmbedder
from proposals.errors import DatabaseError, InputError
from proposals.evaluate import evaluate_retrieval, load_questions
from proposals.ingest import ingest
from proposals.store import TEXT_WEIGHT, SearchMode, Store
from proposals.store import _schema as store_schema
from proposals.store import _search as store_search

CORPUS = Path(__file__).resolve().parent.parent / "examples" / "corpus"

_LONG = (
    "Monthly transfers out of a simplified wallet are capped at five thousand reais. Balances "
    "are swept nightly into the partner savings account, where they earn interest and are "
    "covered by the deposit guarantee. Customers may hold up to three goal pockets, each with "
    "its own date. Cash withdrawals at partner lottery houses are free twice a month; after that "
    "the quillango surcharge of two reais applies. Merchants pay 0.9 percent per QR payment and "
    "receive funds the same day. Fraud reports filed within 72 hours are refunded within five "
    "business days, and first-time transfers above one thousand reais are delayed by thirty "
    "minutes in trusted-contacts mode."
)
_DOCS = {
    # the paraphrase target: no word of the query "earthquake insurance for my house"
    "CL/products/sismo.md": "# Seguro Copihue\n\nPays a fixed sum within days when a seismic "
    "tremor shakes the dwelling and cracks its walls.\n",
    "global/other/car.md": "# Car insurance\n\nMotor insurance for your car covers theft and "
    "collisions on the road.\n",
    "global/other/plants.md": "# House plants\n\nHouse plants need light; water them weekly and "
    "repot in spring.\n",
    "global/other/pets.md": "# Pet care\n\nFor dogs at home: vaccines, a fence and a warm bed in "
    "winter.\n",
    # the rare-term target: one odd word inside a long ordinary paragraph; near-spellings around
    "BR/official/limits.md": f"# Wallet limits\n\n{_LONG}\n",
    "AR/official/quilmes.md": "# Quilmes branch\n\nThe Quilmes branch opens at nine; bring form "
    "77 for account changes.\n",
    "MX/official/quillas.md": "# Quillas\n\nQuill pens and mango juice at the fair.\n",
    "CO/official/llanos.md": "# Llanos\n\nLlanos cattle ranchers save in livestock.\n",
    "CL/official/quillota.md": "# Quillota\n\nQuillota avocado growers sell at the Sunday "
    "market.\n",
    "global/other/quillay.md": "# Quillay\n\nThe quillay tree bark was used as soap.\n",
    "global/other/quillagua.md": "# Quillagua\n\nQuillagua is a village in the driest part of "
    "the desert.\n",
}


@pytest.fixture
async def mini(database: Database, tmp_path: Path) -> Store:
    root = tmp_path / "corpus"
    for rel, text in _DOCS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    embedder = local_embedder()
    report = await ingest([root], database=database, embedder=embedder)
    assert report.ok and len(report.added) == len(_DOCS)
    return Store(database, embedder)


def _titles(hits) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.citation.title for h in hits]


async def test_rare_exact_term_needs_full_text(mini: Store) -> None:
    vector = await mini.search("quillango", k=3, mode="vector")
    text = await mini.search("quillango", k=3, mode="text")
    hybrid = await mini.search("quillango", k=3)
    assert "Wallet limits" not in _titles(vector)
    assert _titles(text) == ["Wallet limits"]
    assert "Wallet limits" in _titles(hybrid)


async def test_paraphrase_needs_vectors(mini: Store) -> None:
    query = "earthquake insurance for my house"
    text = await mini.search(query, k=5, mode="text")
    vector = await mini.search(query, k=5, mode="vector")
    # In a corpus this small every chunk is in the vector list, so the three text matches
    # also collect a vector rank and sit above the target in the fused order.
    hybrid = await mini.search(query, k=5)
    assert text and "Seguro Copihue" not in _titles(text)
    assert _titles(vector)[0] == "Seguro Copihue"
    assert "Seguro Copihue" in _titles(hybrid)


async def test_hits_carry_citations_and_scores(mini: Store) -> None:
    hits = await mini.search("tremors shake the dwelling", k=2, country="CL")
    top = hits[0]
    assert top.citation.title == "Seguro Copihue" and top.citation.country == "CL"
    assert top.citation.doc_type == "product_description"
    assert top.citation.path.endswith("CL/products/sismo.md")
    assert top.citation.section == "Seguro Copihue" and top.citation.page is None
    assert top.score > hits[1].score > 0
    again = await mini.get_chunks([hits[1].chunk_id, top.chunk_id, 999_999])
    assert [h.chunk_id for h in again] == [hits[1].chunk_id, top.chunk_id]
    assert again[1].text == top.text


async def test_country_filter_never_returns_another_country(mini: Store) -> None:
    everything = await mini.search("savings wallet branch protection home", k=20)
    assert {h.citation.country for h in everything} >= {"AR", "BR", "CL", None}
    for cc in ("AR", "BR", "CL", "MX", "CO"):
        for mode in ("hybrid", "vector", "text"):
            hits = await mini.search(
                "savings wallet branch protection home quillango",
                k=20,
                country=cc.lower(),
                mode=mode,
            )  # type: ignore[arg-type]
            assert hits, (cc, mode)
            assert {h.citation.country for h in hits} <= {cc, None}, (cc, mode)
    only_official = await mini.search("wallet", k=20, doc_types=["official"])
    assert only_official and {h.citation.doc_type for h in only_official} == {"official"}


async def test_remove_document_and_bad_arguments(mini: Store) -> None:
    docs = {d.title: d for d in await mini.list_documents()}
    assert docs["Wallet limits"].chunks == 1 and docs["Wallet limits"].country == "BR"
    assert await mini.remove_document(docs["Wallet limits"].id)
    assert not await mini.remove_document(docs["Wallet limits"].id)
    assert await mini.search("quillango", k=3, mode="text") == []
    with pytest.raises(InputError):
        await mini.search("   ")
    with pytest.raises(InputError, match="ISO 3166-1"):
        await mini.search("x", country="ZZ")
    with pytest.raises(InputError, match="unknown document type"):
        await mini.search("x", doc_types=["memo"])


async def test_filtered_hnsw_results_are_complete(
    database: Database,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Force the HNSW path with a tiny ef_search on a filter keeping 2% of the chunks: the
    answer must still equal the exact top-k of the filtered set."""
    root = tmp_path / "many"
    words = ["deposit", "insurance", "wallet", "loan", "pension", "remittance", "card", "fee"]
    for i in range(300):
        cc = "AR" if i % 50 == 0 else "BR"
        path = root / cc / "official" / f"d{i}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = " ".join(words[(i * j) % len(words)] for j in range(1, 7))
        path.write_text(f"# Doc {i}\n\n{body} number{i}\n", encoding="utf-8")
    embedder = HashEmbedder(dim=32)
    await ingest([root], database=database, embedder=embedder)
    monkeypatch.setattr(store_search, "_EXACT_BELOW", 0)
    monkeypatch.setattr(store_search, "_EF_MAX", 40)
    monkeypatch.setattr(store_search, "_EF_MIN", 10)
    async with database.pool.connection() as conn:
        # 300 rows: left alone, the planner would scan the table (exact) instead of the index.
        await conn.execute(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET enable_seqscan = off',"
            " current_database()); EXECUTE format('ALTER DATABASE %I SET "
            "enable_bitmapscan = off', current_database()); END $$"
        )
    async with await Database.open(settings) as fresh:
        store = Store(fresh, embedder)
        with caplog.at_level("DEBUG", logger="proposals.store"):
            hits = await store.search("deposit insurance wallet", k=5, country="AR", mode="vector")
    async with database.pool.connection() as conn:
        cur = await conn.execute("SELECT id FROM chunks WHERE country = 'AR'")
        assert len(await cur.fetchall()) == 6
        q = np.asarray(hash_vector("deposit insurance wallet", 32), dtype=np.float32)
        cur = await conn.execute(  # exact: no index can serve an ORDER BY on a CTE
            "WITH f AS MATERIALIZED (SELECT id, embedding FROM chunks WHERE country = 'AR') "
            "SELECT id FROM f ORDER BY embedding <=> %s::vector, id LIMIT 5",
            (q,),
        )
        expected = [r[0] for r in await cur.fetchall()]
    assert [h.chunk_id for h in hits] == expected
    assert "exact rescan" in caplog.text  # the HNSW scan alone had come back short
    async with await Database.open(settings) as fresh:
        # In a batch, each query that comes back short is widened on its own the same way.
        store = Store(fresh, embedder)
        queries = ["deposit insurance wallet", "loan pension card"]
        alone = [await store.search(q, k=5, country="AR", mode="vector") for q in queries]
        assert alone[0] == hits
        assert await store.search_many(queries, k=5, country="AR", mode="vector") == alone


async def test_fusion_rescores_by_cosine_plus_weighted_text_share(mini: Store) -> None:
    """Hybrid scores every candidate of both halves by its cosine similarity plus
    ``TEXT_WEIGHT`` times (its text score / the question's total weight) ** ``TEXT_POWER``:
    for a one-word question, exactly ``TEXT_WEIGHT`` for the chunk holding the word."""
    query = "quillango"
    vector = {h.chunk_id: h.score for h in await mini.search(query, k=20, mode="vector")}
    (text,) = await mini.search(query, k=20, mode="text")
    assert text.citation.title == "Wallet limits"
    hybrid = await mini.search(query, k=5)
    assert hybrid[0].chunk_id == text.chunk_id
    for hit in hybrid:
        bonus = TEXT_WEIGHT if hit.chunk_id == text.chunk_id else 0.0
        assert hit.score == pytest.approx(vector[hit.chunk_id] + bonus, abs=1e-6)


@pytest.mark.parametrize("mode", ["hybrid", "vector", "text"])
@pytest.mark.parametrize(
    ("country", "types"), [(None, None), ("CL", None), ("BR", ["official"]), ("AR", ["other"])]
)
async def test_search_many_gives_each_query_what_it_gets_alone(
    mini: Store, mode: SearchMode, country: str | None, types: list[str] | None
) -> None:
    """One statement for several queries under one filter: every query gets exactly the hits
    (ids, order, scores, citations) of its own search, whatever else is in the batch. (The
    vectors come from a cache filled by the searches alone: a model's vector of a text can
    differ in the last bits when embedded in a batch of several.)"""
    assert mini.embedder is not None
    mini = Store(mini.database, CachingEmbedder(mini.embedder))
    queries = [
        "earthquake insurance for my house",
        "quillango surcharge",
        "monthly transfer limits of a wallet",
        "dogs at home",
        "earthquake insurance for my house",  # a repeat is answered twice
    ]
    alone = [
        await mini.search(q, k=4, country=country, doc_types=types, mode=mode) for q in queries
    ]
    together = await mini.search_many(queries, k=4, country=country, doc_types=types, mode=mode)
    assert together == alone
    assert any(together)
    assert await mini.search_many([], k=4) == []
    with pytest.raises(InputError, match="query is empty"):
        await mini.search_many(["wallet", " "], k=4)


async def test_sample_corpus_country_and_citations(database: Database) -> None:
    embedder = local_embedder()
    report = await ingest([CORPUS / "CL", CORPUS / "global"], database=database, embedder=embedder)
    assert report.ok and len(report.added) == 14
    store = Store(database, embedder)
    hits = await store.search("earthquake reinsurance surcharge", k=5, country="CL")
    assert hits and {h.citation.country for h in hits} <= {"CL", None}
    assert any("0.9 per mille" in h.text for h in hits)
    pdf = await store.search("Villarrica ladder deposits unlocked monthly", k=3)
    assert pdf[0].citation.path.endswith("behavioural-savings-levers.pdf")
    assert pdf[0].citation.page == 2


async def test_country_indexes_are_built_used_and_keep_filters_exact(
    database: Database,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ingest builds a partial HNSW index per large country; a country search walks that
    index (not the global one) and still returns exactly the filtered top-k."""
    root = tmp_path / "many"
    words = ["deposit", "insurance", "wallet", "loan", "pension", "remittance", "card", "fee"]
    layout = [("AR", 60), ("BR", 60), ("MX", 60), ("CL", 10), ("global", 20)]
    n = 0
    for folder, count in layout:
        for i in range(count):
            kind = "official" if i % 2 else "technical_report"
            path = root / folder / kind / f"d{n}.md"
            path.parent.mkdir(parents=True, exist_ok=True)
            body = " ".join(words[(n * j) % len(words)] for j in range(1, 7))
            path.write_text(f"# Doc {n}\n\n{body} number{n}\n", encoding="utf-8")
            n += 1
    embedder = HashEmbedder(dim=32)
    monkeypatch.setattr(store_schema, "COUNTRY_INDEX_MIN_CHUNKS", 50)
    await ingest([root], database=database, embedder=embedder)
    async with database.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'chunks' "
            "AND indexname LIKE 'chunks_embedding_hnsw%%' ORDER BY 1"
        )
        names = [r[0] for r in await cur.fetchall()]
        # CL is below the threshold; the others keep (60 + 20) / 210 of the corpus each.
        assert names == [
            "chunks_embedding_hnsw",
            "chunks_embedding_hnsw_ar",
            "chunks_embedding_hnsw_br",
            "chunks_embedding_hnsw_mx",
        ]
        # At 210 rows the planner would rather read a btree and sort, and costs the global and
        # the partial HNSW index alike (at 100k chunks it picks the partial one: see
        # bench/retrieval.py). Without the others, the partial index is usable only if the
        # query's condition matches its predicate, which is what this checks.
        await conn.execute(
            "DROP INDEX chunks_country_idx, chunks_doc_type_idx, chunks_embedding_hnsw"
        )
        await conn.execute("ANALYZE chunks")
        await conn.execute(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET enable_bitmapscan = off',"
            " current_database()); END $$"
        )
    monkeypatch.setattr(store_search, "_EXACT_BELOW", 0)
    query = "deposit insurance wallet"
    q = np.asarray(hash_vector(query, 32), dtype=np.float32)
    async with await Database.open(settings) as fresh:
        store = Store(fresh, embedder)
        plan = await store._plan("AR", ["official"], 5)
        assert not plan.exact and plan.matching == 40
        statement, args = store_search.search_statement(
            query, q, plan, "vector", 5, 5, "AR", ["official"], "local"
        )
        async with fresh.pool.connection() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            cur = await conn.execute(sql.SQL("EXPLAIN ") + statement, args)
            explained = "\n".join(r[0] for r in await cur.fetchall())
        assert "chunks_embedding_hnsw_ar" in explained, explained
        for country, types in (("AR", None), ("AR", ["official"]), ("MX", ["technical_report"])):
            hits = await store.search(query, k=5, country=country, doc_types=types, mode="vector")
            async with fresh.pool.connection() as conn:
                cur = await conn.execute(
                    "WITH f AS MATERIALIZED (SELECT id, embedding FROM chunks WHERE "
                    "(country = %s OR country IS NULL) AND (%s::text[] IS NULL OR "
                    "doc_type = ANY(%s))) SELECT 1 - (embedding <=> %s::vector) AS s FROM f "
                    "ORDER BY s DESC LIMIT 5",
                    (country, types, types, q),
                )
                expected = [round(r[0], 5) for r in await cur.fetchall()]
            # Distances, not ids: chunks with the same words have the same hash vector.
            assert [round(h.score, 5) for h in hits] == expected, (country, types)
            assert {h.citation.country for h in hits} <= {country, None}
        hybrid = await store.search("wallet number7", k=10, country="BR")
        assert hybrid and {h.citation.country for h in hybrid} <= {"BR", None}
        await store.reset_index()
    async with database.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'chunks_embedding_hnsw%%'"
        )
        assert (await cur.fetchone()) == (0,)


async def test_words_over_the_candidate_cap_score_but_lead_to_no_candidates(
    mini: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'account' is in two chunks (Wallet limits, Quilmes), 'quillango' in one. With room for
    one posting, only the rare word leads to candidates; the common one still scores them.
    Text-only search of the common word alone reads the capped sample rather than nothing."""
    both = await mini.search("quillango account", k=5, mode="text")
    assert set(_titles(both)) == {"Wallet limits", "Quilmes branch"}
    monkeypatch.setattr(store_search, "TEXT_CANDIDATES", 1)
    rare_only = await mini.search("quillango account", k=5, mode="text")
    assert _titles(rare_only) == ["Wallet limits"]
    full = {h.citation.title: h.score for h in both}["Wallet limits"]
    assert rare_only[0].score == pytest.approx(full)  # 'account' still counted in its score
    assert len(await mini.search("account", k=5, mode="text")) == 1
    assert _titles(await mini.search("quillango account", k=3))[0] == "Wallet limits"


async def test_text_mode_ranks_all_word_matches_above_any_word_matches(
    database: Database, tmp_path: Path
) -> None:
    root = tmp_path / "rank"
    root.mkdir()
    # Many repeats of one query word give a high cover-density rank on their own.
    (root / "dense.md").write_text(
        "# Dense\n\n" + " ".join(["savings"] * 60) + "\n", encoding="utf-8"
    )
    (root / "both.md").write_text(
        "# Both\n\nA savings account whose monthly fee is waived.\n", encoding="utf-8"
    )
    (root / "other.md").write_text("# Other\n\nNothing relevant here at all.\n")
    embedder = HashEmbedder()
    report = await ingest([root], database=database, embedder=embedder)
    assert report.ok
    store = Store(database, embedder)
    hits = await store.search("savings account fee", k=5, mode="text")
    assert _titles(hits)[:2] == ["Both", "Dense"]
    scores = {h.citation.title: h.score for h in hits}
    assert scores["Both"] > scores["Dense"]


async def test_database_failures_reach_callers_as_database_error(mini: Store) -> None:
    """psycopg errors never leave the store: a broken schema becomes one DatabaseError whose
    message says what the store was doing, with the original kept as the cause."""
    async with mini.database.pool.connection() as conn:
        await conn.execute("ALTER TABLE documents RENAME TO documents_gone")
    mini.invalidate()
    for call, doing in (
        (mini.search("quillango wallet", k=3), "search the chunks"),
        (mini.list_documents(), "list the documents"),
        (mini.get_chunks([1]), "read chunks"),
        (mini.remove_document(1), "remove the document"),
        (mini.reset_index(), "reset the index"),
    ):
        with pytest.raises(DatabaseError, match=f"could not {doing}") as caught:
            await call
        assert isinstance(caught.value.__cause__, psycopg.Error)


async def test_tenants_see_only_their_own_corpus(database: Database, tmp_path: Path) -> None:
    """Two tenants ingest files at the same path: each search, listing, chunk read and delete
    sees only its own; another tenant's document id behaves as a missing one."""
    embedder = HashEmbedder()
    doc = tmp_path / "shared.md"
    doc.write_text("# Savings\n\nA quillango savings pocket for households.\n", encoding="utf-8")
    for tenant in ("acme", "beta"):
        report = await ingest([doc], database=database, embedder=embedder, tenant=tenant)
        assert report.added == [doc.resolve().as_posix()]
    local = Store(database, embedder)
    acme, beta = local.for_tenant("acme"), local.for_tenant("beta")
    assert await local.search("quillango savings", k=5) == []
    assert await local.list_documents() == []
    [acme_doc] = await acme.list_documents()
    [beta_doc] = await beta.list_documents()
    assert acme_doc.id != beta_doc.id
    for mode in ("hybrid", "vector", "text"):
        hits = await acme.search("quillango savings", k=5, mode=mode)  # type: ignore[arg-type]
        assert {h.citation.document_id for h in hits} == {acme_doc.id}, mode
    beta_chunk = (await beta.search("quillango", k=1))[0].chunk_id
    assert await acme.get_chunks([beta_chunk]) == []
    assert await acme.remove_document(beta_doc.id) is None
    assert await beta.remove_document(beta_doc.id) == beta_doc.path
    assert [d.id for d in await acme.list_documents()] == [acme_doc.id]


async def test_sample_corpus_questions_paraphrases_codes_and_fusion(database: Database) -> None:
    """On the sample corpus and its labelled questions: a question in words the text does not
    use finds its chunk, a rare code or number finds its chunk, and hybrid is at least as good
    as either half on recall@3, recall@10 and MRR."""
    embedder = local_embedder()
    report = await ingest([CORPUS], database=database, embedder=embedder)
    assert report.ok
    store = Store(database, embedder)
    # Paraphrase: "stops", "company", "spending", "clients", "cash" are not in the passage
    # ("Customer money may not be lent out or used to pay the provider's expenses").
    question = "What stops a payment company from spending its clients' cash?"
    text = await store.search(question, k=3, country="BR", mode="text")
    hits = await store.search(question, k=3, country="BR")
    target = "Circular CFPF-Relampago 58 > 1. Safeguarding of customer funds"
    assert target not in [h.citation.section for h in text]
    assert target in [h.citation.section for h in hits]
    # Rare code and rare number.
    (code,) = await store.search("TER-22", k=1)
    assert code.citation.path.endswith("AR/product_description/home-microinsurance.html")
    (number,) = await store.search("18,400 household loss reports", k=1)
    assert number.citation.path.endswith("global/technical_report/parametric-insurance-note.md")

    questions = load_questions(CORPUS.parent / "questions" / "corpus.json")
    result = await evaluate_retrieval(store, questions, k=(3, 10))
    means = {mode: groups["all"].metrics for mode, groups in result.modes.items()}
    for metric in ("recall@3", "recall@10", "mrr@10"):
        assert means["hybrid"][metric] >= means["vector"][metric], (metric, means)
        assert means["hybrid"][metric] >= means["text"][metric], (metric, means)
