-- Tenants and API keys; documents and chunks belong to a tenant.
--
-- A key is shown once when created and stored only as its SHA-256 (keys are 256-bit random
-- secrets, so a slow password hash adds nothing). ``id`` is the key's public prefix, used to
-- find the row; the hash is compared in constant time. Rows of the CLI's default tenant, and
-- every row that existed before tenants, belong to 'local'. Paths are unique per tenant: two
-- tenants may each upload a file of the same name.

CREATE TABLE IF NOT EXISTS tenants (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO tenants (id) VALUES ('local') ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS api_keys (
    id           text PRIMARY KEY,
    tenant       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key_hash     text NOT NULL CHECK (key_hash ~ '^[0-9a-f]{64}$'),
    name         text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_tenant_idx ON api_keys (tenant);

ALTER TABLE documents ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'local';
ALTER TABLE documents DROP CONSTRAINT IF EXISTS documents_path_key;
ALTER TABLE documents ADD CONSTRAINT documents_tenant_path_key UNIQUE (tenant, path);

-- Copied from the document, like country and doc_type, so searches filter on the chunk row.
-- No b-tree index on it: with few tenants it would not narrow a scan, and it would tempt the
-- planner away from the HNSW index for filtered vector searches.
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'local';
