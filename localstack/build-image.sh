#!/usr/bin/env bash
# Builds the LocalStack 4.14.0 image offline, as `microseg/localstack:4.14.0`.
#
# Why: no container registry is reachable on the project's machines, so
# `localstack/localstack:4.14.0` cannot be pulled. Debian's mirror and PyPI are
# reachable, so the image is made from those: a debootstrapped Debian trixie (its
# python3 is 3.13; bookworm's 3.11 is too old for LocalStack's PEP 695 stores) plus a
# venv built from the same pinned requirements.txt as the host target, then
# `docker import`ed with the entrypoint, environment and labels a Dockerfile would give.
#
# Built once per machine and reused: the image carries the SHA-256 of requirements.txt
# (and of this script) as labels; when both match, the script says so and exits at once.
# Then the gate image goes on top of it (build-gate-image.sh: one layer with the microseg
# binary, rebuilt only when the binary changed).
#
# Usage: localstack/build-image.sh [--force] [--no-gate]
#   --force                     rebuild even when the image is up to date
#   --no-gate                   do not build the gate image on top
#   MICROSEG_LOCALSTACK_IMAGE   tag to build (default microseg/localstack:4.14.0)
#   MICROSEG_DEBIAN_MIRROR      Debian mirror (default: the one apt uses, else deb.debian.org)
#   MICROSEG_GATE_IMAGE, MICROSEG_GATE_BINARY: see build-gate-image.sh
#
# Exit codes: 0 built or up to date; 2 bad usage; 3 no Docker engine answers (callers
# skip the container target); anything else a failed build.
set -euo pipefail
# Stable tool output and a '.' decimal point for the timings below.
export LC_ALL=C

readonly LOCALSTACK_VERSION=4.14.0
readonly SUITE=trixie
readonly VENV=/opt/localstack/venv

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$here/$(basename "${BASH_SOURCE[0]}")"
requirements="$here/requirements.txt"
image="${MICROSEG_LOCALSTACK_IMAGE:-microseg/localstack:$LOCALSTACK_VERSION}"

log() { printf 'build-image: %s\n' "$*"; }
die() {
  printf 'build-image: error: %s\n' "$*" >&2
  exit 1
}
usage() { sed -n 's/^# \{0,1\}//; 16,24p' "$script"; }

force=0
gate=1
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --no-gate) gate=0 ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      printf 'build-image: unknown argument: %s\n' "$arg" >&2
      usage >&2
      exit 2
      ;;
  esac
done

[ -r "$requirements" ] || die "cannot read $requirements"

# The gate image on top, once this image is there (or already was).
finish() {
  if [ "$gate" -eq 1 ]; then
    MICROSEG_LOCALSTACK_IMAGE="$image" bash "$here/build-gate-image.sh"
  fi
  exit 0
}

# --- Is there a Docker engine? -----------------------------------------------------
# Exit 3, not 1: callers read "no Docker" as "skip the container target", not as a
# broken build. `timeout` because a wedged daemon makes
# `docker info` hang rather than fail.
if ! command -v docker >/dev/null 2>&1; then
  echo "build-image: no Docker engine: the docker CLI is not installed; the container target is unavailable" >&2
  exit 3
fi
if ! timeout 60 docker info >/dev/null 2>&1; then
  echo "build-image: no Docker engine answers (\`docker info\` failed at ${DOCKER_HOST:-unix:///var/run/docker.sock}); the container target is unavailable" >&2
  exit 3
fi

# --- Up to date? ---------------------------------------------------------------------
# The requirements' hash decides what is inside the venv; the script's own hash decides
# the rest (suite, ENV, entrypoint), so editing either one rebuilds.
req_sha="$(sha256sum <"$requirements" | cut -d' ' -f1)"
recipe_sha="$(sha256sum <"$script" | cut -d' ' -f1)"
wanted="$req_sha $recipe_sha"
image_labels() {
  docker image inspect --format \
    '{{ index .Config.Labels "microseg.requirements-sha256" }} {{ index .Config.Labels "microseg.recipe-sha256" }}' \
    "$image" 2>/dev/null || true
}
if [ "$force" -eq 0 ] && [ "$(image_labels)" = "$wanted" ]; then
  log "$image is up to date (requirements $req_sha); --force rebuilds"
  finish
fi

[ "$(id -u)" -eq 0 ] || die "building needs root (debootstrap, chroot, mount); run it as root or with sudo"

# Two builds at once (CI and a developer) would only waste the machine's two cores: the
# second one waits here and then finds the image the first one built.
exec 9>/var/tmp/microseg-build-image.lock
flock 9
if [ "$force" -eq 0 ] && [ "$(image_labels)" = "$wanted" ]; then
  log "$image was built meanwhile and is up to date"
  finish
fi

# --- Timings ---------------------------------------------------------------------------
build_started=$EPOCHREALTIME
phase_started=$EPOCHREALTIME
phase_name=""
timings=""
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
phase() {
  phase_name="$1"
  phase_started=$EPOCHREALTIME
  log "[$(seconds_since "$build_started") s] $phase_name: $2"
}
phase_done() {
  local took
  took="$(seconds_since "$phase_started")"
  log "$phase_name took $took s"
  timings="${timings:+$timings, }$phase_name $took s"
}

