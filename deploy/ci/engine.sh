# shellcheck shell=bash
# The Docker engine for docker-check.sh and compose-check.sh (sourced, not run), set up as
# ../shared/docs/docker-here.md says these machines need: Debian's docker.io, debootstrap and
# docker-compose, dockerd without bridge or iptables, and a base image built with debootstrap
# under the tag the Dockerfile names (built only when missing: the image store persists).
#
# Each check keeps its own wording: before calling these it defines
#   say MESSAGE...  its progress line ("docker-check: ...")
#   not_run REASON  its "... CHECK NOT RUN: REASON" line, then exit 1 (0 with
#                   HOLLANG_ALLOW_NO_DOCKER=1): the engine cannot run here, not a failure of ours
# and it calls engine_ready once, and engine_stop from its EXIT trap. Call these directly,
# never in $(...) or a pipe: not_run must exit the check itself, and engine_start must set
# dockerd_pid in it.

# The dockerd that engine_start started, if it did; engine_stop stops only that one, so an
# engine that was already running is left running.
dockerd_pid=""

# engine_tools LOGDIR: apt-get the engine, debootstrap and docker-compose when missing.
engine_tools() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v docker >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  if ((${#missing[@]})); then
    say "installing ${missing[*]} with apt-get"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}"; } >"$1/apt.log" 2>&1; then
      tail -5 "$1/apt.log"
      not_run "could not install ${missing[*]} with apt-get"
    fi
  fi
}

# engine_start LOGDIR: use the engine that answers, else start one without network plumbing.
engine_start() {
  docker info >/dev/null 2>&1 && return
  say "no engine answering; starting dockerd --iptables=false --bridge=none"
  dockerd --iptables=false --bridge=none >"$1/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.5
  done
  if ! docker info >/dev/null 2>&1; then
    tail -5 "$1/dockerd.log"
    kill -0 "$dockerd_pid" 2>/dev/null || dockerd_pid=""
    not_run "dockerd did not start (log above)"
  fi
}

# engine_stop: stop the engine engine_start started (none when one was already running).
engine_stop() {
  [[ -n "$dockerd_pid" ]] || return 0
  say "stopping the engine this check started (pid $dockerd_pid)"
  kill -TERM "$dockerd_pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
}

# apt_mirror SUITE: the archive apt itself fetches SUITE from, as apt parsed its sources
# (sources.list, sources.list.d/*.list and deb822 *.sources alike), so the checks work
# wherever apt does.
apt_mirror() {
  # shellcheck disable=SC2016 # $(...) are apt's format fields, not shell expansions
  apt-get indextargets --format '$(TARGET_OF) $(RELEASE) $(REPO_URI)' 2>/dev/null \
    | awk -v suite="$1" '$1 == "deb" && $2 == suite { print $3; exit }' || true
}

# engine_base_image IMAGE SUITE WORKDIR: when the tag IMAGE is missing, build it from Debian
# SUITE's packages, fetched from HOLLANG_DEBIAN_MIRROR, else from the mirror apt uses here.
engine_base_image() {
  local image="$1" suite="$2" rootfs="$3/rootfs" mirror
  docker image inspect "$image" >/dev/null 2>&1 && return
  say "building base image $image with debootstrap (once; cached in the image store)"
  mirror="${HOLLANG_DEBIAN_MIRROR:-$(apt_mirror "$suite")}"
  [[ -n "$mirror" ]] || not_run "apt's sources name no deb mirror for $suite; set HOLLANG_DEBIAN_MIRROR"
  say "debootstrap $suite from $mirror"
  if ! debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    "$suite" "$rootfs" "$mirror" >"$3/debootstrap.log" 2>&1; then
    tail -5 "$3/debootstrap.log"
    not_run "debootstrap could not build the base image"
  fi
  # Downloads here pass a TLS proxy only the host trusts: give the image the host's bundle.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  tar -C "$rootfs" -c . | docker import --change 'LABEL org.hollang.base=debootstrap' - "$image" >/dev/null
  rm -rf "$rootfs"
}

# engine_ready IMAGE SUITE WORKDIR: the tools, an engine that answers, and the base image IMAGE
# (Debian SUITE), in that order; WORKDIR takes the logs and the debootstrap tree.
engine_ready() {
  engine_tools "$3"
  engine_start "$3"
  engine_base_image "$1" "$2" "$3"
}
