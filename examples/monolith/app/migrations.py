"""The schema migrations, in order: `manage.py migrate` applies those not applied yet (and
records them in `schema_migrations`); the app reports any it finds missing as `pending`."""

MIGRATIONS = [
    (
        "0001_heartbeats",
        "CREATE TABLE heartbeats (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(),"
        " source text NOT NULL)",
    ),
    (
        "0002_article_slugs",
        "ALTER TABLE articles ADD COLUMN slug text;"
        " UPDATE articles SET slug = lower(regexp_replace(title, '[^A-Za-z0-9]+', '-', 'g'))",
    ),
]
