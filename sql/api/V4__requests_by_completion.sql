-- Retention ages a final request record from its completion, not from its
-- ID (acceptance); a pending record is never purged. The purge walks this
-- index (oldest completion first); only final records have a completed_at.
CREATE INDEX requests_by_completion ON requests (completed_at) WHERE completed_at IS NOT NULL;
