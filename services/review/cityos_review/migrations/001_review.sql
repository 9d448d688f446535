-- The efficiency review: every case and dispatch event (the drill-down's timelines), one row
-- per round of handling (what the figures count), departments' data contribution, and the
-- ranking's weights. `timeline` and `rounds` are rebuilt from the streams (rebuild.py).
CREATE TABLE timeline (
    case_id bigint NOT NULL,
    key     text NOT NULL,          -- c:<seq> for a case event, d:<event_id> for a dispatch event
    source  text NOT NULL,          -- case | dispatch
    kind    text NOT NULL,
    at      timestamptz NOT NULL,
    body    text NOT NULL,          -- the event as published (JSON)
    PRIMARY KEY (case_id, key)
);

CREATE TABLE rounds (
    case_id       bigint NOT NULL,
    round_seq     integer NOT NULL,
    unit          text NOT NULL,
    department    text NOT NULL,
    category      text,
    dispatched_at timestamptz NOT NULL,
    accept_due    timestamptz,
    dispose_due   timestamptz,
    accepted_at   timestamptz,
    handled_at    timestamptz,
    returned      boolean NOT NULL,
    escalations   integer NOT NULL,
    closed        boolean NOT NULL,
    reopened      boolean NOT NULL,
    ratings       integer NOT NULL,
    score_sum     integer NOT NULL,
    PRIMARY KEY (case_id, round_seq)
);
CREATE INDEX rounds_unit ON rounds (unit, dispatched_at);
CREATE INDEX rounds_department ON rounds (department, dispatched_at);
CREATE INDEX rounds_time ON rounds (dispatched_at);

CREATE TABLE contribution (
    department       text NOT NULL,
    dataset          text NOT NULL,
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    received         bigint NOT NULL,
    accepted         bigint NOT NULL,
    rejected         bigint NOT NULL,
    completeness     double precision NOT NULL,
    freshness_mean_s double precision,
    freshness_max_s  double precision,
    PRIMARY KEY (department, dataset, window_start, window_end)
);
CREATE INDEX contribution_time ON contribution (window_start);

CREATE TABLE weights (
    id         integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    body       jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
