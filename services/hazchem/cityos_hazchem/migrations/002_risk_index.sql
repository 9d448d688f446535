-- The risk index per day: one run row per computed day (the daily timer computes a day only if
-- it has no row), and every area's score with its factor breakdown.
CREATE TABLE IF NOT EXISTS risk_runs (
    day          date PRIMARY KEY,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    trigger      text NOT NULL CHECK (trigger IN ('request', 'daily')),
    params       jsonb NOT NULL,  -- resolution, weights, scales, units, windows: the model used
    read         jsonb NOT NULL   -- how many fixes, enterprises, ... the run read
);

CREATE TABLE IF NOT EXISTS risk_areas (
    day       date NOT NULL REFERENCES risk_runs (day) ON DELETE CASCADE,
    level     text NOT NULL CHECK (level IN ('cell', 'street')),
    area      text NOT NULL,
    rank      integer NOT NULL,
    score     double precision NOT NULL,
    name      text,
    street    text,
    factors   jsonb NOT NULL,  -- [{name, raw, normalised, weight, contribution}]
    geometry  jsonb NOT NULL,
    PRIMARY KEY (day, level, area)
);
CREATE INDEX IF NOT EXISTS risk_areas_rank ON risk_areas (day, level, rank);

-- Where a posted warning happened, so the index can place it (rows posted before this migration
-- have no place and are not counted).
ALTER TABLE posted_warnings
    ADD COLUMN IF NOT EXISTS lon double precision,
    ADD COLUMN IF NOT EXISTS lat double precision;
