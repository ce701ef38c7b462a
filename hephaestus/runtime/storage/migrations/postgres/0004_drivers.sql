-- Version 4: one driver per instance (the distributed runner drives an instance
-- in one worker at a time, checkpointing each step with one statement).
-- `epoch` fences an instance's writes: a worker that takes the instance raises
-- it, so a write from an earlier driver (or one made before a cancel) matches
-- no row. `wake_at` is when the instance's earliest timer falls due.
ALTER TABLE heph_instances ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
ALTER TABLE heph_instances ADD COLUMN wake_at timestamptz;
CREATE INDEX heph_instances_wake ON heph_instances (wake_at) WHERE wake_at IS NOT NULL;

-- Resumes, messages and timers sent from any process, kept until the
-- instance's driver applies them (in `id` order; applied rows are deleted in
-- the statement that stores their effect). `sent_at` is in nanoseconds.
CREATE TABLE heph_inbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('resume', 'send', 'timer')),
    step        text,
    event       text NOT NULL,
    data        jsonb,
    delay       double precision,
    sent_at     bigint NOT NULL
);
CREATE INDEX heph_inbox_instance ON heph_inbox (instance_id, id);

-- The per-step design's resumes that were recorded and not applied yet become
-- messages: each is taken by the first step that waits for its event (the
-- step may park again first, since its park may not have been applied).
INSERT INTO heph_inbox (instance_id, kind, step, event, data, sent_at)
SELECT instance_id, 'send', NULL, event, updates,
       (extract(epoch FROM inserted_at) * 1e9)::bigint
FROM heph_step_results WHERE kind = 'resumed' AND processed_at IS NULL ORDER BY id;
DROP TABLE heph_step_results;
ALTER TABLE heph_instances DROP COLUMN advance_count;
