-- Retention walks the primary key (a UUIDv7 stamped at acceptance) and
-- checks `completed_at` on the way (runtime::retention::Age::V7KeyThen): the
-- finalisation of a record writes one index entry fewer.
DROP INDEX requests_by_completion;
