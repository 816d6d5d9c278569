"""The worker process (`lookout worker`, entry `ingest.main.run_worker`): it reads the cameras
it leases and turns their video into events.

`worker` takes a share of the cameras through Redis leases (`assignment`); `camera_runner`
runs that share every tick: `stream_reader` (one PyAV thread per camera: RTSP or a local file
that `media_paths` allows) with its `stream_stats`, `segments` (recent video for clips) under
`storage_guard` (the disk), the detection stage (`detection`: gating, the models that
`model_runtime` loads, rules, `snapshots`), `camera_statuses` (the status people see),
`stream_figures` (per-camera figures the API reads), and `outbox` with `outbox_files` (no event
lost while Redis is down). Beside the runtime: ONVIF (`onvif_device`, `ws_discovery`), which
the API uses to register devices, and `fire_eval` (`lookout eval fire`).

Uses `registry`, `detectors`, `models` and `config`; never `api` or `alerts`.
"""
