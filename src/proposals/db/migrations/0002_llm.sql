-- LLM gateway: the persistent response cache and the per-call usage log.
--
-- llm_cache: one row per distinct request (sha256 of model, messages, schema and parameters).
-- A resumed or repeated run finds its answers here and makes no provider call.
-- llm_usage: one row per call answered (by the provider or from the cache), tagged by run and
-- node, so a run's cost can be reported after the process is gone.

CREATE TABLE llm_cache (
    request_hash      text PRIMARY KEY CHECK (request_hash ~ '^[0-9a-f]{64}$'),
    model             text NOT NULL,
    response_text     text NOT NULL,
    prompt_tokens     integer NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens integer NOT NULL CHECK (completion_tokens >= 0),
    finish_reason     text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    hits              bigint NOT NULL DEFAULT 0,
    last_hit_at       timestamptz
);

CREATE TABLE llm_usage (
    id                bigserial PRIMARY KEY,
    run_id            text,
    node              text,
    model             text NOT NULL,
    request_hash      text NOT NULL,
    prompt_tokens     integer NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens integer NOT NULL CHECK (completion_tokens >= 0),
    cost_usd          double precision NOT NULL CHECK (cost_usd >= 0),
    cached            boolean NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX llm_usage_run_idx ON llm_usage (run_id, node);
