-- Idempotency-Key (draft-ietf-httpapi-idempotency-key-header): the first
-- request with a key claims it; its response is stored and replayed to any
-- repeat. status IS NULL while the first request is in flight; a claim whose
-- lease ran out (the api died mid-request) may be taken over.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint  bytea       NOT NULL,
    status       smallint    CHECK (status BETWEEN 100 AND 599),
    headers      jsonb,
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
