# syntax=docker/dockerfile:1
# One image for the four ordermesh services; the first argument chooses which one runs:
#   docker build -t ordermesh:0.1.0 .
#   docker run --rm ordermesh:0.1.0 gateway --help
# The builder stage resolves every dependency into wheels (pinned by
# requirements/constraints.txt) and installs them into a virtualenv; the runtime stage
# copies only that virtualenv and the files the services read, and runs as a fixed non-root
# user. No HEALTHCHECK: Kubernetes probes gRPC health itself, and docker-compose.yml runs
# `probe health` for local stacks.

ARG PYTHON_IMAGE=python:3.11-slim

# -- builder: wheels and the virtualenv ------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/ordermesh

# Dependencies first, from pyproject.toml and the constraints alone, so this layer is
# rebuilt only when they change, not on every source edit.
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements/runtime.txt \
    && /opt/ordermesh/bin/pip wheel --wheel-dir /wheels \
        -c requirements/constraints.txt -r requirements/runtime.txt \
    && /opt/ordermesh/bin/pip install --no-index --find-links /wheels \
        -c requirements/constraints.txt -r requirements/runtime.txt

COPY ordermesh ordermesh
COPY gateway gateway
COPY ubscore ubscore
COPY matcher matcher
COPY settlement settlement
RUN /opt/ordermesh/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/ordermesh/bin/pip install --no-index --no-deps /wheels/ordermesh-*.whl \
    && /opt/ordermesh/bin/python -m pip uninstall --quiet --yes pip setuptools \
    && /opt/ordermesh/bin/python -m compileall -q /opt/ordermesh/lib \
    && /opt/ordermesh/bin/python -c "import gateway.__main__, ubscore.__main__, matcher.__main__, settlement.__main__"

# -- runtime: the virtualenv, the markets table, a non-root user -----------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ordermesh" \
      org.opencontainers.image.description="ordermesh services: gateway, ubscore, matcher, settlement (choose one by the first argument)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

RUN groupadd --system --gid 10001 ordermesh \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ordermesh

COPY --from=builder /opt/ordermesh /opt/ordermesh
COPY config/markets.toml /app/config/markets.toml
COPY --chmod=0755 deploy/docker/entrypoint.sh /app/entrypoint.sh
COPY deploy/docker/probe.py /app/probe.py

# The services listen on every interface inside a container (their default is loopback);
# the markets table is the image's copy unless a mounted one (a ConfigMap) is named instead.
ENV PATH=/opt/ordermesh/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ORDERMESH_HOST=0.0.0.0 \
    ORDERMESH_MARKETS=/app/config/markets.toml

WORKDIR /app
USER 10001:10001
EXPOSE 50051 50052 50053 50054 9101 9102 9103 9104
ENTRYPOINT ["/app/entrypoint.sh"]
CMD ["gateway", "--help"]
