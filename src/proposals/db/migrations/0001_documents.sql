-- Documents and their chunks: the corpus the pipeline retrieves from.
--
-- Embedding dimension: HNSW needs a fixed-size vector column, and the size depends on the
-- model, which is only known when something is first ingested. So `chunks.embedding` starts as
-- an untyped `vector`; the first ingest records the model in `index_meta` and, in the same
-- transaction, types the column `vector(<dim>)` and builds the HNSW index (see
-- proposals/store.py). Every later write or search checks `index_meta` and refuses another
-- model (EmbeddingModelMismatch). `index_meta` holds at most one row.

CREATE TABLE index_meta (
    singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    embedding_model text NOT NULL,
    embedding_dim   integer NOT NULL CHECK (embedding_dim > 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    id              bigserial PRIMARY KEY,
    path            text NOT NULL UNIQUE,
    title           text NOT NULL,
    content_hash    text NOT NULL,
    doc_type        text NOT NULL DEFAULT 'other'
                    CHECK (doc_type IN ('official', 'technical_report', 'product_description', 'other')),
    country         char(2) CHECK (country IS NULL OR country ~ '^[A-Z]{2}$'),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    embedding_model text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX documents_country_idx ON documents (country);
CREATE INDEX documents_doc_type_idx ON documents (doc_type);

-- country and doc_type are copied from the document so that filters apply on the chunk row
-- itself, inside the vector and full-text scans, without a join before the LIMIT.
CREATE TABLE chunks (
    id          bigserial PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ord         integer NOT NULL,
    text        text NOT NULL,
    section     text,
    page        integer,
    token_count integer NOT NULL,
    country     char(2),
    doc_type    text NOT NULL,
    tsv         tsvector GENERATED ALWAYS AS (
                    setweight(to_tsvector('english', coalesce(section, '')), 'B')
                    || setweight(to_tsvector('english', text), 'A')
                ) STORED,
    embedding   vector NOT NULL,
    UNIQUE (document_id, ord)
);

CREATE INDEX chunks_tsv_idx ON chunks USING gin (tsv);
CREATE INDEX chunks_country_idx ON chunks (country);
CREATE INDEX chunks_doc_type_idx ON chunks (doc_type);
