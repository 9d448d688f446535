-- Where the city's incidents are: a read model of the event hub's case events, so that box
-- select ("wartime mode") can list open incidents beside resources. The event hub owns cases;
-- this keeps only what a map needs, rebuilt from the CASE_EVENTS stream.
CREATE TABLE case_places (
    case_id    bigint PRIMARY KEY,
    seq        integer NOT NULL,      -- the last case event applied (events come in order)
    status     text NOT NULL,
    category   text,
    geom       geometry(Point, 4326),
    updated_at timestamptz NOT NULL
);
CREATE INDEX case_places_geom ON case_places USING gist (geom)
    WHERE status NOT IN ('closed', 'rejected', 'merged');
