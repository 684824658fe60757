#!/usr/bin/env bash
# First start on an empty data dir: create the system tables, then (on a socket only, so
# no health check can pass early) set the root password and create MYSQL_DATABASE and
# MYSQL_USER, as the official mysql image does. Every start: run mariadbd in the
# foreground as PID 1's exec, with the arguments compose gives (`command:`).
set -euo pipefail
datadir=/var/lib/mysql
install -d -o mysql -g mysql "$datadir" /run/mysqld

if [[ ! -d "$datadir/mysql" ]]; then
  : "${MYSQL_ROOT_PASSWORD:?set MYSQL_ROOT_PASSWORD}"
  database="${MYSQL_DATABASE:-}"
  echo "mariadb-entrypoint: initialising $datadir"
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db >/dev/null
  socket=/run/mysqld/init.sock
  mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$socket" &
  init_pid=$!
  for _ in $(seq 1 120); do
    mariadb-admin --socket="$socket" ping --silent 2>/dev/null && break
    sleep 0.5
  done
  {
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$MYSQL_ROOT_PASSWORD';"
    echo "CREATE USER 'root'@'%' IDENTIFIED BY '$MYSQL_ROOT_PASSWORD';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [[ -n "$database" ]]; then
      echo "CREATE DATABASE IF NOT EXISTS \`$database\` CHARACTER SET utf8mb4;"
    fi
    if [[ -n "${MYSQL_USER:-}" ]]; then
      echo "CREATE USER '$MYSQL_USER'@'%' IDENTIFIED BY '${MYSQL_PASSWORD:?set MYSQL_PASSWORD}';"
      [[ -n "$database" ]] && echo "GRANT ALL ON \`$database\`.* TO '$MYSQL_USER'@'%';"
    fi
  } | mariadb --socket="$socket" --user=root
  kill -TERM "$init_pid"
  wait "$init_pid" || true
  echo "mariadb-entrypoint: initialised${database:+ with database $database}"
fi

exec mariadbd --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 "$@"
