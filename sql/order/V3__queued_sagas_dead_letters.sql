-- A checkout of an order that already has one in flight waits as a `queued`
-- saga (no user, amount or items yet: they are read from the order when it
-- starts) instead of being redelivered in a loop.
ALTER TABLE sagas DROP CONSTRAINT sagas_state_check;
ALTER TABLE sagas ADD CONSTRAINT sagas_state_check
    CHECK (state IN ('queued', 'running', 'compensating', 'succeeded', 'failed'));
CREATE INDEX sagas_queued ON sagas (order_id, id) WHERE state = 'queued';

-- Messages order-svc could not apply (e.g. a step result for a saga it does
-- not know), kept for an operator to inspect instead of being dropped.
CREATE TABLE dead_letters (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer    text        NOT NULL,
    reason      text        NOT NULL,
    payload     jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
