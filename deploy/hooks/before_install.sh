#!/usr/bin/env bash
# BeforeInstall: make this revision ready to start, so ApplicationStart is quick.
# docker: log in to ECR (when the image is there) and pull the image.
# process: install the release into its own venv under releases/<DEPLOYMENT_ID>.
# Idempotent: a pulled image or an installed release is reused.
set -euo pipefail
# shellcheck source=../lib.sh
source "$(dirname "$0")/../lib.sh"
load_config

release="$RELEASES_DIR/$RELEASE_ID"

prune_releases() {
  # Keep the three newest releases (the running one is always among them).
  local old
  for old in $(find "$RELEASES_DIR" -mindepth 1 -maxdepth 1 -printf '%T@ %f\n' | sort -rn | tail -n +4 | cut -d' ' -f2); do
    [[ "$RELEASES_DIR/$old" -ef "$HOLLANG_DEPLOY_HOME/current" ]] && continue
    log "removing old release $old"
    rm -rf "${RELEASES_DIR:?}/$old"
  done
}

case "$HOLLANG_DEPLOY_MODE" in
  docker)
    image="$(revision_image)"
    registry="${image%%/*}"
    # Tags are immutable (the commit sha), so an image already here is the right one.
    if docker image inspect "$image" >/dev/null 2>&1; then
      log "image $image is already here"
    elif [[ "$registry" =~ ^[0-9]+\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com$ ]]; then
      log "logging in to ECR $registry"
      aws ecr get-login-password --region "${BASH_REMATCH[1]}" |
        docker login --username AWS --password-stdin "$registry" >/dev/null
    fi
    if ! docker image inspect "$image" >/dev/null 2>&1; then
      log "pulling $image"
      docker pull --quiet "$image" >/dev/null
    fi
    mkdir -p "$release"
    echo "$image" >"$release/image"
    ;;
  process)
    if [[ -f "$release/.installed" ]]; then
      log "release $RELEASE_ID is already installed"
    else
      log "installing release $RELEASE_ID into $release/venv"
      rm -rf "$release"
      mkdir -p "$release/src"
      # Build from a copy: pip writes build metadata next to the sources, and the
      # deployment archive belongs to the CodeDeploy agent.
      cp -R "$REVISION_DIR"/{pyproject.toml,requirements.txt,README.md,server,model,db,storage,batching,cli} "$release/src/"
      "${HOLLANG_DEPLOY_PYTHON:-python3}" -m venv "$release/venv"
      # The dependencies exactly as locked (the image installs the same file), then the
      # package alone.
      # shellcheck disable=SC2086 # HOLLANG_DEPLOY_PIP_ARGS is a list of arguments
      "$release/venv/bin/pip" install --quiet --disable-pip-version-check \
        ${HOLLANG_DEPLOY_PIP_ARGS:-} --require-hashes --no-deps -r "$release/src/requirements.txt"
      # shellcheck disable=SC2086
      "$release/venv/bin/pip" install --quiet --disable-pip-version-check \
        ${HOLLANG_DEPLOY_PIP_ARGS:-} --no-deps "$release/src"
      touch "$release/.installed"
    fi
    ;;
esac
prune_releases
log "release $RELEASE_ID prepared"
