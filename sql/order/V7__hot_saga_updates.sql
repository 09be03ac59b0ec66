-- A saga row is updated as it moves (a step's result, its end). Those
-- updates stay HOT (no index entry written, the new version on the same
-- page) when they change no indexed column, not even one in an index's
-- predicate, and the page has room:
-- * the queued sagas are found through a column of their own, set only
--   when a queued saga starts: `state` leaves every index;
-- * retention walks the primary key (a UUIDv7 stamped at acceptance) and
--   checks `completed_at` on the way (runtime::retention::Age::V7KeyThen),
--   so `completed_at` needs no index;
-- * new pages are filled to 60 %, leaving room for a row's later versions.
-- Adding the stored column rewrites the table once, under lock.
ALTER TABLE sagas ADD COLUMN queued boolean GENERATED ALWAYS AS (state = 'queued') STORED;
DROP INDEX sagas_queued;
CREATE INDEX sagas_queued ON sagas (order_id, id) WHERE queued;
DROP INDEX sagas_by_completion;
ALTER TABLE sagas SET (fillfactor = 60);
