-- Run once by the postgres image on an empty volume (/docker-entrypoint-initdb.d).
-- One database per service; the services apply their own migrations at start-up.
CREATE DATABASE api;
CREATE DATABASE "order";
CREATE DATABASE stock;
CREATE DATABASE payment;
