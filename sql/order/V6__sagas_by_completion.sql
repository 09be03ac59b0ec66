-- Retention ages a final saga from its completion, not from its ID (the
-- request's acceptance): a checkout that completes long after it was
-- accepted (an outage) keeps its saga, and so its ledger rows, for the
-- whole retention after it completes. The purge walks this index (oldest
-- completion first); only final sagas have a completed_at.
CREATE INDEX sagas_by_completion ON sagas (completed_at) WHERE completed_at IS NOT NULL;
