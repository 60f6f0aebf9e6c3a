# The gateway image: edgebook with its services and serve extras; no Rust toolchain (the
# builder image compiles handlers). Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t edgebook/gateway:0.1.0 .

FROM python:3.12-slim AS wheel
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir "hatchling>=1.21"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY jupyter-config ./jupyter-config
COPY sdk ./sdk
COPY deploy/chart ./deploy/chart
COPY edgebook ./edgebook
# Serving needs no JupyterLab extension: the wheel is built without the hook that builds it.
RUN HATCH_BUILD_NO_HOOKS=true python -m hatchling build -t wheel -d /dist
# The worker launcher (edgebook/launcher.c), compiled here since the final image has no C
# compiler; it lives beside the target dir, /opt/edgebook/launcher.
ENV EDGEBOOK_TARGET_DIR=/opt/edgebook/target
RUN python -c "from edgebook.sandbox import Sandbox; print(Sandbox().launcher())"

FROM python:3.12-slim
COPY --from=wheel /dist /tmp/dist
RUN pip install --no-cache-dir "$(ls /tmp/dist/edgebook-*.whl)[services,serve]" \
    && rm -rf /tmp/dist \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/edgebook \
        --shell /usr/sbin/nologin edgebook \
    && install -d -o 10001 -g 10001 -m 0755 /var/lib/edgebook
# the gateway refuses a launcher that is not its own user's
COPY --from=wheel --chown=10001:10001 /opt/edgebook/launcher /opt/edgebook/launcher
ENV EDGEBOOK_TARGET_DIR=/opt/edgebook/target \
    EDGEBOOK_DATA_DIR=/var/lib/edgebook \
    HOME=/var/lib/edgebook \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/edgebook
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["edgebook", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8080", "--admin-host", "0.0.0.0", "--admin-port", "8081", "--data-dir", "/var/lib/edgebook", "--role", "gateway"]
