"""Alerts: events promoted to work that people close, routed and escalated up the unit tree.

`model` holds the tables, `policy` the decisions made from configuration (severity, deadlines,
case codes, merging), `feed` the ordered change log every channel reads, `engine` the consumer
of `lookout:events` and `absorb` what it does with one batch (`outages`: a flapping camera is
one alert; `system_alerts`: alerts about the deployment itself, such as a full disk),
`lifecycle` the transitions people make, `escalation` the deadline sweep.
"""
