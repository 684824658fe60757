#!/usr/bin/env bash
# Build the CodeDeploy revision: appspec.yml at the root, the hook scripts, and what the
# plain-process mode installs (pyproject, the lock, README, packages). With IMAGE, pin the revision to
# that image (deploy/image.env), which the docker mode pulls.
#   deploy/ci/make-bundle.sh OUT.tar.gz [IMAGE]
set -euo pipefail
cd "$(dirname "$0")/../.."

out="$1"
image="${2:-}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage" # the revision root; mktemp made it private

cp -R appspec.yml pyproject.toml requirements.txt README.md server model db storage batching cli "$stage/"
mkdir -p "$stage/deploy"
cp -R deploy/lib.sh deploy/wait_ready.py deploy/hooks "$stage/deploy/"
if [[ -n "$image" ]]; then
  echo "HOLLANG_IMAGE=$image" >"$stage/deploy/image.env"
fi
find "$stage" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf {} +
tar -C "$stage" -czf "$out" .
echo "bundle: $out${image:+ (image $image)}"
