-- Items and their stock. The CHECKs are the last line of defence: no code
-- path can sell stock that is not there or store a negative price.
CREATE TABLE items (
    id    text   PRIMARY KEY,
    price bigint NOT NULL CHECK (price >= 0),
    stock bigint NOT NULL DEFAULT 0 CHECK (stock >= 0)
);
