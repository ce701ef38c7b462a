-- Version 2: each instance's history, one row per record, in the order written.
-- `at` and `duration` are nanoseconds; `details` is JSON.
CREATE TABLE heph_history (
    seq         INTEGER PRIMARY KEY,
    instance_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    step        TEXT,
    item        INTEGER,
    attempt     INTEGER,
    event       TEXT,
    duration    INTEGER,
    details     TEXT
);
CREATE INDEX heph_history_instance ON heph_history (instance_id, seq);
