-- Version 3: listing and counting instances (Storage.page, Storage.count).
-- Indexes list them newest or oldest first, all or by status or by workflow, with a
-- stable (created_at, id) cursor. heph_counts keeps how many instances there are per
-- status, workflow and version, kept by triggers (SQLite has one writer at a time), so
-- a count reads a few rows whatever the number of instances.
DROP INDEX heph_instances_status;
DROP INDEX heph_instances_workflow;
CREATE INDEX heph_instances_created ON heph_instances (created_at, id);
CREATE INDEX heph_instances_status ON heph_instances (status, created_at, id);
CREATE INDEX heph_instances_workflow ON heph_instances (workflow, created_at, id);

CREATE TABLE heph_counts (
    status           TEXT NOT NULL,
    workflow         TEXT NOT NULL,
    workflow_version INTEGER NOT NULL,
    n                INTEGER NOT NULL,
    PRIMARY KEY (status, workflow, workflow_version)
) WITHOUT ROWID;
INSERT INTO heph_counts (status, workflow, workflow_version, n)
SELECT status, workflow, workflow_version, count(*) FROM heph_instances
GROUP BY status, workflow, workflow_version;

CREATE TRIGGER heph_counts_insert AFTER INSERT ON heph_instances BEGIN
    INSERT INTO heph_counts (status, workflow, workflow_version, n)
    VALUES (new.status, new.workflow, new.workflow_version, 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER heph_counts_update AFTER UPDATE OF status, workflow, workflow_version
ON heph_instances
WHEN old.status IS NOT new.status OR old.workflow IS NOT new.workflow
    OR old.workflow_version IS NOT new.workflow_version
BEGIN
    UPDATE heph_counts SET n = n - 1 WHERE status = old.status AND workflow = old.workflow
        AND workflow_version = old.workflow_version;
    INSERT INTO heph_counts (status, workflow, workflow_version, n)
    VALUES (new.status, new.workflow, new.workflow_version, 1)
    ON CONFLICT DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER heph_counts_delete AFTER DELETE ON heph_instances BEGIN
    UPDATE heph_counts SET n = n - 1 WHERE status = old.status AND workflow = old.workflow
        AND workflow_version = old.workflow_version;
END;
