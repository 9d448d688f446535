-- The spatio-temporal store: observations (partitioned by day), entities with history,
-- media metadata, and the city's divisions and units.
CREATE EXTENSION IF NOT EXISTS postgis;

-- Index keys are bigints because B-trees on text and GiST on points cost the write rate most.
CREATE TABLE observations (
    dataset     text NOT NULL,
    subject     text NOT NULL,
    subject_key bigint NOT NULL,          -- hash of (dataset, subject), see store.subject_key
    ts          timestamptz NOT NULL,
    lon         double precision NOT NULL,
    lat         double precision NOT NULL,
    z2t         bigint NOT NULL,          -- 10-minute bin << 40 | Z2 cell, see cells.py
    speed_kmh   real,
    heading     real,
    value       double precision,
    attrs       jsonb
) PARTITION BY RANGE (ts);
-- Trajectories: one subject's fixes in time order (then filter dataset and subject: hash).
CREATE INDEX observations_subject ON observations (subject_key, ts);
-- Range queries: a box and a window are, per time bin, a few runs of keys.
CREATE INDEX observations_z2t ON observations (z2t);
-- Time windows over everything; tiny because fixes arrive roughly in time order.
CREATE INDEX observations_ts_brin ON observations USING brin (ts);

-- Which observation batches are stored: the idempotency record of the consumer.
CREATE TABLE stored_batches (
    batch_id  text PRIMARY KEY,
    dataset   text NOT NULL,
    rows      integer NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);

-- Each mobile subject's newest fix, for nearest-k and box select.
CREATE TABLE latest_positions (
    dataset   text NOT NULL,
    subject   text NOT NULL,
    ts        timestamptz NOT NULL,
    geom      geometry(Point, 4326) NOT NULL,
    speed_kmh real,
    heading   real,
    value     double precision,
    attrs     jsonb,
    PRIMARY KEY (dataset, subject)
);
CREATE INDEX latest_positions_geom ON latest_positions USING gist (geom);

-- Entities keep their history: a state is valid from valid_from until the next state.
CREATE TABLE entity_states (
    dataset    text NOT NULL,
    entity_id  text NOT NULL,
    valid_from timestamptz NOT NULL,
    valid_to   timestamptz,
    name       text,
    category   text,
    geom       geometry(Geometry, 4326),
    attrs      jsonb NOT NULL DEFAULT '{}',
    batch_id   text NOT NULL,
    PRIMARY KEY (dataset, entity_id, valid_from)
);
CREATE INDEX entity_states_geom ON entity_states USING gist (geom);
CREATE INDEX entity_states_current ON entity_states (dataset, category) WHERE valid_to IS NULL;

CREATE TABLE media (
    media_id   text PRIMARY KEY,
    dataset    text NOT NULL,
    subject    text NOT NULL,
    ts         timestamptz NOT NULL,
    geom       geometry(Point, 4326),
    uri        text NOT NULL,
    media_type text,
    attrs      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX media_subject_ts ON media (dataset, subject, ts);
CREATE INDEX media_geom ON media USING gist (geom);

CREATE TABLE divisions (
    code    text PRIMARY KEY,
    level   text NOT NULL,
    name    text NOT NULL,
    name_en text,
    parent  text,
    geom    geometry(MultiPolygon, 4326) NOT NULL
);
CREATE INDEX divisions_geom ON divisions USING gist (geom);

CREATE TABLE units (
    id         text PRIMARY KEY,
    level      text NOT NULL,
    department text NOT NULL,
    name       text NOT NULL,
    name_en    text,
    parent     text,
    division   text
);
