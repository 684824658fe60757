#!/usr/bin/env bash
# ValidateService: the deployment succeeds only if /health/ready answers "ready" (database,
# model and catalogue all up) within HOLLANG_DEPLOY_READY_TIMEOUT seconds; else it fails
# and CodeDeploy stops the rollout (and rolls back where the group is set to).
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
load_config

url="http://127.0.0.1:$HOLLANG_PORT/health/ready"
log "waiting up to ${READY_TIMEOUT}s for $url"
if python3 "$DEPLOY_DIR/wait_ready.py" "$url" --timeout "$READY_TIMEOUT" --interval 0.5; then
  exit 0
fi
case "$HOLLANG_DEPLOY_MODE" in
  docker) docker logs --tail 30 "$CONTAINER" 2>&1 | sed 's/^/  /' >&2 || true ;;
  process) tail -n 30 "$LOG_DIR/hollang.log" 2>/dev/null | sed 's/^/  /' >&2 || true ;;
esac
die "the service is not ready"
