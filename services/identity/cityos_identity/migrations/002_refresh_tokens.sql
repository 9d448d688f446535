-- Refresh tokens of the password grant. Only a SHA-256 of each token is kept (they are 256-bit
-- random strings: a slow hash adds nothing). Each use rotates: the used token is marked and
-- a new one of the same family (one sign-in) is issued; a used token presented again means it
-- was copied, and the whole family is revoked.
CREATE TABLE refresh_tokens (
    token_hash text PRIMARY KEY,
    family_id text NOT NULL,
    username text NOT NULL REFERENCES people (username),
    scopes text[] NOT NULL,  -- what the sign-in was granted; a refresh may only narrow it
    access_jti text NOT NULL,  -- the access token issued with it (cut off when the family is)
    issued_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,  -- idle limit: unused this long, the session ends
    family_expires_at timestamptz NOT NULL,  -- absolute limit of the sign-in
    used_at timestamptz,
    revoked_at timestamptz,
    revoked_reason text
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_username ON refresh_tokens (username) WHERE revoked_at IS NULL;
CREATE INDEX refresh_tokens_expired ON refresh_tokens (family_expires_at);
