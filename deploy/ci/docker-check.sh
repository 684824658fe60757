#!/usr/bin/env bash
# Proof that the image builds and runs: build it, run it against the host's MariaDB (a fresh
# database of its own, dropped afterwards), wait for /health/ready and for Docker's own
# HEALTHCHECK to say healthy, take the test once (POST /test-responses -> 200, as the
# original contract answers) and read the recommendation back, then stop the container
# with SIGTERM and require a clean exit (code 0, no SIGKILL).
#
# It follows ../shared/docs/docker-here.md (those steps are in engine.sh, shared with
# compose-check.sh): Debian's docker.io, dockerd without bridge or iptables, a base image
# built with debootstrap under the tag the Dockerfile names (built only when missing: the
# image store persists between runs), --network=host.
#
# When the engine cannot run here it prints "DOCKER CHECK NOT RUN: <reason>" and fails,
# unless HOLLANG_ALLOW_NO_DOCKER=1, which turns that case (and only that) into exit 0.
# An engine this script started is stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=engine.sh
source deploy/ci/engine.sh

BASE_IMAGE="${HOLLANG_BASE_IMAGE:-python:3.11-slim-bookworm}"
IMAGE="${HOLLANG_CHECK_IMAGE:-hollang:ci}"
# The Debian release of the base image (python:3.11-slim-bookworm's), and the mirror
# debootstrap fetches it from: HOLLANG_DEBIAN_MIRROR, else the one apt uses on this machine.
DEBIAN_SUITE=bookworm
DB_HOST=127.0.0.1
DB_NAME="hollang_docker_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
CONTAINER="hollang-docker-check-$$"
WORK="$(mktemp -d)"
started=$SECONDS
db_created=0
hooks_started=0

say() { echo "docker-check: $*"; }
not_run() {
  echo "DOCKER CHECK NOT RUN: $*"
  if [[ "${HOLLANG_ALLOW_NO_DOCKER:-0}" == 1 ]]; then
    echo "docker-check: HOLLANG_ALLOW_NO_DOCKER=1, so this is not a failure (and not a pass)"
    exit 0
  fi
  exit 1
}
fail() {
  echo "DOCKER CHECK FAILED: $*" >&2
  if docker container inspect "$CONTAINER" >/dev/null 2>&1; then
    echo "--- container log (last 40 lines)" >&2
    docker logs --tail 40 "$CONTAINER" >&2 2>&1 || true
  fi
  exit 1
}

