"""All SQL of the service, one module per concern.

- tables: the schema (predictions, batches, batch items, API keys, monitoring, model rollout) and the statuses
- records: what the other modules hand back (records, results, queued observations) and UTC times
- engine: engines tuned for Postgres and SQLite, the readiness ping, Postgres COPY
- observations: single-observation writes, results, labels, the redrive's claim
- batches: bulk intake, batch progress and results
- bulk_rows: storing an upload's chunk (COPY and one statement on Postgres)
- api_keys: who may call the API (keys stored as digests, with their scopes)
- reports: what operators read (the backlog)
- labels: labelled outcomes read back whole, to judge a candidate model on
- monitoring: the model monitor's snapshots and the figures it measures
- retention: the purge of finished rows past their retention
- rollouts: which bundle versions serve (stable, canary and its share) and their history
- measurement: what only the bench reads and writes (drain timings, the baseline's rows, raw COPY)
- clock: the database's own clock, for times compared across machines
- migrate, migrations: the Alembic schema history
"""
