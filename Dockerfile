# One image for the API and the workers of docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY config config
COPY detectors detectors
COPY ingest ingest
COPY models models
RUN pip install --no-cache-dir .
ENV LOOKOUT_DATA_DIR=/var/lib/lookout
EXPOSE 8000
CMD ["lookout", "serve", "--host", "0.0.0.0"]
