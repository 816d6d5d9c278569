# One image for the API and the workers of docker-compose.yml.
# Stage 1 exports the detection models to ONNX (torch and ultralytics live only here);
# stage 2 is the run time: ONNX Runtime, no torch.
FROM python:3.11-slim AS models
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY config config
COPY detectors detectors
COPY ingest ingest
COPY models models
RUN pip install --no-cache-dir . && lookout models build && rm -rf models/cache/export-env

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY config config
COPY detectors detectors
COPY ingest ingest
COPY models models
RUN pip install --no-cache-dir .
COPY --from=models /app/models/cache models/cache
ENV LOOKOUT_DATA_DIR=/var/lib/lookout
EXPOSE 8000
CMD ["lookout", "serve", "--host", "0.0.0.0"]
