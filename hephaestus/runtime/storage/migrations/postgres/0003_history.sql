-- Version 3: each instance's history, one row per record, in the order written.
-- `at` and `duration` are nanoseconds.
CREATE TABLE heph_history (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instance_id text NOT NULL,
    kind        text NOT NULL,
    at          bigint NOT NULL,
    step        text,
    item        integer,
    attempt     integer,
    event       text,
    duration    bigint,
    details     jsonb
);
CREATE INDEX heph_history_instance ON heph_history (instance_id, seq);
