#!/usr/bin/env bash
# Builds the gate image, `microseg/gate:<version>`: the offline LocalStack image that
# build-image.sh makes, plus the microseg binary, for teams without Rust. They run it,
# deploy their implementation with their own tools against its endpoint, and run
# `microseg validate --target endpoint=http://127.0.0.1:4566` inside it (docs/GATE.md,
# "The gate image").
#
# One layer on top of the LocalStack image: a two-line Dockerfile, FROM it and COPY the
# (stripped) binary; no registry is involved. Nothing else is set, because on the
# fuse-overlayfs storage driver the legacy builder commits every instruction by diffing
# the whole root filesystem (half a minute to a minute each on this project's machine),
# and `docker commit` does the same. The builder's cache is the up-to-date check: the
# same binary on the same LocalStack image builds in about 2 s. build-image.sh calls
# this script after the LocalStack image; it also runs alone (no root needed).
#
# Usage: localstack/build-gate-image.sh [--force]
#   --force                     rebuild without the builder's cache
#   MICROSEG_GATE_BINARY        the microseg binary to put in (default: built here with
#                               `cargo build --locked --bin microseg`, in $CARGO_TARGET_DIR or target/)
#   MICROSEG_GATE_IMAGE         tag to build (default microseg/gate:<the workspace's version>)
#   MICROSEG_LOCALSTACK_IMAGE   the image to build on (default microseg/localstack:4.14.0)
#
# Exit codes: 0 built or up to date; 2 bad usage; 3 no Docker engine answers; 4 the
# LocalStack image is missing (build-image.sh builds it); anything else a failed build.
set -euo pipefail
export LC_ALL=C

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
script="$here/$(basename "${BASH_SOURCE[0]}")"
version="$(awk '/^\[/ { in_pkg = ($0 == "[workspace.package]") } in_pkg && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' "$root/Cargo.toml")"
base="${MICROSEG_LOCALSTACK_IMAGE:-microseg/localstack:$(cat "$here/VERSION")}"
image="${MICROSEG_GATE_IMAGE:-microseg/gate:$version}"

log() { printf 'build-gate-image: %s\n' "$*"; }
die() {
  printf 'build-gate-image: error: %s\n' "$*" >&2
  exit 1
}
usage() { sed -n 's/^# \{0,1\}//; 16,22p' "$script"; }

force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      printf 'build-gate-image: unknown argument: %s\n' "$arg" >&2
      usage >&2
      exit 2
      ;;
  esac
done

if ! command -v docker >/dev/null 2>&1 || ! timeout 60 docker info >/dev/null 2>&1; then
  echo "build-gate-image: no Docker engine answers; the gate image cannot be built" >&2
  exit 3
fi
base_id="$(docker image inspect --format '{{.Id}}' "$base" 2>/dev/null || true)"
if [ -z "$base_id" ]; then
  echo "build-gate-image: the LocalStack image $base is missing; localstack/build-image.sh builds it" >&2
  exit 4
fi

# --- The binary ------------------------------------------------------------------------
binary="${MICROSEG_GATE_BINARY:-}"
if [ -z "$binary" ]; then
  command -v cargo >/dev/null 2>&1 ||
    die "cargo is not on PATH: put it there, or set MICROSEG_GATE_BINARY to a microseg binary (a release's, say)"
  log "cargo build --locked --bin microseg (in ${CARGO_TARGET_DIR:-$root/target})"
  (cd "$root" && cargo build --quiet --locked --bin microseg)
  binary="${CARGO_TARGET_DIR:-$root/target}/debug/microseg"
fi
[ -x "$binary" ] || die "$binary is not an executable microseg binary"

work="$(mktemp -d "${TMPDIR:-/tmp}/microseg-gate-image.XXXXXX")"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# Symbols are no use in the image; stripping a copy keeps the layer small.
cp "$binary" "$work/microseg"
if command -v strip >/dev/null 2>&1; then strip "$work/microseg" 2>/dev/null || cp "$binary" "$work/microseg"; fi
chmod 0755 "$work/microseg"

# --- One layer: the binary --------------------------------------------------------------
started=$EPOCHREALTIME
old_id="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
printf 'FROM %s\nCOPY microseg /usr/local/bin/microseg\n' "$base" >"$work/Dockerfile"
cache=()
[ "$force" -eq 1 ] && cache=(--no-cache)
# The legacy builder (where buildx is not installed) says it is deprecated; it builds.
docker build --quiet "${cache[@]}" --tag "$image" "$work" 2> >(grep -v -e DEPRECATED -e 'legacy builder' -e buildx -e '^ *$' >&2) >/dev/null
new_id="$(docker image inspect --format '{{.Id}}' "$image")"
if [ "$new_id" = "$old_id" ]; then
  log "$image is up to date ($("$work/microseg" --version 2>/dev/null || echo microseg) on $base)"
  exit 0
fi

# The binary must run on the image's libc (it was linked on this host).
said="$(docker run --rm --entrypoint /usr/local/bin/microseg "$image" --version 2>&1)" || {
  docker image rm "$image" >/dev/null 2>&1 || true
  die "the binary does not run in $image (built on a newer glibc than the image's?): $said"
}
[ "$said" = "microseg $version" ] || log "note: the binary says '$said' (the workspace is $version)"
if [ -n "$old_id" ]; then
  docker image rm "$old_id" >/dev/null 2>&1 || log "previous image $old_id kept (a container uses it)"
fi
layer="$(du -m "$work/microseg" | cut -f1)"
log "built $image ($said, a ${layer} MB layer on $base) in $(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
