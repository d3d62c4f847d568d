-- One provider budget shared by every process calling the same endpoint (issue 14).
--
-- ``provider_budgets`` holds the endpoint's figures, adapted by all of its processes together:
-- the concurrency limit (AIMD: cut once per episode, the cut counted in ``generation``; grown
-- by the successes each process reports), the learned connection ceiling and the rate limits
-- (configured or learned from headers). ``provider_shares`` holds one lease per process: its
-- granted slots and rate fraction, renewed by heartbeat. Grants are changed only under the
-- budget row's lock, and a process only takes slots nobody else holds, so the grants never add
-- up to more than the limit; an expired lease (its process died) is deleted by the next
-- heartbeat of any other process, and its share is free again.

CREATE TABLE IF NOT EXISTS provider_budgets (
    endpoint     text PRIMARY KEY,
    concurrency  double precision NOT NULL,
    ceiling      integer,
    rpm          double precision,
    tpm          double precision,
    generation   integer NOT NULL DEFAULT 0,
    cut_at       timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS provider_shares (
    endpoint     text NOT NULL REFERENCES provider_budgets (endpoint) ON DELETE CASCADE,
    holder       text NOT NULL,
    slots        integer NOT NULL DEFAULT 0,
    fraction     double precision NOT NULL DEFAULT 0,
    weight       double precision NOT NULL DEFAULT 1,
    in_flight    integer NOT NULL DEFAULT 0,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (endpoint, holder)
);
