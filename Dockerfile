# One image for the API and the workers of docker-compose.yml.
FROM python:3.11-slim AS base
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY config config
COPY detectors detectors
COPY ingest ingest
COPY models models
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
