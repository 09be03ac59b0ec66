-- Users and their credit; credit can never go below zero.
CREATE TABLE users (
    id     text   PRIMARY KEY,
    credit bigint NOT NULL DEFAULT 0 CHECK (credit >= 0)
);
