#!/usr/bin/env bash
# Proof that the compose stack starts: `docker-compose up` with docker-compose.yml and
# deploy/compose/local-build.override.yml (MariaDB built from Debian's packages instead of
# mysql:8.0, builds on the host network) brings up the API, the database and S3 on this
# engine; the API starts only after the database's health check passed (the engine's
# events say when each happened); a submission survives `docker-compose down` / `up`
# (the named volume mysql-data); `down --volumes` at the end deletes it.
#
# It runs on a copy of the stack (with .env made from .env.example, as the README says),
# under its own project name and a free host port. Like docker-check.sh: Debian's
# docker.io and docker-compose, dockerd without bridge or iptables when no engine answers
# (stopped again at the end), and the debootstrap base image when the tag is missing.
# When the engine cannot run here it prints "COMPOSE CHECK NOT RUN: <reason>" and fails,
# unless HOLLANG_ALLOW_NO_DOCKER=1, which turns that case (and only that) into exit 0.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=engine.sh
source deploy/ci/engine.sh

BASE_IMAGE="${HOLLANG_BASE_IMAGE:-python:3.11-slim-bookworm}"
DEBIAN_SUITE=bookworm # the base image's release; fetched from the mirror apt uses here
PROJECT="hollang-compose-check-$$"
WORK="$(mktemp -d)"
STACK="$WORK/stack"
started=$SECONDS
stack_up=0

say() { echo "compose-check: $*"; }
not_run() {
  echo "COMPOSE CHECK NOT RUN: $*"
  if [[ "${HOLLANG_ALLOW_NO_DOCKER:-0}" == 1 ]]; then
    echo "compose-check: HOLLANG_ALLOW_NO_DOCKER=1, so this is not a failure (and not a pass)"
    exit 0
  fi
  exit 1
}
compose() { (cd "$STACK" && docker-compose -p "$PROJECT" -f docker-compose.yml -f deploy/compose/local-build.override.yml "$@"); }
fail() {
  echo "COMPOSE CHECK FAILED: $*" >&2
  if ((stack_up)); then
    echo "--- compose ps / logs (last 30 lines each)" >&2
    compose ps >&2 || true
    compose logs --no-color --tail 30 >&2 || true
  fi
  exit 1
}

cleanup() {
  if ((stack_up)); then
    compose down --volumes --timeout 40 >/dev/null 2>&1 || true
  fi
  engine_stop
  rm -rf "$WORK"
}
trap cleanup EXIT

# 1. Tools, engine and base image: as docker-check.sh does (deploy/ci/engine.sh).
engine_ready "$BASE_IMAGE" "$DEBIAN_SUITE" "$WORK"

# 2. A copy of the stack with its .env; the API on a free host port.
mkdir -p "$STACK/deploy"
cp -R Dockerfile .dockerignore docker-compose.yml pyproject.toml requirements.txt README.md \
  server model db storage batching cli "$STACK/"
cp -R deploy/compose deploy/wait_ready.py "$STACK/deploy/"
find "$STACK" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
{ cat .env.example; echo "HOLLANG_HTTP_PORT=$port"; } >"$STACK/.env"
base="http://127.0.0.1:$port"

# 3. Build (from here on a problem is a failure of ours, not a missing engine).
say "building the stack's images"
build_start=$SECONDS
compose build >"$WORK/build.log" 2>&1 || {
  tail -30 "$WORK/build.log" >&2
  fail "docker-compose build failed"
}
say "built in $((SECONDS - build_start))s"

# 4. Up. The engine's events record when the database became healthy and when the API
#    container started.
since="$(date +%s)"
stack_up=1
up_start=$SECONDS
compose up --detach >"$WORK/up.log" 2>&1 || {
  cat "$WORK/up.log" >&2
  fail "docker-compose up failed"
}
python3 deploy/wait_ready.py "$base/health/ready" --timeout 180 --interval 0.5 ||
  fail "the API did not become ready"
say "up and ready in $((SECONDS - up_start))s"
events="$(docker events --since "$since" --until "$(date +%s)" --filter "label=com.docker.compose.project=$PROJECT" \
  --format '{{.TimeNano}} {{index .Actor.Attributes "com.docker.compose.service"}} {{.Action}}')"
healthy_at="$(awk '$2 == "mysql" && $3 == "health_status:" && $4 == "healthy" {print $1; exit}' <<<"$events")"
api_start_at="$(awk '$2 == "api" && $3 == "start" {print $1; exit}' <<<"$events")"
db_start_at="$(awk '$2 == "mysql" && $3 == "start" {print $1; exit}' <<<"$events")"
[[ -n "$healthy_at" && -n "$api_start_at" && -n "$db_start_at" ]] ||
  fail "no start/healthy events for mysql and api: $events"
((api_start_at > healthy_at)) || fail "the API started before the database was healthy: $events"
say "database started, healthy $(((healthy_at - db_start_at) / 1000000)) ms later;" \
  "the API started $(((api_start_at - healthy_at) / 1000000)) ms after that"

# 5. A submission, then down / up, and it is still there.
submit() {
  python3 - "$base" "$1" <<'EOF'
import json, sys, urllib.error, urllib.request

base, recommendation = sys.argv[1], sys.argv[2]
if recommendation == "new":
    details = [{"questionNumber": n, "answerNumber": 1 + n % 2} for n in range(1, 13)]
    body = json.dumps({"user": {"name": "컴포즈"}, "testResponseDetails": details}).encode()
    request = urllib.request.Request(
        f"{base}/test-responses", body, {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200, response.status
        recommendation = json.load(response)["data"]["recommendation"]["id"]
try:
    with urllib.request.urlopen(f"{base}/recommendations/{recommendation}", timeout=10) as response:
        shown = json.load(response)["data"]["recommendation"]
except urllib.error.HTTPError as exc:
    sys.exit(f"GET /recommendations/{recommendation}: {exc.code} {exc.read()[:300]!r}")
assert len(shown["hobbies"]) == 3, shown
print(shown["id"])
EOF
}
recommendation="$(submit new)" || fail "POST /test-responses did not store a recommendation"
say "stored recommendation $recommendation"
compose down --timeout 40 >"$WORK/down.log" 2>&1 || fail "docker-compose down failed"
docker volume inspect "${PROJECT//-/}_mysql-data" >/dev/null 2>&1 ||
  docker volume inspect "${PROJECT}_mysql-data" >/dev/null 2>&1 ||
  fail "the named volume mysql-data did not survive down"
compose up --detach >"$WORK/up2.log" 2>&1 || {
  cat "$WORK/up2.log" >&2
  fail "the second docker-compose up failed"
}
python3 deploy/wait_ready.py "$base/health/ready" --timeout 180 --interval 0.5 ||
  fail "the API did not become ready after down/up"
again="$(submit "$recommendation")" || fail "recommendation $recommendation is gone after down/up"
[[ "$again" == "$recommendation" ]] || fail "read back $again, not $recommendation"
say "recommendation $recommendation survived down / up (named volume mysql-data)"

echo "COMPOSE CHECK PASSED in $((SECONDS - started))s (api, MariaDB, moto S3 on $base)"
