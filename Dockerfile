# Hollang API image. `build` makes a virtualenv with the locked dependencies and the
# package, `runtime` copies only that venv onto a clean base and runs it as a non-root user.
#
# The base is Debian bookworm's Python 3.11. Call `python3` (or the venv), never `python`:
# the image the CI check builds locally with debootstrap has no /usr/local/bin/python.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
WORKDIR /src
# The service's dependencies exactly as locked (`make lock`): every version pinned and every
# file's sha256 checked. This layer is rebuilt when the lock changes, not when the code or
# anything in pyproject.toml does.
COPY requirements.txt ./
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.txt
COPY pyproject.toml ./
# The package itself, with the bundled model and catalogue as package data.
COPY README.md ./
COPY server ./server
COPY model ./model
COPY db ./db
COPY storage ./storage
COPY batching ./batching
COPY cli ./cli
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/python -c 'from server.settings import BUNDLED_MODEL; from db.catalog import DEFAULT_CATALOG; assert BUNDLED_MODEL.is_file() and DEFAULT_CATALOG.is_file()'

FROM ${BASE_IMAGE} AS runtime
RUN groupadd --gid 10001 hollang \
 && useradd --uid 10001 --gid hollang --no-create-home --home-dir /var/lib/hollang \
      --shell /usr/sbin/nologin hollang \
 && install -d -o hollang -g hollang -m 0750 /var/lib/hollang
COPY --from=build /opt/venv /opt/venv
COPY deploy/wait_ready.py /opt/hollang/wait_ready.py
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOLLANG_HOST=0.0.0.0 \
    HOLLANG_PORT=8000 \
    HOLLANG_WORKERS=2 \
    HOLLANG_DATA_DIR=/var/lib/hollang
USER hollang
WORKDIR /var/lib/hollang
EXPOSE 8000
# uvicorn answers SIGTERM by closing its listening socket, finishing in-flight requests
# (up to 30 s, `timeout_graceful_shutdown` in `hollang serve`) and then exiting; give
# `docker stop` / compose at least 40 s (`--stop-timeout`, `stop_grace_period`).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "/opt/hollang/wait_ready.py", "--timeout", "0", "--port-from-env"]
# Exec form: `hollang` is PID 1 and receives the SIGTERM itself. Host, port and worker
# count come from HOLLANG_HOST / HOLLANG_PORT / HOLLANG_WORKERS.
CMD ["hollang", "serve"]
