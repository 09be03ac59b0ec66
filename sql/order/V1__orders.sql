-- Orders and their lines. One line per addItem call, in call order (by id).
CREATE TABLE orders (
    id         text        PRIMARY KEY,
    user_id    text        NOT NULL,
    paid       boolean     NOT NULL DEFAULT false,
    total_cost bigint      NOT NULL DEFAULT 0 CHECK (total_cost >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_lines (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   text   NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    item_id    text   NOT NULL,
    quantity   bigint NOT NULL CHECK (quantity > 0),
    unit_price bigint NOT NULL CHECK (unit_price >= 0)
);

CREATE INDEX order_lines_by_order ON order_lines (order_id, id);
