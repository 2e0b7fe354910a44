#!/usr/bin/env bash
# Installs microseg for the gate action (action.yml): the released binary that matches the
# action's own ref, verified against the release's SHA256SUMS; or, when no release
# matches, says that the action must build from its own source (action.yml does that,
# cached). Never falls back on a checksum that does not match: that fails the job.
#
# Which release matches:
#   - ref vX.Y.Z (`uses: …/.github/actions/gate@v0.2.0`): the release of that tag;
#   - ref <40-hex commit> (hash-pinned): the release v<version in the action's Cargo.toml>,
#     if its SOURCE_COMMIT asset names that very commit;
#   - anything else (a branch, or an empty ref, which the runner gives a composite action
#     nested in another): none.
#
# Environment: ACTION_REPOSITORY, ACTION_REF, ACTION_PATH (the action's github context),
# RUNNER_TEMP, RUNNER_OS, RUNNER_ARCH, GITHUB_SERVER_URL, GITHUB_OUTPUT (the runner's).
# Writes to $GITHUB_OUTPUT: how=release|source, version, and bin=<path> (release), or
# src=<source root>, lock=<sha256 of Cargo.lock> and tree=<sha256 of the sources> (source).
set -euo pipefail
export LC_ALL=C

note() { printf 'microseg gate: %s\n' "$*"; }
die() {
  printf '::error title=microseg gate::%s\n' "$*"
  exit 1
}
output() { printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"; }
# sha256sum where it exists (Linux), shasum on macOS runners (which build from source).
if command -v sha256sum >/dev/null 2>&1; then sha256=(sha256sum); else sha256=(shasum -a 256); fi

src="$(cd "$ACTION_PATH/../../.." && pwd)"
[ -f "$src/Cargo.toml" ] || die "no Cargo.toml at $src: the action is not inside a microseg checkout"
# The workspace's version ([workspace.package] version = "X.Y.Z").
version="$(awk '/^\[/ { in_pkg = ($0 == "[workspace.package]") } in_pkg && $1 == "version" { gsub(/"/, "", $3); print $3; exit }' "$src/Cargo.toml")"
[ -n "$version" ] || die "no [workspace.package] version in $src/Cargo.toml"
output version "$version"

build_from_source() {
  note "building microseg $version from the action's source ($1)"
  output how source
  output src "$src"
  output lock "$("${sha256[@]}" "$src/Cargo.lock" | cut -d' ' -f1)"
  # Everything the build reads; a cache entry under this key holds the finished binary.
  output tree "$(cd "$src" && find . -type f ! -path './.git/*' ! -path './target/*' -print0 | sort -z |
    xargs -0 "${sha256[@]}" | "${sha256[@]}" | cut -d' ' -f1)"
  exit 0
}

tag=""
commit=""
ACTION_REF="${ACTION_REF:-}"
ACTION_REPOSITORY="${ACTION_REPOSITORY:-}"
if [[ "$ACTION_REF" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]]; then
  tag="$ACTION_REF"
  [ "$tag" = "v$version" ] || build_from_source "ref $tag, but its Cargo.toml says $version"
elif [[ "$ACTION_REF" =~ ^[0-9a-f]{40}$ ]]; then
  tag="v$version"
  commit="$ACTION_REF"
else
  build_from_source "ref '${ACTION_REF}' names no release"
fi
[ -n "$ACTION_REPOSITORY" ] || build_from_source "the runner gave no action repository"
case "$RUNNER_OS/$RUNNER_ARCH" in
  Linux/X64) arch=x86_64 ;;
  Linux/ARM64) arch=aarch64 ;;
  *) build_from_source "releases have no binary for $RUNNER_OS/$RUNNER_ARCH" ;;
esac

base="${GITHUB_SERVER_URL%/}/$ACTION_REPOSITORY/releases/download/$tag"
asset="microseg-$tag-$arch-linux.tar.gz"
dir="$RUNNER_TEMP/microseg-gate-install"
rm -rf "$dir"
mkdir -p "$dir"
fetch() {
  curl --fail --silent --show-error --location --proto-redir '=https' --retry 3 --retry-delay 2 \
    --connect-timeout 20 --max-time 300 --output "$dir/$1" "$base/$1"
}

fetch SHA256SUMS || build_from_source "no release $tag at $base"
if [ -n "$commit" ]; then
  fetch SOURCE_COMMIT || build_from_source "release $tag names no source commit"
  released="$(tr -d '[:space:]' <"$dir/SOURCE_COMMIT")"
  [ "$released" = "$commit" ] || build_from_source "release $tag was built from $released, not $commit"
fi
fetch "$asset" || die "release $tag lists checksums but $asset cannot be downloaded from $base"

expected="$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1 }' "$dir/SHA256SUMS")"
[ -n "$expected" ] || die "SHA256SUMS of release $tag lists no $asset"
actual="$("${sha256[@]}" "$dir/$asset" | cut -d' ' -f1)"
[ "$actual" = "$expected" ] || die "$asset from $base has SHA-256 $actual; the release's SHA256SUMS says $expected. Not installed."
note "$asset: SHA-256 $actual matches the release's SHA256SUMS"

tar -xzf "$dir/$asset" -C "$dir"
bin="$dir/microseg-$tag-$arch-linux/microseg"
[ -x "$bin" ] || die "$asset holds no microseg-$tag-$arch-linux/microseg"
said="$("$bin" --version 2>&1)" || die "the released binary does not run here: $said"
[ "$said" = "microseg $version" ] || die "the binary of release $tag says '$said', not 'microseg $version'"
note "installed $said from release $tag ($arch)"
output how release
output bin "$bin"