# --- Temp dir, mounts and their cleanup ----------------------------------------------
# On the disk, not a tmpfs: the rootfs is about 600 MB.
work="$(mktemp -d /var/tmp/microseg-image.XXXXXX)"
rootfs="$work/rootfs"
mounts_below() { awk -v root="$rootfs" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/mounts; }
unmount_all() {
  local m
  # Deepest first. debootstrap itself may leave /proc or /sys mounted if it was killed.
  for m in $(mounts_below | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" || true
  done
}
cleanup() {
  set +e
  unmount_all
  if [ -n "$(mounts_below)" ]; then
    # Never rm -rf across a mount: a bind-mounted /dev would take the host's with it.
    echo "build-image: $work left in place: still mounted: $(mounts_below | tr '\n' ' ')" >&2
  else
    rm -rf --one-file-system "$work"
  fi
}
trap cleanup EXIT
# Make a signal end the script through `exit`, so the EXIT trap above cleans up.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. debootstrap -----------------------------------------------------------------
if ! command -v debootstrap >/dev/null 2>&1; then
  phase "apt" "installing debootstrap"
  # A fresh machine has no package lists yet: update once, then install.
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  phase_done
fi

# The Debian mirror apt already uses (it serves trixie too): the `deb` source whose
# suite is this host's own release, from deb822 *.sources or one-line *.list files.
# Only on a Debian host; anything else (Ubuntu, a cdrom: or mirror+file: URI) falls back
# to deb.debian.org.
debian_mirror() {
  local id codename found=""
  local -a sources lists
  os_field() { awk -F= -v k="$1" '$1 == k { gsub(/"/, "", $2); print $2 }' /etc/os-release 2>/dev/null || true; }
  id="$(os_field ID)"
  codename="$(os_field VERSION_CODENAME)"
  if [ "$id" = debian ] && [ -n "$codename" ]; then
    shopt -s nullglob
    sources=(/etc/apt/sources.list.d/*.sources)
    lists=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
    shopt -u nullglob
    if [ "${#sources[@]}" -gt 0 ]; then
      found="$(awk -v want="$codename" '
        function flush() {
          if (found == "" && enabled != "no" && index(" " types " ", " deb ") && index(" " suites " ", " " want " ")) {
            n = split(uris, u, " ")
            for (i = 1; i <= n; i++) if (u[i] ~ /^https?:\/\//) { found = u[i]; break }
          }
          types = uris = suites = ""; enabled = "yes"
        }
        BEGIN { enabled = "yes" }
        FNR == 1 || /^[[:space:]]*$/ { flush() }
        /^[[:space:]]*#/ { next }
        { key = tolower($1); $1 = "" }
        key == "types:" { types = $0 }
        key == "uris:" { uris = $0 }
        key == "suites:" { suites = $0 }
        key == "enabled:" { enabled = tolower($2) }
        END { flush(); print found }' "${sources[@]}")"
    fi
    if [ -z "$found" ]; then
      found="$(awk -v want="$codename" '
        $1 == "deb" {
          i = 2
          if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }   # skip [options]
          if (found == "" && $(i + 1) == want && $i ~ /^https?:\/\//) found = $i
        }
        END { print found }' "${lists[@]}" 2>/dev/null || true)"
    fi
  fi
  echo "${found:-http://deb.debian.org/debian}"
}
mirror="${MICROSEG_DEBIAN_MIRROR:-$(debian_mirror)}"

# An older debootstrap may not know trixie by name; its sid script builds any release.
bootstrap_script=()
[ -e "/usr/share/debootstrap/scripts/$SUITE" ] || bootstrap_script=(/usr/share/debootstrap/scripts/sid)
keyring=()
[ -r /usr/share/keyrings/debian-archive-keyring.gpg ] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)

phase "debootstrap" "Debian $SUITE (minbase + python3, python3-venv, ca-certificates) from $mirror"
if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "${keyring[@]}" \
  "$SUITE" "$rootfs" "$mirror" "${bootstrap_script[@]}" >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 30 "$rootfs/debootstrap/debootstrap.log" >&2
  die "debootstrap of $SUITE from $mirror failed (log above)"
fi
phase_done

# --- 2. The venv ----------------------------------------------------------------------
phase "pip install" "venv at $VENV with the pinned requirements"
# pip in the chroot needs DNS, /dev/null and /dev/urandom, and /proc (python, pip's
# platform checks); the trap unmounts them whatever happens.
cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc"
mount --bind /dev "$rootfs/dev"
cp "$requirements" "$rootfs/tmp/requirements.txt"
# pip must trust what the host trusts (a site CA, a TLS-inspecting proxy). The host's
# bundle is lent to pip through SSL_CERT_FILE/PIP_CERT for the install only; the image
# keeps trixie's own trust store.
host_ca="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
chroot_env=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
  PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
  PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-120}")
if [ -f "$host_ca" ]; then
  cp "$host_ca" "$rootfs/tmp/host-ca.crt"
  chroot_env+=(SSL_CERT_FILE=/tmp/host-ca.crt PIP_CERT=/tmp/host-ca.crt REQUESTS_CA_BUNDLE=/tmp/host-ca.crt)
fi
# The host's pip settings (an index mirror, proxies) apply inside too; host paths do not,
# so PIP_FIND_LINKS and PIP_CONFIG_FILE stay out. /etc/pip.conf is lent and removed.
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST PIP_RETRIES \
  http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
  if [ -n "${!var:-}" ]; then chroot_env+=("$var=${!var}"); fi
done
# Runs inside the chroot; the single quotes are deliberate (nothing expands on the host).
# shellcheck disable=SC2016
venv_script='
  python3 -c "import sys; sys.exit(0 if sys.version_info >= (3, 12) else \"python3 is older than 3.12\")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --no-deps -r /tmp/requirements.txt
  "$VENV/bin/pip" check
  # Fails the build here rather than at the first container start.
  "$VENV/bin/python" -c "import localstack.runtime.main"
'
if ! chroot "$rootfs" "${chroot_env[@]}" VENV="$VENV" /bin/sh -eu -c "$venv_script" >"$work/pip.log" 2>&1; then
  tail -n 40 "$work/pip.log" >&2
  die "building the venv failed (log above)"
fi
unmount_all
phase_done

# --- 3. Trim and prepare -------------------------------------------------------------
phase "trim" "caches, package lists, docs; state directories"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/root/.cache "$rootfs"/tmp/* "$rootfs"/etc/pip.conf
find "$rootfs/var/log" -type f -delete
# The directories LocalStack uses in a container (localstack.config.Directories):
# /var/lib/localstack for state, caches and logs, sticky and world-writable like /tmp so
# that `docker run --user` works too (LocalStack makes the subdirectories itself);
# /usr/lib/localstack and /etc/localstack, which only root could create at run time.
# Not /tmp/localstack: LocalStack deletes and remakes it at every start, which a
# non-root user cannot do to a directory root made here.
mkdir -p "$rootfs/var/lib/localstack" "$rootfs/usr/lib/localstack" \
  "$rootfs/etc/localstack/conf.d" "$rootfs/etc/localstack/init"/{boot,start,ready,shutdown}.d
chmod 1777 "$rootfs/var/lib/localstack" "$rootfs/tmp"
# Nothing of the build host in the image; Docker mounts its own over these at run time.
: >"$rootfs/etc/resolv.conf"
echo localstack >"$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
phase_done

# --- 4. docker import ------------------------------------------------------------------
phase "import" "docker import as $image"
old_id="$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
# ENV values are defaults: `docker run -e` overrides them (the harness sets SERVICES and
# EAGER_SERVICE_LOADING itself). EAGER_SERVICE_LOADING moves the ~1.7 s first-call cost
# of each service into start-up, before "Ready.". DISABLE_EVENTS and
# SKIP_SSL_CERT_DOWNLOAD stop LocalStack reaching for the internet, which is not there.
# PYTHONUNBUFFERED so that "Ready." reaches `docker logs` the moment it is printed.
# XDG_CACHE_HOME: plux (LocalStack's plugin loader) writes an entry-point index to
# $XDG_CACHE_HOME or ~/.cache, and under `--user` ~ is the unwritable /.
changes=(
  --change "ENV PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  --change 'ENV LANG=C.UTF-8'
  --change 'ENV PYTHONUNBUFFERED=1'
  --change 'ENV XDG_CACHE_HOME=/var/lib/localstack/cache'
  --change 'ENV GATEWAY_LISTEN=0.0.0.0:4566'
  --change 'ENV SERVICES=ec2,iam,logs,cloudwatch,sts'
  --change 'ENV EAGER_SERVICE_LOADING=1'
  --change 'ENV DISABLE_EVENTS=1'
  --change 'ENV SKIP_SSL_CERT_DOWNLOAD=1'
  --change 'EXPOSE 4566/tcp'
  --change 'WORKDIR /opt/localstack'
  --change "LABEL microseg.requirements-sha256=$req_sha microseg.recipe-sha256=$recipe_sha org.opencontainers.image.version=$LOCALSTACK_VERSION managed-by=microseg"
  --change "ENTRYPOINT [\"$VENV/bin/python\", \"-m\", \"localstack.runtime.main\"]"
)
tar --numeric-owner -C "$rootfs" -cf - . | docker import "${changes[@]}" - "$image" >/dev/null
new_id="$(docker image inspect --format '{{.Id}}' "$image")"
# The tag moved; drop the image it left behind unless a container still uses it.
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  docker image rm "$old_id" >/dev/null 2>&1 || log "previous image $old_id kept (a container uses it)"
fi
phase_done

size="$(docker image inspect --format '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
log "built $image ($size) in $(seconds_since "$build_started") s: $timings"
finish
