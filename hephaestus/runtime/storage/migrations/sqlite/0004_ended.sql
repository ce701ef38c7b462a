-- Version 4: instances by the time they ended (Storage.ended), for the dashboard's last hour.
-- A partial index: a row enters it once, with the write that ends its instance, so the
-- writes of a running instance pay nothing for it.
CREATE INDEX heph_instances_ended ON heph_instances (updated_at, status)
WHERE status IN ('completed', 'failed', 'cancelled');
