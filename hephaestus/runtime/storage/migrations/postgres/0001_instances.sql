-- Version 1: the instances, one row each; `state` is the codec's JSON.
CREATE TABLE heph_instances (
    id               text PRIMARY KEY,
    workflow         text NOT NULL,
    workflow_version integer NOT NULL CHECK (workflow_version > 0),
    status           text NOT NULL CHECK (status IN ('pending', 'running', 'waiting', 'completed', 'failed', 'cancelled')),
    state            jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX heph_instances_status ON heph_instances (status);
CREATE INDEX heph_instances_workflow ON heph_instances (workflow, workflow_version);
