#!/usr/bin/env bash
# Builds the image localemu runs microseg's EC2 instances from, offline, and tags it
# `localemu-ec2/ami-microseg`, the tag localemu's ami_mapping.py looks up (without
# pulling) for `RunInstances --image-id ami-microseg`.
#
# Why: localemu's default instance image, localemu/ec2-base, is built FROM a registry
# image, and no registry is reachable on the project's machines. Debian's mirror is, so
# this is a debootstrapped Debian bookworm minbase with what an instance of a traffic
# run needs and nothing else: iptables (localemu enforces groups and NACLs with it inside
# the container), iproute2, and socat (the TCP and UDP listener and client). About 90 MB.
#
# Built once per machine and reused: the image carries the SHA-256 of this script as a
# label; when it matches, the script says so and exits at once. microseg runs it by
# itself (the text is compiled into the binary) when `run --traffic` finds no image or
# an outdated one.
#
# Usage: build-instance-image.sh [--force]
#   MICROSEG_DEBIAN_MIRROR   Debian mirror (default http://deb.debian.org/debian)
#   MICROSEG_RECIPE_SHA256   the hash to label the image with (microseg passes the hash
#                            of the text it runs; by hand, this file's own)
#
# Exit codes: 0 built or up to date; 2 bad usage; 3 no Docker engine answers; 4 not
# root (debootstrap needs it); anything else a failed build.
set -euo pipefail
export LC_ALL=C

readonly SUITE=bookworm
readonly IMAGE=localemu-ec2/ami-microseg
readonly PACKAGES=iptables,iproute2,socat

force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    *)
      echo "build-instance-image: unknown argument: $arg (only --force)" >&2
      exit 2
      ;;
  esac
done

log() { printf 'build-instance-image: %s\n' "$*" >&2; }
if [ -n "${MICROSEG_RECIPE_SHA256:-}" ]; then
  recipe_sha="$MICROSEG_RECIPE_SHA256"
else
  recipe_sha="$(sha256sum <"${BASH_SOURCE[0]}" | cut -d' ' -f1)"
fi

if ! command -v docker >/dev/null 2>&1 || ! timeout 60 docker info >/dev/null 2>&1; then
  log "no Docker engine answers (docker info failed at ${DOCKER_HOST:-unix:///var/run/docker.sock})"
  exit 3
fi
label() { docker image inspect --format '{{ index .Config.Labels "microseg.recipe-sha256" }}' "$IMAGE" 2>/dev/null || true; }
if [ "$force" -eq 0 ] && [ "$(label)" = "$recipe_sha" ]; then
  log "$IMAGE is up to date"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  log "building $IMAGE needs root (debootstrap); run this script as root once"
  exit 4
fi

# One build at a time; the second finds the first one's image.
exec 9>/var/tmp/microseg-build-instance-image.lock
flock 9
if [ "$force" -eq 0 ] && [ "$(label)" = "$recipe_sha" ]; then
  log "$IMAGE was built meanwhile"
  exit 0
fi

started=$EPOCHREALTIME
work="$(mktemp -d /var/tmp/microseg-instance-image.XXXXXX)"
rootfs="$work/rootfs"
cleanup() {
  set +e
  # debootstrap mounts /proc and /sys inside while it runs; a killed one may leave them.
  for m in $(awk -v root="$rootfs" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  if awk -v root="$rootfs" 'index($2, root) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    log "$work left in place: still mounted"
  else
    rm -rf --one-file-system "$work"
  fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  }
fi
# Debian's release key, which a non-Debian host (an Ubuntu CI runner) lacks.
if [ ! -r /usr/share/keyrings/debian-archive-keyring.gpg ]; then
  log "installing debian-archive-keyring"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring >/dev/null 2>&1 || {
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-archive-keyring >/dev/null
  }
fi
mirror="${MICROSEG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
keyring=()
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
log "debootstrap $SUITE minbase + $PACKAGES from $mirror"
if ! debootstrap --variant=minbase --include="$PACKAGES" "${keyring[@]}" "$SUITE" "$rootfs" "$mirror" \
  >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  log "debootstrap failed (log above)"
  exit 1
fi
# Nothing an instance runs needs these; they are most of the size.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
find "$rootfs/var/log" -type f -delete
: >"$rootfs/etc/resolv.conf"
echo instance >"$rootfs/etc/hostname"

old_id="$(docker image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
# localemu replaces the command with its own entrypoint script; this CMD only serves a
# plain `docker run` of the image.
tar --numeric-owner -C "$rootfs" -cf - . | docker import \
  --change "LABEL managed-by=microseg microseg.recipe-sha256=$recipe_sha" \
  --change 'CMD ["sh", "-c", "while true; do sleep 3600; done"]' \
  - "$IMAGE" >/dev/null
new_id="$(docker image inspect --format '{{.Id}}' "$IMAGE")"
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  docker image rm "$old_id" >/dev/null 2>&1 || log "previous image $old_id kept (a container uses it)"
fi
size="$(docker image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
log "built $IMAGE ($size) in $(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
