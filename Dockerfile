# syntax=docker/dockerfile:1
#
# Atlas: Slack chat-ops bot for PostgreSQL backups.
#
#   docker build -t atlas .
#   docker run --env-file atlas.env -v atlas-data:/var/lib/atlas atlas
#
# Two stages: "builder" turns the project and all its dependencies into wheels, so the
# runtime stage installs them offline and carries no build tooling.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

###############################################################################
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src

# Only what the build needs (see .dockerignore); README.md is pyproject's `readme`.
COPY pyproject.toml README.md ./
COPY bot/ ./bot/
COPY handlers/ ./handlers/

RUN pip wheel --no-cache-dir --wheel-dir /wheels .

###############################################################################
FROM ${PYTHON_IMAGE}

# pg_dump refuses to dump a server newer than itself, so the client must be at least the
# server's major version. Debian bookworm only ships 15; take 17 from apt.postgresql.org.
ARG PG_MAJOR=17

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:${PATH} \
    ATLAS_STATE=/var/lib/atlas/atlas.db \
    ATLAS_STORAGE=/var/lib/atlas/backups

# The PGDG signing key is fetched over HTTPS with Python because the slim image has no
# curl/wget (ca-certificates is already present); apt then trusts it for that repo only.
# DL3008 (pin apt versions) is ignored on purpose: PGDG publishes only the newest minor of
# each major and drops older .debs, so an exact "=17.x-1.pgdg120+1" pin breaks the build
# after every PostgreSQL minor release. The major is pinned by the package name instead,
# and zstd comes from the Debian stable release.
# hadolint ignore=DL3008
RUN set -eux; \
    install -d -m 0755 /usr/share/postgresql-common/pgdg; \
    python -c "import urllib.request; urllib.request.urlretrieve('https://www.postgresql.org/media/keys/ACCC4CF8.asc', '/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc')"; \
    . /etc/os-release; \
    echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list; \
    apt-get update; \
    apt-get install -y --no-install-recommends \
        "postgresql-client-${PG_MAJOR}" \
        zstd; \
    rm -rf /var/lib/apt/lists/*; \
    pg_dump --version

COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels /wheels/atlas_backups-*.whl \
    && rm -rf /wheels

# Unprivileged runtime user; numeric UID so Kubernetes runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 atlas \
    && useradd --system --uid 10001 --gid atlas --home-dir /var/lib/atlas \
        --shell /usr/sbin/nologin atlas \
    && install -d -o atlas -g atlas -m 0750 /var/lib/atlas /var/lib/atlas/backups \
    && install -d -o atlas -g atlas -m 0755 /app

WORKDIR /app

# SQLite state (ATLAS_STATE) and local backup storage (ATLAS_STORAGE) live here.
VOLUME ["/var/lib/atlas"]

USER 10001:10001

# HTTP mode: Bolt on /slack/events. Both modes serve /healthz and /metrics on this port.
EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=3)"]

CMD ["atlas", "serve"]
