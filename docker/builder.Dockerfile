# The builder image: edgebook with cargo, the SDK's dependencies compiled into its target
# dir at image build time (edgebook prebuild). Build from the repository root:
#   docker build -f docker/builder.Dockerfile -t edgebook/builder:0.1.0 .

FROM python:3.12-slim AS wheel
RUN pip install --no-cache-dir "hatchling>=1.21"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY jupyter-config ./jupyter-config
COPY sdk ./sdk
COPY deploy/chart ./deploy/chart
COPY edgebook ./edgebook
RUN HATCH_BUILD_NO_HOOKS=true python -m hatchling build -t wheel -d /dist

FROM rust:1-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /dist /tmp/dist
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir "$(ls /tmp/dist/edgebook-*.whl)[services,serve]" \
    && rm -rf /tmp/dist \
    && useradd --uid 10001 --user-group --create-home --home-dir /home/edgebook \
        --shell /usr/sbin/nologin edgebook \
    && install -d -o 10001 -g 10001 -m 0755 /opt/edgebook /var/lib/edgebook
# cargo's download cache and the shared target dir (with the worker launcher beside it)
# belong to the builder's user
ENV PATH=/opt/venv/bin:$PATH \
    CARGO_HOME=/opt/edgebook/cargo \
    EDGEBOOK_TARGET_DIR=/opt/edgebook/target \
    EDGEBOOK_DATA_DIR=/var/lib/edgebook \
    HOME=/home/edgebook \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/edgebook
USER 10001:10001
RUN edgebook prebuild
EXPOSE 8081
ENTRYPOINT ["edgebook", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8080", "--admin-host", "0.0.0.0", "--admin-port", "8081", "--data-dir", "/var/lib/edgebook", "--role", "builder"]
