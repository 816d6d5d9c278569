"""The alert engine process (`lookout alert-engine`, entry `alerts.main.run_alert_engine`):
events promoted to work that people close, routed and escalated up the unit tree.

`model` holds the tables, `policy` the decisions made from configuration (severity, deadlines,
case codes, merging), `feed` the ordered change log every channel reads (`feed_items`: one
change as a channel sends it), `engine` the consumer of the workers' events and `absorb` what
it does with one batch (`outages`: a flapping camera is one alert; `system_alerts`: alerts
about the deployment itself, such as a full disk), `escalation` the deadline sweep,
`subscriptions` and `delivery` the pushes by webhook (only to the `destinations` allowed) and
MQTT, `counters` the numbered sequences, `lifecycle` the transitions people (and deadlines)
make; `store` and `stats` are the data layer the API's routes call.

Uses `registry`, `detectors` (its `Event`) and `config`; never `api` or `ingest`.
"""
