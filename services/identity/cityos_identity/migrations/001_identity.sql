-- Signing keys (private PEM kept here; the public halves are published as the JWKS).
CREATE TABLE signing_keys (
    kid text PRIMARY KEY,
    algorithm text NOT NULL DEFAULT 'ES256',
    private_pem text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz  -- no longer signs; still published until its tokens have expired
);

-- Machine clients, each bound to one unit. Secrets only hashed; a rotated-out secret keeps
-- working until previous_valid_until.
CREATE TABLE clients (
    client_id text PRIMARY KEY,
    name text NOT NULL,
    unit text NOT NULL,
    department text NOT NULL,
    scopes text[] NOT NULL,
    description text NOT NULL DEFAULT '',
    service text UNIQUE,  -- set for the client of a CityOS service
    secret_hash text NOT NULL,
    previous_secret_hash text,
    previous_valid_until timestamptz,
    secret_rotated_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE TABLE people (
    username text PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    unit text NOT NULL,
    department text NOT NULL,
    roles text[] NOT NULL,
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- The append-only audit log.
CREATE TABLE audit_log (
    seq bigserial PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    at timestamptz NOT NULL,
    service text NOT NULL,
    actor text NOT NULL,
    actor_kind text NOT NULL,
    unit text NOT NULL,
    action text NOT NULL,
    resource text NOT NULL,
    outcome text NOT NULL,
    status_code integer,
    ip text NOT NULL DEFAULT '',
    trace_id text NOT NULL DEFAULT '',
    detail text NOT NULL DEFAULT '',
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_unit ON audit_log (unit, seq);
CREATE INDEX audit_log_action ON audit_log (action, seq);

-- Rows never change; only the retention function removes rows, and only old ones.
CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    days text := current_setting('cityos.audit_retention_days', true);
BEGIN
    IF TG_OP = 'DELETE' AND days ~ '^[0-9]+$' THEN
        IF days::int >= 30 AND OLD.at < now() - make_interval(days => days::int) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_guard();

-- The city's retention policy: delete rows older than `days` (at least 30) and nothing else.
CREATE FUNCTION audit_log_apply_retention(days integer) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    removed bigint;
BEGIN
    IF days < 30 THEN
        RAISE EXCEPTION 'audit retention must be at least 30 days, not %', days;
    END IF;
    PERFORM set_config('cityos.audit_retention_days', days::text, true);
    DELETE FROM audit_log WHERE at < now() - make_interval(days => days);
    GET DIAGNOSTICS removed = ROW_COUNT;
    PERFORM set_config('cityos.audit_retention_days', '', true);
    RETURN removed;
END $$;
