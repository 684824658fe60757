#!/usr/bin/env bash
# ApplicationStop: drain and stop the running service. SIGTERM makes uvicorn close its
# listening socket (no new traffic), finish the requests in flight and exit; whatever is
# left after HOLLANG_DEPLOY_STOP_TIMEOUT is killed. Idempotent: nothing running is success.
# CodeDeploy runs this hook from the PREVIOUS revision, so it relies only on the state in
# HOLLANG_DEPLOY_HOME (pid file / container name), never on the new revision.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
load_config

case "$HOLLANG_DEPLOY_MODE" in
  docker) stop_container ;;
  process) stop_process ;;
esac
