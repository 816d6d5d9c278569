"""The data every process shares, and the schema of the one database they share.

`units` (the county → township → village tree) and `cameras` under them, read and written
inside a caller's unit scope by `camera_store` and searched by `camera_search`; what a caller
may write, validated once for the API and the CSV import (`camera_spec`, `rules_spec`,
`fields`); camera credentials, sealed and never returned (`credentials`, `camera_credentials`);
`users` with their roles and tokens; the audit hash chain (`audit`) and its signed checkpoints
(`audit_checkpoints`); the CSV import (`csv_import`, `csv_file`, `camera_imports`,
`seen_keys`); the change feed that tells the workers the registry changed (`registry_feed`);
and the schema's migrations (`migrate`, Alembic scripts in `migrations/`, the alert engine's
tables included: the scripts create every table, env.py imports none).

No HTTP, no video: the API, the workers and the alert engines build on it, and it imports
none of them, only `config` and `detectors`' types (tests/test_layering.py).
"""
