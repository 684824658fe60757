# A MySQL-compatible database for the compose stack, built from Debian's packages on the
# same base as the API (no registry serves mysql:8.0 here). mariadb-entrypoint.sh honours
# the official image's MYSQL_* variables, so docker-compose.yml's settings work unchanged.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends mariadb-server \
 && rm -rf /var/lib/apt/lists/* \
 # An empty data dir: the entrypoint initialises the (named) volume on its first start.
 && rm -rf /var/lib/mysql && install -d -o mysql -g mysql /var/lib/mysql /run/mysqld
COPY mariadb-entrypoint.sh /usr/local/bin/mariadb-entrypoint.sh
VOLUME /var/lib/mysql
EXPOSE 3306
ENTRYPOINT ["bash", "/usr/local/bin/mariadb-entrypoint.sh"]
