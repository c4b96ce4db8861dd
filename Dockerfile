# tapwatch: `docker compose build` (see docker-compose.yml and docs/deploy.md).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY ingest ./ingest
COPY detect ./detect
COPY simulator ./simulator
COPY store ./store
COPY alerts ./alerts
COPY timeseries ./timeseries
COPY engine ./engine
COPY api ./api
COPY tapwatch ./tapwatch
# psycopg: the PostgreSQL driver for TAPWATCH_DATABASE_URL=postgresql+psycopg://...
RUN pip wheel --no-cache-dir --wheel-dir /wheels . "psycopg[binary]>=3.1,<4"

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TAPWATCH_DATA_DIR=/var/lib/tapwatch \
    TAPWATCH_API_HOST=0.0.0.0 \
    TAPWATCH_API_PORT=8000
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && groupadd --system --gid 10001 tapwatch \
    && useradd --system --uid 10001 --gid tapwatch --home-dir /var/lib/tapwatch --create-home tapwatch \
    && install -d -o tapwatch -g tapwatch -m 0700 /var/lib/tapwatch-broker
USER tapwatch
WORKDIR /var/lib/tapwatch
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=5).status != 200)"]
CMD ["tapwatch", "run"]
