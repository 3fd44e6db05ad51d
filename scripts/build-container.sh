#!/usr/bin/env bash
# The azimds container image (packaging/Containerfile, FROM scratch): the static binary and
# an empty data directory, nothing else.
#
#   scripts/build-container.sh                    # release static build, then image `azimds`
#   scripts/build-container.sh --binary PATH      # an existing static binary instead
#   scripts/build-container.sh --tag NAME         # image name [default: azimds]
#   BUILD='podman build' scripts/build-container.sh   # the build command [default: the first
#                                                 # of docker build (daemon running), podman
#                                                 # build, buildah bud found here]
#
# Then: docker run -p 8080:80 -v azimds-data:/var/lib/azimds azimds (packaging/Containerfile
# says what the port, the volume and the control socket are).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN= TAG=azimds
while (($#)); do
    case $1 in
        --binary) BIN=$2; shift 2 ;;
        --tag) TAG=$2; shift 2 ;;
        *) echo "build-container: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
if [[ -z ${BUILD:-} ]]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then BUILD="docker build"
    elif command -v podman >/dev/null; then BUILD="podman build"
    elif command -v buildah >/dev/null; then BUILD="buildah bud"
    else echo "build-container: no docker daemon, podman or buildah here (set BUILD)" >&2; exit 1
    fi
fi
[[ -n $BIN ]] || BIN=$(bash "$REPO/scripts/build-static.sh")
if readelf -d "$BIN" | grep -q NEEDED; then
    echo "build-container: $BIN is dynamically linked; FROM scratch needs scripts/build-static.sh's" >&2
    exit 1
fi

# The build context: exactly what the Containerfile copies.
CONTEXT=$(mktemp -d)
trap 'rm -rf "$CONTEXT"' EXIT
install -m 0755 "$BIN" "$CONTEXT/azimds"
install -d -m 0700 "$CONTEXT/empty"
# shellcheck disable=SC2086 # BUILD is a command and its options
$BUILD -t "$TAG" -f "$REPO/packaging/Containerfile" "$CONTEXT" >&2
echo "$TAG"
