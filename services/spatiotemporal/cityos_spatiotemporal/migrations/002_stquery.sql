-- The query engine: metric KNN indexes, stay points (kept up to date as fixes arrive), and road
-- network topology for reachable areas (pgRouting).
CREATE EXTENSION IF NOT EXISTS pgrouting SCHEMA public;

-- Nearest-k and radius searches in metres: KNN (<->) on geography is true sphere distance, so
-- the k nearest are right at any latitude (degrees of longitude are not metres).
CREATE INDEX latest_positions_geog ON latest_positions USING gist ((geom::geography));
CREATE INDEX latest_positions_ts ON latest_positions (dataset, ts);
CREATE INDEX entity_states_geog ON entity_states USING gist ((geom::geography));
CREATE INDEX media_ts ON media (ts);

-- Stay points (Li et al. 2008, as trackintel's sliding method). `params` names the parameter
-- set (StayPointParams.key()); the engine keeps the default set up to date as fixes arrive.
-- `open`: the vehicle had not left by its last fix (departure is that fix's time so far).
CREATE TABLE stay_points (
    dataset    text NOT NULL,
    params     text NOT NULL,
    subject    text NOT NULL,
    arrival    timestamptz NOT NULL,
    departure  timestamptz NOT NULL,
    lon        double precision NOT NULL,
    lat        double precision NOT NULL,
    geom       geometry(Point, 4326) NOT NULL,
    fixes      integer NOT NULL,
    open       boolean NOT NULL DEFAULT false,
    computed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, params, subject, arrival)
);
CREATE INDEX stay_points_arrival ON stay_points (dataset, params, arrival);
CREATE INDEX stay_points_geom ON stay_points USING gist (geom);

-- Where the incremental computation of each subject stands: the run of fixes it is in (its
-- first fix, and the count and coordinate sums up to the last fix processed).
CREATE TABLE staypoint_cursors (
    dataset   text NOT NULL,
    subject   text NOT NULL,
    start_ts  timestamptz NOT NULL,
    start_lon double precision NOT NULL,
    start_lat double precision NOT NULL,
    last_ts   timestamptz NOT NULL,
    fixes     integer NOT NULL,
    sum_lon   double precision NOT NULL,
    sum_lat   double precision NOT NULL,
    PRIMARY KEY (dataset, subject)
);
-- Observation batches whose fixes the incremental computation has taken in (redeliveries skip).
CREATE TABLE staypoint_batches (
    batch_id     text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Road networks: the topology of an entity dataset of LineStrings, rebuilt when its states
-- change (`source_states` is the count of states it was built from).
CREATE TABLE road_networks (
    network           text PRIMARY KEY,
    source_states     bigint NOT NULL,
    source_latest     timestamptz,
    built_at          timestamptz NOT NULL DEFAULT now(),
    nodes             integer NOT NULL,
    edges             integer NOT NULL,
    components        integer NOT NULL,
    main_component    bigint NOT NULL,
    main_nodes        integer NOT NULL,
    max_speed_kmh     double precision NOT NULL
);
CREATE TABLE road_nodes (
    network   text NOT NULL,
    id        bigint NOT NULL,
    geom      geometry(Point, 4326) NOT NULL,
    degree    integer NOT NULL,
    component bigint NOT NULL,
    PRIMARY KEY (network, id)
);
-- cost/reverse_cost: seconds at the road's speed; a negative reverse_cost is a one-way road.
CREATE TABLE road_edges (
    network      text NOT NULL,
    id           bigint NOT NULL,
    source       bigint NOT NULL,
    target       bigint NOT NULL,
    cost         double precision NOT NULL,
    reverse_cost double precision NOT NULL,
    length_m     double precision NOT NULL,
    speed_kmh    double precision NOT NULL,
    entity_id    text NOT NULL,
    geom         geometry(LineString, 4326) NOT NULL,
    PRIMARY KEY (network, id)
);
CREATE INDEX road_edges_geom ON road_edges USING gist (geom);
CREATE INDEX road_edges_source ON road_edges (network, source);
CREATE INDEX road_edges_target ON road_edges (network, target);
