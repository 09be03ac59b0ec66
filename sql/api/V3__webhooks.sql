-- Webhook deliveries: one per request that asked for a callback, stored in
-- the same transaction as the request record. `waiting` until the record is
-- final, then `pending` (due at next_attempt_at) until `delivered` or
-- `failed` after the last attempt. A replica claims a due delivery by
-- moving locked_until past the attempt's timeout, so each attempt is made by
-- exactly one replica, and a crashed replica's claim runs out.
CREATE TABLE webhooks (
    request_id      uuid        PRIMARY KEY REFERENCES requests (id) ON DELETE CASCADE,
    url             text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    status          text        NOT NULL DEFAULT 'waiting'
                                CHECK (status IN ('waiting', 'pending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz,
    locked_until    timestamptz NOT NULL DEFAULT '-infinity',
    last_error      text,
    delivered_at    timestamptz,
    CONSTRAINT due_when_pending CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
    CONSTRAINT delivered_at_when_delivered CHECK ((status = 'delivered') = (delivered_at IS NOT NULL))
);

CREATE INDEX webhooks_due ON webhooks (next_attempt_at) WHERE status = 'pending';

-- Every attempt, for the record and for debugging receivers.
CREATE TABLE webhook_attempts (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  uuid        NOT NULL REFERENCES webhooks (request_id) ON DELETE CASCADE,
    attempt     integer     NOT NULL CHECK (attempt >= 1),
    started_at  timestamptz NOT NULL,
    duration_ms integer     NOT NULL CHECK (duration_ms >= 0),
    http_status smallint,
    error       text,
    UNIQUE (request_id, attempt)
);
