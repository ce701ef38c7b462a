-- Version 6: indexes for listing and counting instances (Storage.page, Storage.count).
-- Newest or oldest first, all or by status or by workflow, with a stable (created_at, id)
-- cursor; ids by prefix (LIKE 'p%' whatever the database's collation); counts by status
-- and workflow from an index alone.
DROP INDEX heph_instances_status;
DROP INDEX heph_instances_workflow;
CREATE INDEX heph_instances_created ON heph_instances (created_at, id);
CREATE INDEX heph_instances_status ON heph_instances (status, created_at, id);
CREATE INDEX heph_instances_workflow ON heph_instances (workflow, created_at, id);
CREATE INDEX heph_instances_counts ON heph_instances (status, workflow, workflow_version);
CREATE INDEX heph_instances_id_pattern ON heph_instances (id text_pattern_ops);
