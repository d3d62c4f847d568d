-- placeholder, replaced by the ingest work: documents and chunks
SELECT 1;
