# shellcheck shell=bash disable=SC2034  # variables set here are used by the hooks
# Shared by the CodeDeploy hook scripts in deploy/hooks/ (sourced, not run).
#
# Configuration comes from one file on the instance, HOLLANG_DEPLOY_CONFIG (default
# /etc/hollang/hollang.env), in docker's --env-file syntax: KEY=VALUE lines, no quotes,
# `#` comments. The same file is the service's environment (HOLLANG_DATABASE_URL, ...),
# so both modes read it the same way. Deployment settings (all optional):
#
#   HOLLANG_DEPLOY_MODE           docker (production: run the ECR image) | process (a venv
#                                 install of the release, no Docker; what the tests use)
#   HOLLANG_DEPLOY_HOME           state: releases/, run/ (pid, release), log/  [/opt/hollang]
#   HOLLANG_PORT / HOLLANG_WORKERS  port on the instance [8000] / worker processes [2]
#   HOLLANG_DEPLOY_STOP_TIMEOUT   seconds ApplicationStop lets in-flight work finish [60]
#   HOLLANG_DEPLOY_READY_TIMEOUT  seconds ValidateService waits for /health/ready [120]
#   HOLLANG_IMAGE                 docker mode: image to run; default: deploy/image.env of
#                                 the revision (written by the CI workflow)
#   HOLLANG_DEPLOY_CONTAINER      docker mode: container name [hollang]
#   HOLLANG_DEPLOY_VOLUME         docker mode: volume for the data dir [hollang-data]
#   HOLLANG_DEPLOY_DOCKER_ARGS    docker mode: extra `docker run` arguments (log driver, ...)
#   HOLLANG_DEPLOY_PYTHON         process mode: interpreter for the release venv [python3]
#   HOLLANG_DEPLOY_PIP_ARGS       process mode: extra `pip install` arguments
#   HOLLANG_DEPLOY_NOFILE         process mode: open-file limit of the service [65536];
#                                 systemd's default soft limit (1024) is under what one
#                                 worker's HOLLANG_MAX_CONNECTIONS needs
#   HOLLANG_DEPLOY_ALLOW_ROOT     1 lets the hooks run as root (they refuse otherwise)
#
# CodeDeploy sets DEPLOYMENT_ID and LIFECYCLE_EVENT; a release is keyed by DEPLOYMENT_ID.

set -euo pipefail

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The unpacked revision (CodeDeploy's deployment-archive): the parent of deploy/.
REVISION_DIR="$(dirname "$DEPLOY_DIR")"

log() { echo "hollang-deploy[${LIFECYCLE_EVENT:-manual}]: $*"; }
die() { log "FAILED: $*" >&2; exit 1; }

load_config() {
  local config="${HOLLANG_DEPLOY_CONFIG:-/etc/hollang/hollang.env}" line
  if [[ -f "$config" ]]; then
    while IFS= read -r line || [[ -n "$line" ]]; do
      [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
      [[ "$line" == *=* ]] || die "$config: not KEY=VALUE: $line"
      export "${line?}"
    done <"$config"
  fi
  export HOLLANG_DEPLOY_CONFIG="$config"
  export HOLLANG_DEPLOY_MODE="${HOLLANG_DEPLOY_MODE:-docker}"
  export HOLLANG_DEPLOY_HOME="${HOLLANG_DEPLOY_HOME:-/opt/hollang}"
  export HOLLANG_PORT="${HOLLANG_PORT:-8000}"
  export HOLLANG_WORKERS="${HOLLANG_WORKERS:-2}"
  STOP_TIMEOUT="${HOLLANG_DEPLOY_STOP_TIMEOUT:-60}"
  READY_TIMEOUT="${HOLLANG_DEPLOY_READY_TIMEOUT:-120}"
  CONTAINER="${HOLLANG_DEPLOY_CONTAINER:-hollang}"
  NOFILE="${HOLLANG_DEPLOY_NOFILE:-65536}"
  RELEASE_ID="${DEPLOYMENT_ID:-manual}"
  RELEASES_DIR="$HOLLANG_DEPLOY_HOME/releases"
  RUN_DIR="$HOLLANG_DEPLOY_HOME/run"
  LOG_DIR="$HOLLANG_DEPLOY_HOME/log"
  PID_FILE="$RUN_DIR/hollang.pid"
  case "$HOLLANG_DEPLOY_MODE" in
    docker | process) ;;
    *) die "HOLLANG_DEPLOY_MODE must be docker or process, not '$HOLLANG_DEPLOY_MODE'" ;;
  esac
  if [[ "$(id -u)" == 0 && "${HOLLANG_DEPLOY_ALLOW_ROOT:-0}" != 1 ]]; then
    die "running as root; the appspec runs the hooks as the service user (runas)"
  fi
  mkdir -p "$RELEASES_DIR" "$RUN_DIR" "$LOG_DIR"
}

