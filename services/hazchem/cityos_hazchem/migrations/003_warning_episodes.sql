-- The time span of each posted warning: a warning of the same vehicle and kind overlapping one
-- already posted is the same episode seen again (live warnings see episodes grow; a late fix can
-- move an episode's start), not a new case. Rows from before this migration keep NULLs and are
-- matched by key only.
ALTER TABLE posted_warnings ADD COLUMN IF NOT EXISTS starts_at timestamptz;
ALTER TABLE posted_warnings ADD COLUMN IF NOT EXISTS ends_at timestamptz;
CREATE INDEX IF NOT EXISTS posted_warnings_episode ON posted_warnings (vehicle, kind, starts_at);
