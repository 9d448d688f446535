-- A report naming its channel's reference (a system's recurring warning, a hotline's ticket)
-- joins the open case that already has one: intake looks it up by (channel, source_ref).
CREATE INDEX IF NOT EXISTS reports_source_ref ON reports (channel, source_ref, reported_at DESC)
    WHERE source_ref IS NOT NULL;
