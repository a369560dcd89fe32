# eightbyeight-exporter: Prometheus exporter for the 8x8 Number Health API.
#
# Build:  docker build -t eightbyeight-exporter .
# Run:    docker run -p 9881:9881 -e EIGHTBYEIGHT_SUBACCOUNTS=my-subaccount \
#           -e EIGHTBYEIGHT_API_KEY_FILE=/run/secrets/eightbyeight_api_key \
#           -v /path/to/key:/run/secrets/eightbyeight_api_key:ro eightbyeight-exporter
# The API key is never baked into the image: pass it at run time as a file (preferred)
# or as EIGHTBYEIGHT_API_KEY.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---- builder: turn the source into wheels (the project and its dependencies) ----
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /src
COPY pyproject.toml README.md LICENSE requirements.lock ./
COPY exporter ./exporter
# requirements.lock pins every runtime dependency: the image gets the audited versions.
# wheels.sha256 lists what was built (see the runtime stage).
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint requirements.lock . \
    && sha256sum /wheels/*.whl > /src/wheels.sha256

# ---- runtime: only the installed wheels, no source tree, no build tools ----
FROM ${PYTHON_IMAGE} AS runtime

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A fixed, non-zero UID/GID so that file permissions (mounted key files) and Kubernetes
# runAsNonRoot checks are predictable.
RUN groupadd --system --gid 10001 exporter \
    && useradd --system --uid 10001 --gid exporter --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin exporter

# The checksums of the wheels about to be installed, copied first: buildah (podman build)
# does not let the content of a bind-mounted stage invalidate its layer cache, so without
# this a rebuild after a code change would reuse the install layer of the old code. They
# stay in the image as the list of what was installed.
COPY --from=builder /src/wheels.sha256 /usr/local/share/eightbyeight-exporter/wheels.sha256
# Install the project's wheel with --no-index: its dependencies come only from the wheels
# built above, nothing is fetched at this stage. The bind mount keeps the wheels out of the
# image layers (needs BuildKit, the default builder since Docker 23).
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels \
        /wheels/eightbyeight_exporter-*.whl

# OCI image annotations (read by registries, scanners and `podman image inspect`); the version
# is the project's (pyproject.toml), held equal by tests/deployment/test_container.py.
LABEL org.opencontainers.image.title="eightbyeight-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the 8x8 CPaaS Number Health service (virtual numbers, their health and cost)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/eightbyeight-exporter/eightbyeight-exporter" \
      org.opencontainers.image.url="https://github.com/eightbyeight-exporter/eightbyeight-exporter" \
      org.opencontainers.image.documentation="https://github.com/eightbyeight-exporter/eightbyeight-exporter/tree/main/docs"

USER 10001:10001
EXPOSE 9881

# The slim image has no curl. The exporter asks its own /-/healthy, on the listen address and
# with the TLS settings the running exporter was started with (read from its command line), so
# the check holds for any --web.listen-address and --web.config.file.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["eightbyeight-exporter", "healthcheck", "--timeout=4s"]

ENTRYPOINT ["eightbyeight-exporter"]
