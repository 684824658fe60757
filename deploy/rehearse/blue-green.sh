#!/usr/bin/env bash
# Rehearse a blue/green rollout behind HAProxy (the ALB stand-in) under load, with the real
# appspec hooks in process mode, on MariaDB and moto S3 (deploy/rehearse/blue_green.py says
# what happens, in order). Exit 0 only with zero failed requests, zero 5xx and the audit
# holding; docs/deployment-rehearsal.md has a recorded run.
#   deploy/rehearse/blue-green.sh [--json REPORT] [--clients N] [--drain-delay S] ...
# Needs: HAProxy (installed from Debian's packages here when missing and we are root),
# MariaDB on HOLLANG_TEST_MYSQL_URL's server (default root@127.0.0.1:3306) and the dev venv.
# What it cannot find it names, with "REHEARSAL NOT RUN: <reason>", and fails.
set -euo pipefail
cd "$(dirname "$0")/../.."

not_run() {
  echo "REHEARSAL NOT RUN: $*" >&2
  exit 1
}

if ! command -v haproxy >/dev/null; then
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    not_run "haproxy is not installed (apt-get install haproxy) and we are not root"
  fi
  echo "rehearsal: installing haproxy with apt-get"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends haproxy; } >/dev/null 2>&1 || not_run "apt-get could not install haproxy"
fi

python="${HOLLANG_REHEARSE_PYTHON:-.venv/bin/python}"
[[ -x "$python" ]] || not_run "no $python: run make install-dev first"

exec "$python" deploy/rehearse/blue_green.py "$@"
