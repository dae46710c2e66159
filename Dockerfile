# syntax=docker/dockerfile:1
# The image-compat-extender server: `image-compat-extender serve` on 0.0.0.0:8888.
#
#   docker build -t image-compat-extender:0.1.0 .
#   make image        # the same with docker, or with buildah where no Docker engine runs
#   docker run --rm -p 8888:8888 image-compat-extender:0.1.0 serve --feature-source=none
#
# Runtime dependencies come from requirements.lock (versions and hashes), installed by
# deploy/image/install.sh, the same script tests/deploy/test_image.py runs into a fresh
# virtualenv. The final stage runs as UID/GID 65532 and writes nothing outside /tmp, so it
# runs with readOnlyRootFilesystem (mount an emptyDir on /tmp, as deploy/ does).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY deploy/image/install.sh /usr/local/bin/install-image-compat-extender
COPY requirements.lock pyproject.toml README.md ./
COPY extender/ extender/
# A private package index: its pip configuration and CA bundle arrive as build secrets, mounted
# for this one step and never written to a layer (see docs/deployment.md). Both are optional.
RUN --mount=type=secret,id=pip.conf,target=/run/secrets/pip.conf \
    --mount=type=secret,id=ca.crt,target=/run/secrets/ca.crt \
    if [ -s /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi \
    && if [ -s /run/secrets/ca.crt ]; then export PIP_CERT=/run/secrets/ca.crt; fi \
    && install-image-compat-extender /opt/image-compat-extender /src

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="image-compat-extender" \
      org.opencontainers.image.description="Kubernetes scheduler extender placing pods by their images' NFD image-compatibility artifacts" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 65532 extender \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin extender
COPY --from=build /opt/image-compat-extender /opt/image-compat-extender
COPY deploy/image/healthcheck.py /opt/image-compat-extender/healthcheck.py
ENV PATH=/opt/image-compat-extender/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IMAGE_COMPAT_LISTEN=0.0.0.0:8888
USER 65532:65532
WORKDIR /tmp
EXPOSE 8888
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "/opt/image-compat-extender/healthcheck.py"]
ENTRYPOINT ["image-compat-extender"]
CMD ["serve"]
