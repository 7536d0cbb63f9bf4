# syntax=docker/dockerfile:1
# Rivulet: one image for `rivulet serve`, `rivulet worker` and `rivulet fake-provider`.
#
# Two stages: a builder that makes wheels (compilers and headers stay there), and a slim
# runtime with only the virtualenv. The runtime runs as an unprivileged user, writes nothing
# to its root filesystem (it works with readOnlyRootFilesystem: true; /tmp is the only
# scratch space it may want), and has no HEALTHCHECK: Kubernetes probes /livez and /readyz.
# checkov:skip=CKV_DOCKER_7:the base is pinned through this ARG (a version tag, never latest)
# checkov:skip=CKV_DOCKER_2:no HEALTHCHECK on purpose: Kubernetes probes /livez and /readyz
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/rivulet
COPY pyproject.toml README.md ./
COPY service ./service
# Pass a corporate CA bundle with `--build-arg PIP_CERT=/path` (mounted as a secret) rather
# than turning TLS verification off.
RUN /opt/rivulet/bin/pip install --no-compile . \
    && /opt/rivulet/bin/python -m compileall -q /opt/rivulet/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="rivulet" \
      org.opencontainers.image.description="Durable, resumable LLM output streaming (SSE, Durable Streams)" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/rivulet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RIVULET_HOST=0.0.0.0 \
    RIVULET_PORT=8080 \
    RIVULET_LOG_FORMAT=json
RUN groupadd --system --gid 10001 rivulet \
    && useradd --system --uid 10001 --gid rivulet --no-create-home --shell /usr/sbin/nologin rivulet
COPY --from=build /opt/rivulet /opt/rivulet
USER 10001:10001
EXPOSE 8080
# Bound to 0.0.0.0 the service refuses to start without API keys (RIVULET_API_KEYS[_FILE])
# or an explicit RIVULET_AUTH=none: safe by default.
ENTRYPOINT ["rivulet"]
CMD ["serve"]
