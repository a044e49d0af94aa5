# syntax=docker/dockerfile:1
# One image for every Shopfloor service (simulate, agent, collect, api, db, rollup, mqtt, ...): the `shopfloor`
# command is the entrypoint, the service is the command, e.g. `docker run IMAGE agent --help`.
# docker-compose.yml builds it; tests/unit/test_compose_file.py checks the rules below without Docker.

# ---- build: the wheel, from the source tree (build tools stay in this stage) -------------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN pip install "build==1.2.*"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shopfloor/ shopfloor/
COPY simulators/ simulators/
COPY edge_agent/ edge_agent/
COPY collector/ collector/
COPY api/ api/
COPY launcher/ launcher/
RUN python -m build --wheel --outdir /dist .

# ---- runtime: the wheel installed with its PostgreSQL driver; no compiler, no source tree, no wheel file ----------
FROM python:3.11-slim AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/dist,target=/dist \
    pip install "$(ls /dist/shopfloor-*.whl)[postgresql]"
# A user of its own (uid/gid 10001: no clash with a host's first users). The directories are mount points for named
# volumes: Docker gives a new, empty volume the owner of the directory it is mounted on, so each starts writable by
# this user. /var/lib/shopfloor: a service's own data (agent outbox, dead letters); /var/lib/shopfloor-broker and
# /var/lib/shopfloor-ca: what the compose file's mqtt-init writes for the broker and for the broker's clients.
RUN groupadd --system --gid 10001 shopfloor \
    && useradd --system --uid 10001 --gid shopfloor --home-dir /var/lib/shopfloor --no-create-home \
        --shell /usr/sbin/nologin shopfloor \
    && install -d -o shopfloor -g shopfloor -m 0755 /var/lib/shopfloor /var/lib/shopfloor-broker /var/lib/shopfloor-ca
USER 10001:10001
WORKDIR /var/lib/shopfloor
ENV SHOPFLOOR_DATA_DIR=/var/lib/shopfloor
# One image runs services with different health probes (the API's /healthz on its port, the agent's and the
# collector's /healthz on --metrics-port, the simulator's Modbus port) and one-shot commands that have none, so
# each service declares its own healthcheck (docker-compose.yml); they use this image's Python, nothing extra.
HEALTHCHECK NONE
ENTRYPOINT ["shopfloor"]
CMD ["--help"]
