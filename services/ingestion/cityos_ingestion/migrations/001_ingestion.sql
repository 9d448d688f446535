-- Ingestion owns dataset registrations, batch outcomes, dead letters and contribution tallies.
CREATE TABLE datasets (
    name          text NOT NULL,
    version       integer NOT NULL,
    owner         text NOT NULL,
    kind          text NOT NULL,
    registration  jsonb NOT NULL,
    content_hash  text NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version)
);

-- One row per accepted batch: the idempotency record and the answer given to the caller.
CREATE TABLE batches (
    batch_id    text PRIMARY KEY,
    dataset     text NOT NULL,
    version     integer NOT NULL,
    owner       text NOT NULL,
    received    integer NOT NULL,
    accepted    integer NOT NULL,
    rejected    integer NOT NULL,
    reasons     jsonb NOT NULL,
    received_at timestamptz NOT NULL,
    CHECK (received = accepted + rejected)
);
CREATE INDEX batches_dataset_time ON batches (dataset, received_at);

CREATE TABLE dead_letters (
    id          bigserial PRIMARY KEY,
    dataset     text NOT NULL,
    version     integer,
    owner       text,
    batch_id    text NOT NULL,
    row_number  integer NOT NULL,
    reason      text NOT NULL,
    raw         text NOT NULL,
    received_at timestamptz NOT NULL,
    UNIQUE (batch_id, row_number)
);
CREATE INDEX dead_letters_dataset ON dead_letters (dataset, id);

-- Contribution per department, dataset and hour of arrival.
CREATE TABLE contribution (
    owner          text NOT NULL,
    dataset        text NOT NULL,
    hour           timestamptz NOT NULL,
    received       bigint NOT NULL DEFAULT 0,
    accepted       bigint NOT NULL DEFAULT 0,
    rejected       bigint NOT NULL DEFAULT 0,
    optional_present bigint NOT NULL DEFAULT 0,
    optional_total   bigint NOT NULL DEFAULT 0,
    lag_sum_s      double precision NOT NULL DEFAULT 0,
    lag_count      bigint NOT NULL DEFAULT 0,
    lag_max_s      double precision,
    PRIMARY KEY (owner, dataset, hour)
);
