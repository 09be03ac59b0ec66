-- A step stock-svc or payment-svc could not apply because of its data is
-- answered `rejected`; the saga compensates the other step and fails.
ALTER TABLE sagas DROP CONSTRAINT sagas_reserve_check;
ALTER TABLE sagas ADD CONSTRAINT sagas_reserve_check
    CHECK (reserve IN ('done', 'insufficient', 'not_found', 'rejected'));
ALTER TABLE sagas DROP CONSTRAINT sagas_charge_check;
ALTER TABLE sagas ADD CONSTRAINT sagas_charge_check
    CHECK (charge IN ('done', 'insufficient', 'not_found', 'rejected'));
