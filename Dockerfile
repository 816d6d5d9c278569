# One image for the API and the workers of docker-compose.yml.
FROM python:3.11-slim AS base
WORKDIR /app
# opencv-python's libGL.so.1 and GLib; the service's own Redis when no LOOKOUT_REDIS_URL is given
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 redis-server \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY alerts alerts
COPY api api
COPY config config
COPY detectors detectors
COPY ingest ingest
COPY models models
COPY registry registry
RUN pip install --no-cache-dir .

# The detection models exported to ONNX once; torch and ultralytics stay in this stage.
FROM base AS models
RUN lookout models build && rm -rf models/cache/export-env

# The run time: ONNX Runtime, no torch.
FROM base
COPY --from=models /app/models/cache models/cache
ENV LOOKOUT_DATA_DIR=/var/lib/lookout
EXPOSE 8000
CMD ["lookout", "serve", "--host", "0.0.0.0"]
