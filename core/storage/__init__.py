"""All SQL of the service, one module per concern.

- tables: the schema (predictions, batches, batch items, API keys) and the statuses
- records: what the other modules hand back (records, results, queued observations) and UTC times
- engine: engines tuned for Postgres and SQLite, the readiness ping, Postgres COPY
- observations: single-observation writes, results, labels, the redrive's claim
- batches: bulk intake, batch progress and results
- api_keys: who may call the API (keys stored as digests, with their scopes)
- reports: what operators and the bench read (backlog, live outcomes, drain timings)
- labels: labelled outcomes read back whole, to judge a candidate model on
- migrate, migrations: the Alembic schema history
"""
