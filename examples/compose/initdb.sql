-- Run once by the postgres image on a fresh volume (mounted into /docker-entrypoint-initdb.d by
-- compose.yaml). POSTGRES_DB already created the Optuna database; MLflow gets one of its own
-- (both stores keep an `alembic_version` table, so they cannot share a database).
CREATE DATABASE mlflow;
