-- A charge whose data cannot be applied (e.g. it would break a constraint)
-- is answered `rejected` and recorded like any refusal, so a repeat replays it.
ALTER TABLE charges DROP CONSTRAINT charges_outcome_check;
ALTER TABLE charges ADD CONSTRAINT charges_outcome_check
    CHECK (outcome IN ('done', 'insufficient', 'not_found', 'rejected'));
