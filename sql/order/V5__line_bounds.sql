-- The bounds of common/src/limits.rs on what a line may hold: at most 10^9
-- units at a price of at most 10^9, so a line costs at most 10^18 and no
-- sum over an order's lines leaves BIGINT. The api and order-svc refuse more
-- before it gets here; the per-order bounds (lines, units of one item,
-- total_cost) are checked by order-svc's addItem statements.
-- NOT VALID: lines written before these bounds existed are left as they are
-- (a line is never updated, so they cannot trip the check later); every new
-- line is checked.
ALTER TABLE order_lines
    ADD CONSTRAINT order_lines_quantity_bound CHECK (quantity <= 1000000000) NOT VALID,
    ADD CONSTRAINT order_lines_unit_price_bound CHECK (unit_price <= 1000000000) NOT VALID;