cleanup() {
  docker rm --force --volumes "$CONTAINER" >/dev/null 2>&1 || true
  if ((hooks_started)); then
    docker rm --force --volumes "$CONTAINER-hooks" >/dev/null 2>&1 || true
    docker volume rm "$CONTAINER-data" >/dev/null 2>&1 || true
  fi
  if ((db_created)); then
    mysql --user=root --host="$DB_HOST" -e "DROP DATABASE IF EXISTS \`$DB_NAME\`" || true
  fi
  engine_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

# 1. Tools: the engine, debootstrap and docker-compose (to validate the stack), from Debian.
# 2. The engine: use a running one, else start one without network plumbing.
# 3. The base image, built from Debian's packages when the tag is missing.
engine_ready "$BASE_IMAGE" "$DEBIAN_SUITE" "$WORK"

# 4. The compose stack resolves (with .env made from .env.example, as docs/deployment.md says).
mkdir -p "$WORK/compose/deploy"
cp docker-compose.yml "$WORK/compose/" && cp .env.example "$WORK/compose/.env"
cp -R deploy/compose "$WORK/compose/deploy/"
(cd "$WORK/compose" && docker-compose config --quiet) || fail "docker-compose config rejects docker-compose.yml"
say "docker-compose config: ok"

# 5. Build. From here on a problem is a failure of ours, not a missing engine.
say "building $IMAGE"
build_start=$SECONDS
docker build --network=host --build-arg BASE_IMAGE="$BASE_IMAGE" --tag "$IMAGE" . >"$WORK/build.log" 2>&1 || {
  tail -30 "$WORK/build.log" >&2
  fail "docker build failed"
}
say "built in $((SECONDS - build_start))s"

# 6. Run it against its own database on the host's MariaDB.
mysql --user=root --host="$DB_HOST" -e "CREATE DATABASE \`$DB_NAME\` CHARACTER SET utf8mb4" ||
  fail "cannot create database $DB_NAME on $DB_HOST"
db_created=1
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
docker run --detach --name "$CONTAINER" --network=host \
  --env HOLLANG_PORT="$port" --env HOLLANG_WORKERS=2 \
  --env HOLLANG_DATABASE_URL="mysql+pymysql://root@$DB_HOST:3306/$DB_NAME" \
  "$IMAGE" >/dev/null || fail "docker run failed"

base="http://127.0.0.1:$port"
python3 deploy/wait_ready.py "$base/health/ready" --timeout 120 --interval 0.5 ||
  fail "the container did not become ready"

uid="$(docker exec "$CONTAINER" id -u)"
[[ "$uid" != 0 ]] || fail "the service runs as root"

python3 - "$base" <<'EOF' || fail "POST /test-responses did not answer 200 with a recommendation"
import json, sys, urllib.error, urllib.request

base = sys.argv[1]
details = [{"questionNumber": n, "answerNumber": 1 + n % 2} for n in range(1, 13)]
body = json.dumps({"user": {"name": "도커"}, "testResponseDetails": details}).encode()
request = urllib.request.Request(
    f"{base}/test-responses", body, {"Content-Type": "application/json"}, method="POST"
)
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        status, created = response.status, json.load(response)
except urllib.error.HTTPError as exc:
    sys.exit(f"POST /test-responses: {exc.code} {exc.read()[:500]!r}")
assert status == 200, status  # the original contract answers 200, not 201
recommendation = created["data"]["recommendation"]["id"]
with urllib.request.urlopen(f"{base}/recommendations/{recommendation}", timeout=10) as response:
    shown = json.load(response)["data"]["recommendation"]
assert len(shown["hobbies"]) == 3, shown
print(f"docker-check: POST /test-responses -> 200, recommendation {recommendation}: "
      f"model {shown['modelVersion']}, {[h['name'] for h in shown['hobbies']]}")
EOF

# Docker's own HEALTHCHECK (the prober inside the image) must agree.
health=""
for _ in $(seq 1 60); do
  health="$(docker inspect --format '{{.State.Health.Status}}' "$CONTAINER")"
  [[ "$health" == healthy ]] && break
  sleep 1
done
[[ "$health" == healthy ]] || fail "HEALTHCHECK status is '$health', not healthy"
say "HEALTHCHECK: healthy"

# 7. Graceful stop: SIGTERM (the image's STOPSIGNAL); SIGKILL would show as 137.
docker stop --time 40 "$CONTAINER" >/dev/null
code="$(docker inspect --format '{{.State.ExitCode}}' "$CONTAINER")"
[[ "$code" == 0 ]] || fail "exit code $code after SIGTERM (137 = killed after the grace period)"
# Captured first: `docker logs | grep -q` under pipefail fails whenever grep exits early
# and docker logs dies of SIGPIPE on the rest of a long log.
stop_log="$(docker logs "$CONTAINER" 2>&1)"
grep -q "Application shutdown complete" <<<"$stop_log" ||
  fail "no graceful application shutdown in the log"
say "stopped cleanly on SIGTERM (exit 0)"

# 8. The CodeDeploy hooks in docker mode, in appspec order, on a revision made by
#    make-bundle.sh and pinned to this image. (As root here: the hooks allow it only when
#    told; on an instance they run as `hollang`, a member of the docker group.)
hooks_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$WORK/revision" "$WORK/home"
deploy/ci/make-bundle.sh "$WORK/revision.tar.gz" "$IMAGE" >/dev/null
tar -C "$WORK/revision" -xzf "$WORK/revision.tar.gz"
cat >"$WORK/hollang.env" <<EOF_ENV
HOLLANG_DEPLOY_MODE=docker
HOLLANG_DEPLOY_HOME=$WORK/home
HOLLANG_DEPLOY_CONTAINER=$CONTAINER-hooks
HOLLANG_DEPLOY_VOLUME=$CONTAINER-data
HOLLANG_DEPLOY_DOCKER_ARGS=--network=host
HOLLANG_DEPLOY_ALLOW_ROOT=1
HOLLANG_DEPLOY_READY_TIMEOUT=120
HOLLANG_PORT=$hooks_port
HOLLANG_DATABASE_URL=mysql+pymysql://root@$DB_HOST:3306/$DB_NAME
EOF_ENV
hooks_started=1
for event in ApplicationStop BeforeInstall ApplicationStart ValidateService ApplicationStop; do
  # The script appspec.yml names for the event.
  script="$(sed -n "/^  $event:/,/location:/s/.*location: //p" "$WORK/revision/appspec.yml")"
  [[ -n "$script" ]] || fail "appspec.yml names no script for $event"
  HOLLANG_DEPLOY_CONFIG="$WORK/hollang.env" DEPLOYMENT_ID=d-DOCKERCHECK LIFECYCLE_EVENT="$event" \
    bash "$WORK/revision/$script" || fail "hook $event failed in docker mode"
done
! docker container inspect "$CONTAINER-hooks" >/dev/null 2>&1 ||
  fail "ApplicationStop left the container $CONTAINER-hooks behind"
say "CodeDeploy hooks (docker mode): stop, install, start, validate, stop: ok"

echo "DOCKER CHECK PASSED in $((SECONDS - started))s (image $IMAGE, base $BASE_IMAGE)"
