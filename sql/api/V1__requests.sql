-- Request records: what a client polls. A record is stored before its
-- checkout is published, so an ID handed to a client always exists; the
-- sweeper re-publishes records still pending at next_publish_at, which makes
-- a crash between storing and publishing harmless.
CREATE TABLE requests (
    id               uuid        PRIMARY KEY,
    kind             text        NOT NULL DEFAULT 'checkout' CHECK (kind IN ('checkout')),
    order_id         text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'succeeded', 'failed')),
    reason           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    publish_attempts integer     NOT NULL DEFAULT 1,
    next_publish_at  timestamptz NOT NULL,
    CONSTRAINT completed_when_final CHECK ((status = 'pending') = (completed_at IS NULL)),
    CONSTRAINT reason_when_failed CHECK ((status = 'failed') = (reason IS NOT NULL))
);

CREATE INDEX requests_to_sweep ON requests (next_publish_at) WHERE status = 'pending';
