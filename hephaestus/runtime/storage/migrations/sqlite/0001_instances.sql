-- Version 1: the instances, one row each; `state` is the codec's JSON.
-- Times are seconds since the epoch (UTC), written by Hephaestus.
CREATE TABLE heph_instances (
    id               TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    workflow_version INTEGER NOT NULL,
    status           TEXT NOT NULL,
    state            TEXT NOT NULL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE INDEX heph_instances_status ON heph_instances (status);
CREATE INDEX heph_instances_workflow ON heph_instances (workflow, workflow_version);
