"""The data every process shares: units, cameras, users and their tokens, sealed camera
credentials, the audit chain, the CSV import, the registry's change feed, and the database
schema's migrations. No HTTP, no video: the API, the workers and the alert engines all build
on it, and it imports none of them."""
