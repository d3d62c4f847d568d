-- Runs as background jobs: a queue in the runs table, leases held by workers, tenants.
--
-- A run is claimed by a worker (FOR UPDATE SKIP LOCKED) when it is 'queued', or 'running' with
-- an expired lease (its worker died). Every claim increments ``attempts``: the pair
-- (worker_id, attempts) is the fencing token every write of the holder checks, so a worker
-- that lost its lease can never write events or a status again. ``last_seq``, ``usage`` and
-- ``progress`` are written in the same transaction as the events they summarise.

ALTER TABLE runs
    ADD COLUMN IF NOT EXISTS tenant           text NOT NULL DEFAULT 'local',
    ADD COLUMN IF NOT EXISTS worker_id        text,
    ADD COLUMN IF NOT EXISTS lease_until      timestamptz,
    ADD COLUMN IF NOT EXISTS attempts         integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS cancel_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS started_at       timestamptz,
    ADD COLUMN IF NOT EXISTS finished_at      timestamptz,
    ADD COLUMN IF NOT EXISTS last_seq         integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS provider         text,
    ADD COLUMN IF NOT EXISTS simulated        boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS usage            jsonb,
    ADD COLUMN IF NOT EXISTS progress         jsonb,
    ADD COLUMN IF NOT EXISTS rerun_of         text;

ALTER TABLE run_events ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'local';

UPDATE runs SET last_seq = e.last
FROM (SELECT run_id, max(seq) AS last FROM run_events GROUP BY run_id) e
WHERE e.run_id = runs.id;

-- Runs a process left unfinished before leases existed: no worker may pick them up unasked.
UPDATE runs
SET status = 'failed',
    error = 'interrupted before runs had leases; continue it with proposals generate --resume '
            || id,
    updated_at = now()
WHERE status IN ('pending', 'running');

CREATE INDEX IF NOT EXISTS runs_queue_idx ON runs (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS runs_tenant_created_idx ON runs (tenant, created_at DESC);
