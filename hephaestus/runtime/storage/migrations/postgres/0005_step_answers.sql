-- A step run on another worker (Step.spread) answers its driver through the
-- instance's inbox: a 'result' letter whose event is the run's token.
ALTER TABLE heph_inbox DROP CONSTRAINT heph_inbox_kind_check;
ALTER TABLE heph_inbox ADD CONSTRAINT heph_inbox_kind_check
    CHECK (kind IN ('resume', 'send', 'timer', 'result'));
