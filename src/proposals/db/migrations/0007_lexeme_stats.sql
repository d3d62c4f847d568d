-- Document frequency of every full-text lexeme: in how many chunks it occurs.
--
-- The full-text half of search ranks chunks by the inverse document frequency of the query
-- words they contain (a rare product code outweighs "household"), and picks its candidates
-- from the rarest words first. Counting a word's chunks at query time would read its whole
-- posting list (tens of milliseconds at 100k chunks for a common word), so the counts are kept
-- here, up to date in the writing transaction, by statement-level triggers on `chunks` (one
-- grouped upsert per statement: a COPY of a document's chunks costs one). Counts are over all
-- tenants: they shape ranking only, never which rows a tenant can see.

CREATE TABLE IF NOT EXISTS lexeme_stats (
    lexeme  text PRIMARY KEY,
    chunks  integer NOT NULL CHECK (chunks >= 0)
);

CREATE OR REPLACE FUNCTION lexeme_stats_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lexeme_stats AS s (lexeme, chunks)
    SELECT w.lexeme, count(*) FROM new_rows n, unnest(n.tsv) w GROUP BY w.lexeme ORDER BY 1
    ON CONFLICT (lexeme) DO UPDATE SET chunks = s.chunks + EXCLUDED.chunks;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION lexeme_stats_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE lexeme_stats s SET chunks = greatest(0, s.chunks - g.n)
    FROM (SELECT w.lexeme, count(*) AS n FROM old_rows o, unnest(o.tsv) w
          GROUP BY w.lexeme ORDER BY 1) g
    WHERE s.lexeme = g.lexeme;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS chunks_lexemes_insert ON chunks;
CREATE TRIGGER chunks_lexemes_insert AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION lexeme_stats_add();
DROP TRIGGER IF EXISTS chunks_lexemes_delete ON chunks;
CREATE TRIGGER chunks_lexemes_delete AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION lexeme_stats_remove();
-- An UPDATE that changes text or section changes the generated tsv: remove, then add.
DROP TRIGGER IF EXISTS chunks_lexemes_update_old ON chunks;
CREATE TRIGGER chunks_lexemes_update_old AFTER UPDATE ON chunks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION lexeme_stats_remove();
DROP TRIGGER IF EXISTS chunks_lexemes_update_new ON chunks;
CREATE TRIGGER chunks_lexemes_update_new AFTER UPDATE ON chunks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION lexeme_stats_add();

TRUNCATE lexeme_stats;
INSERT INTO lexeme_stats (lexeme, chunks)
SELECT w.lexeme, count(*) FROM chunks c, unnest(c.tsv) w GROUP BY w.lexeme;
