-- A reserve whose data cannot be applied (e.g. it would break a constraint)
-- is answered `rejected` and recorded like any refusal, so a repeat replays it.
ALTER TABLE reservations DROP CONSTRAINT reservations_outcome_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_outcome_check
    CHECK (outcome IN ('done', 'insufficient', 'not_found', 'rejected'));
