-- The feedback listing (GET /feedback): the message as sent, whether the rating reopened the
-- case, and a unit's feedback newest first.
ALTER TABLE feedback ADD COLUMN text text NOT NULL DEFAULT '';
ALTER TABLE feedback ADD COLUMN reopened boolean NOT NULL DEFAULT false;
CREATE INDEX feedback_unit ON feedback (unit, sent_at DESC);
