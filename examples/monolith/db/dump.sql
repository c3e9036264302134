-- Initial dump of the monolith's database (as `pg_dump --clean` would restore it): replaces
-- everything in the public schema. The db image loads it when the database is created;
-- `stackctl exec reset-db` loads it again (and migrates).
DROP SCHEMA IF EXISTS public CASCADE;
CREATE SCHEMA public;

CREATE TABLE articles (
    id    serial PRIMARY KEY,
    title text NOT NULL,
    body  text NOT NULL
);

INSERT INTO articles (title, body) VALUES
    ('Welcome to the monolith', 'The app, its cron worker, the front builder, PostgreSQL and Redis.'),
    ('Stages side by side', 'dev and qa run on one host, each with its own network and volumes.'),
    ('One init', 'The database starts with this dump; the app starts after its migrations ran.');
