#!/usr/bin/env bash
# ApplicationStart: start the release BeforeInstall prepared. `hollang serve` migrates the
# database and seeds the catalogue before its workers accept traffic. Idempotent: if this
# release is already running it is left alone; anything else running is drained first.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
load_config

release="$RELEASES_DIR/$RELEASE_ID"

case "$HOLLANG_DEPLOY_MODE" in
  docker)
    [[ -f "$release/image" ]] || die "release $RELEASE_ID was not prepared (BeforeInstall)"
    image="$(<"$release/image")"
    if docker container inspect "$CONTAINER" >/dev/null 2>&1; then
      running_image="$(docker container inspect --format '{{.Config.Image}}' "$CONTAINER")"
      state="$(docker container inspect --format '{{.State.Running}}' "$CONTAINER")"
      if [[ "$running_image" == "$image" && "$state" == true ]]; then
        log "container $CONTAINER already runs $image"
        exit 0
      fi
      stop_container
    fi
    env_file=()
    [[ -f "$HOLLANG_DEPLOY_CONFIG" ]] && env_file=(--env-file "$HOLLANG_DEPLOY_CONFIG")
    # shellcheck disable=SC2086 # HOLLANG_DEPLOY_DOCKER_ARGS is a list of arguments
    docker run --detach --name "$CONTAINER" --restart unless-stopped \
      "${env_file[@]}" --env HOLLANG_HOST=0.0.0.0 --env HOLLANG_PORT="$HOLLANG_PORT" \
      --publish "$HOLLANG_PORT:$HOLLANG_PORT" --stop-timeout "$STOP_TIMEOUT" \
      --volume "${HOLLANG_DEPLOY_VOLUME:-hollang-data}:/var/lib/hollang" \
      ${HOLLANG_DEPLOY_DOCKER_ARGS:-} \
      "$image" >/dev/null
    log "started container $CONTAINER from $image on port $HOLLANG_PORT"
    ;;
  process)
    [[ -f "$release/.installed" ]] || die "release $RELEASE_ID was not installed (BeforeInstall)"
    pid="$(running_pid)"
    if [[ -n "$pid" ]]; then
      if [[ "$(cat "$RUN_DIR/release" 2>/dev/null)" == "$RELEASE_ID" ]]; then
        log "release $RELEASE_ID already running as pid $pid"
        exit 0
      fi
      stop_process
    fi
    ln -sfn "$release" "$HOLLANG_DEPLOY_HOME/current"
    export HOLLANG_HOST="${HOLLANG_HOST:-0.0.0.0}"
    export HOLLANG_DATA_DIR="${HOLLANG_DATA_DIR:-$HOLLANG_DEPLOY_HOME/data}"
    cd "$HOLLANG_DEPLOY_HOME"
    raise_file_limit  # every client connection is a file (docs/operations.md, "Hostile traffic")
    # Its own session (so ApplicationStop can signal the whole group) and no handle on
    # this script's stdout: the CodeDeploy agent waits for that to close.
    setsid "$release/venv/bin/hollang" serve </dev/null >>"$LOG_DIR/hollang.log" 2>&1 &
    echo $! >"$PID_FILE"
    echo "$RELEASE_ID" >"$RUN_DIR/release"
    log "started release $RELEASE_ID as pid $! on port $HOLLANG_PORT, open-file limit" \
      "$(ulimit -Sn) (log: $LOG_DIR/hollang.log)"
    ;;
esac
