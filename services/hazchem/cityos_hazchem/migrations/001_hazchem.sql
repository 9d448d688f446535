-- Warnings already posted to the event hub (by idempotency key): a re-computed window does not
-- post them again.
CREATE TABLE IF NOT EXISTS posted_warnings (
    key        text PRIMARY KEY,
    kind       text NOT NULL,
    vehicle    text NOT NULL,
    posted_at  timestamptz NOT NULL DEFAULT now()
);
