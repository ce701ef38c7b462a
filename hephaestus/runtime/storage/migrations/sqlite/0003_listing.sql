-- Version 3: indexes for listing and counting instances (Storage.page, Storage.count).
-- Newest or oldest first, all or by status or by workflow, with a stable (created_at, id)
-- cursor; counts by status and workflow from an index alone.
DROP INDEX heph_instances_status;
DROP INDEX heph_instances_workflow;
CREATE INDEX heph_instances_created ON heph_instances (created_at, id);
CREATE INDEX heph_instances_status ON heph_instances (status, created_at, id);
CREATE INDEX heph_instances_workflow ON heph_instances (workflow, created_at, id);
CREATE INDEX heph_instances_counts ON heph_instances (status, workflow, workflow_version);
