-- Ledger of the checkout saga's charge steps (common/src/ledger.rs): one row
-- per saga, written in the same transaction as the balance change, so a
-- redelivered or duplicated command replays its first outcome instead of
-- applying twice. The compensation flips `compensated` once.
CREATE TABLE charges (
    saga_id        uuid        PRIMARY KEY,
    lines          jsonb       NOT NULL,
    outcome        text        NOT NULL CHECK (outcome IN ('done', 'insufficient', 'not_found')),
    compensated    boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    compensated_at timestamptz,
    CHECK (compensated = (compensated_at IS NOT NULL))
);
