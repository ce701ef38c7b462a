-- Version 2: what the distributed runner needs.
-- heph_step_results: each step job records its outcome here, in the same
-- transaction that defers the advance that will apply it. `slot` makes results
-- idempotent: the first outcome (completed or failed) of a step activation
-- wins, its `async` row and the first resume (an event or its timer) coexist.
CREATE TABLE heph_step_results (
    id          bigserial PRIMARY KEY,
    instance_id text NOT NULL REFERENCES heph_instances (id) ON DELETE CASCADE,
    step        text NOT NULL,
    activation  integer NOT NULL DEFAULT 1,
    kind        text NOT NULL CHECK (kind IN ('completed', 'async', 'resumed', 'failed')),
    slot        text GENERATED ALWAYS AS (
                    CASE kind WHEN 'async' THEN 'async' WHEN 'resumed' THEN 'resume' ELSE 'outcome' END
                ) STORED,
    event       text,
    updates     jsonb,
    metadata    jsonb,
    error       jsonb,
    source      text,
    duration    bigint,
    job_id      bigint,
    processed_at timestamptz,
    inserted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (instance_id, step, activation, slot)
);
CREATE INDEX heph_step_results_pending ON heph_step_results (instance_id, id)
    WHERE processed_at IS NULL;
-- The engine advances of each instance, counted across every worker.
ALTER TABLE heph_instances ADD COLUMN advance_count integer NOT NULL DEFAULT 0;
