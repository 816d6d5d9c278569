"""The HTTP layer (`lookout serve`) and the `lookout` command line.

`app` builds the FastAPI application from `routes/` (one router per resource) and `schemas/`
(request and response bodies); `middleware` and `deps` are what every request passes (the
session, the caller with its unit scope, the role check), with `login_throttle` and `passwords`;
`feed_hub` fans the alert feed out to live connections (SSE, WebSocket); `metrics`, `docs`;
`services` is what one API process holds. `serve` runs the whole service on one machine: the
API, a worker per core and the alert engine as supervised children. `cli` parses the `lookout`
command and calls each process's entry (`api.serve`, `ingest.main`, `alerts.main`); `demo`
seeds `serve --demo`.

May use every package below it; none of them imports it.
"""