# Raise this shell's open-file limit (inherited by the service) to NOFILE, or to the hard
# limit when that is lower: an unprivileged user may raise its soft limit only that far.
raise_file_limit() {
  local hard wanted="$NOFILE"
  hard="$(ulimit -Hn)"
  if [[ "$hard" != unlimited && "$hard" -lt "$wanted" ]]; then
    log "WARNING: the hard open-file limit is $hard, under HOLLANG_DEPLOY_NOFILE=$wanted;" \
      "raise it (LimitNOFILE= in the CodeDeploy agent's unit, or limits.conf)"
    wanted="$hard"
  fi
  ulimit -Sn "$wanted"
}

# The pid of the running `hollang serve` (process mode), or nothing.
running_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 0
  pid="$(<"$PID_FILE")"
  # A stale pid file can name a recycled pid: only a live hollang process counts.
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -q hollang "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
  fi
}

# Any process still in the service's process group (uvicorn workers included).
group_alive() { kill -0 -- "-$1" 2>/dev/null; }

# Send SIGTERM, wait for in-flight requests to finish and the process group to exit; kill
# whatever is left after STOP_TIMEOUT. uvicorn stops accepting connections at SIGTERM.
stop_process() {
  local pid
  pid="$(running_pid)"
  if [[ -z "$pid" ]]; then
    log "no running service (process mode); nothing to stop"
    rm -f "$PID_FILE"
    return 0
  fi
  log "draining pid $pid: SIGTERM, then up to ${STOP_TIMEOUT}s for in-flight requests"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while group_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if group_alive "$pid"; then
    log "WARNING: still running after ${STOP_TIMEOUT}s; killing process group $pid"
    kill -KILL -- "-$pid" 2>/dev/null || true
  else
    log "stopped cleanly"
  fi
  rm -f "$PID_FILE"
}

stop_container() {
  if ! docker container inspect "$CONTAINER" >/dev/null 2>&1; then
    log "no container $CONTAINER; nothing to stop"
    return 0
  fi
  # `docker stop` sends the image's STOPSIGNAL (SIGTERM) and waits before SIGKILL.
  log "draining container $CONTAINER: SIGTERM, then up to ${STOP_TIMEOUT}s"
  docker stop --time "$STOP_TIMEOUT" "$CONTAINER" >/dev/null
  docker rm --volumes "$CONTAINER" >/dev/null # anonymous ones only; the data volume stays
  log "stopped and removed $CONTAINER"
}

# The image of this revision: HOLLANG_IMAGE, else deploy/image.env written by CI.
revision_image() {
  local image="${HOLLANG_IMAGE:-}"
  if [[ -z "$image" && -f "$DEPLOY_DIR/image.env" ]]; then
    image="$(sed -n 's/^HOLLANG_IMAGE=//p' "$DEPLOY_DIR/image.env")"
  fi
  [[ -n "$image" ]] || die "no image: set HOLLANG_IMAGE or ship deploy/image.env in the revision"
  echo "$image"
}
