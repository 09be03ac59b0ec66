-- The checkout saga. One row per checkout request (id = request ID), written
-- in the same transaction as the order change it causes, so a redelivered
-- message replays the recorded state instead of starting again.
CREATE TABLE sagas (
    id           uuid        PRIMARY KEY,
    order_id     text        NOT NULL,
    user_id      text,
    amount       bigint      NOT NULL DEFAULT 0 CHECK (amount >= 0),
    -- [[item_id, quantity], ...], summed per item: what was asked of stock-svc.
    items        jsonb       NOT NULL DEFAULT '[]',
    state        text        NOT NULL CHECK (state IN ('running', 'compensating', 'succeeded', 'failed')),
    reserve      text        CHECK (reserve IN ('done', 'insufficient', 'not_found')),
    charge       text        CHECK (charge IN ('done', 'insufficient', 'not_found')),
    released     boolean     NOT NULL DEFAULT false,
    refunded     boolean     NOT NULL DEFAULT false,
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    CONSTRAINT completed_when_final
        CHECK ((state IN ('succeeded', 'failed')) = (completed_at IS NOT NULL)),
    -- The reason is known from the first refusal on, while compensating.
    CONSTRAINT reason_when_refused
        CHECK ((state IN ('compensating', 'failed')) = (reason IS NOT NULL))
);

CREATE INDEX sagas_by_order ON sagas (order_id);

-- At most one checkout in flight per order: the running saga, NULL when none.
ALTER TABLE orders ADD COLUMN checkout_saga uuid;
