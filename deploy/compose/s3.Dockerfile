# A local S3-compatible server for docker-compose: moto's server, in memory, with the API's
# bucket created at start (s3_server.py). Same base as the API image: no other registry.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
RUN python3 -m venv /opt/moto \
 && /opt/moto/bin/pip install --no-cache-dir --disable-pip-version-check "moto[server]>=5.1,<6" \
 && useradd --uid 10002 --no-create-home --shell /usr/sbin/nologin moto
COPY s3_server.py /opt/moto/s3_server.py
USER moto
EXPOSE 5000
CMD ["/opt/moto/bin/python", "/opt/moto/s3_server.py"]
