#!/usr/bin/env bash
# berth host setup: installs everything the daemon and the test suite need on Debian 12, as root.
#
# Idempotent and quick when nothing is missing: each step checks (dpkg-query, version probes,
# stamp files) before it touches anything, and `apt-get update` runs only when something has to be
# installed or downloaded. Re-run it any time; deploy/daemon.sh and deploy/test.sh always do.
#
# Steps:
#   1. a Debian 13 (trixie) apt source, pinned low so nothing upgrades from it by accident
#   2. Debian 12 packages (runc, conmon, iptables, umoci, skopeo, CNI plugins, busybox-static, ...)
#   3. nats-server 2.10 from trixie (Debian 12's 2.9 lacks multi-filter consumers); its packaged
#      service is disabled: the daemon runs its own nats-server
#   4. CRIU 4.1 from trixie unpacked into a private prefix (see deploy/README.md), checked with
#      `criu check`
#   5. node_modules (npm ci) and dist/ (tsc, and the CLI bundle by esbuild), each only when its
#      inputs changed
#   6. the demo image archives busybox:latest, :v2, :broken (deploy/build-busybox-image.sh), once
#   7. /usr/local/bin/berth -> <project>/bin/berth
#
# Environment: BERTH_PREFIX (default /opt/berth).
set -Eeuo pipefail
export DEBIAN_FRONTEND=noninteractive
umask 022

PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BERTH_PREFIX=${BERTH_PREFIX:-/opt/berth}
CRIU_PREFIX=$BERTH_PREFIX/criu
CRIU_ROOT=$CRIU_PREFIX/root
CRIU_WRAPPER=$CRIU_PREFIX/criu
CRIU_STAMP=$CRIU_PREFIX/.berth-stamp
IMAGE_ARCHIVE=$BERTH_PREFIX/images/busybox-latest.oci.tar

TRIXIE_SOURCES=/etc/apt/sources.list.d/berth-trixie.sources
TRIXIE_PREFS=/etc/apt/preferences.d/berth-trixie
TRIXIE_PIN=100

DEBIAN12_PKGS=(runc conmon iptables umoci skopeo containernetworking-plugins busybox-static iproute2
  ca-certificates openssl tar)
# CRIU 4.1 and every shared library it loads (checked after unpacking: a library resolved from
# outside the prefix fails the setup). libc6 brings the loader the wrapper runs criu through.
CRIU_DEBS=(criu libcompel1 libc6 libprotobuf-c1 libnl-3-200 libnet1 libgnutls30t64 libnftables1
  libbsd0 libuuid1 libnettle8t64 libhogweed6t64 libp11-kit0 libunistring5 libidn2-0 libtasn1-6
  libgmp10 libffi8 libmd0 libnftnl11 libmnl0 libjansson4 libxtables12)

T0=$(date +%s%N)
say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] FAILED: %s\n' "$*" >&2; exit 1; }
# shellcheck disable=SC2154  # rc is assigned inside the trap string
trap 'rc=$?; printf "[setup] FAILED: command exited %s (line %s): %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2; exit "$rc"' ERR

need_root() {
  [[ $EUID -eq 0 ]] || die "$1 needs root: run deploy/setup.sh as root"
}

# One setup at a time (daemon.sh and test.sh may start together).
if [[ $EUID -eq 0 ]]; then
  mkdir -p /run/lock
  exec 9>/run/lock/berth-setup.lock
  flock 9
fi

APT_UPDATED=0
TRIXIE_CHANGED=0
apt_update() {
  need_root "apt-get update"
  if [[ $APT_UPDATED -eq 0 ]]; then
    say "apt-get update"
    apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
}

# ---------------------------------------------------------------------------------------------
# 1. trixie apt source, with the same mirror and keyring as the machine's own bookworm entry
#    (first, so that a single apt-get update serves every step below)
bookworm_source() {
  # Prints "URI<TAB>KEYRING" of the first enabled deb entry for the bookworm suite (deb822 files
  # first, then one-line sources.list files). KEYRING may be empty.
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f && $f != "$TRIXIE_SOURCES" ]] || continue
    awk '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && suites ~ /(^| )bookworm( |$)/ && enabled != "no" && uri != "") {
          print uri "\t" key; found = 1; exit
        }
        types = suites = uri = key = ""; enabled = "yes"
      }
      BEGIN { enabled = "yes" }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { next }                              # continuation (an inline key): not a path
      {
        k = tolower($1); sub(/:$/, "", k); v = $0; sub(/^[^:]*:[ \t]*/, "", v)
        if (k == "types") types = v
        else if (k == "suites") suites = v
        else if (k == "uris") { split(v, a, /[ \t]+/); uri = a[1] }
        else if (k == "signed-by") { key = (v ~ /^\//) ? v : "" }
        else if (k == "enabled") enabled = tolower(v)
      }
      END { if (!found) flush() }
    ' "$f" | head -n1 | grep . && return 0
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    awk '
      /^[ \t]*deb[ \t]/ {
        key = ""; i = 2
        if ($2 ~ /^\[/) {
          while (i <= NF) {
            if ($i ~ /^\[?signed-by=/) { key = $i; sub(/^\[?signed-by=/, "", key); sub(/\]$/, "", key) }
            if ($i ~ /\]$/) { i++; break }
            i++
          }
        }
        if ($(i + 1) == "bookworm") { print $i "\t" key; exit }
      }
    ' "$f" | head -n1 | grep . && return 0
  done
  return 1
}

src=$(bookworm_source) || die "no bookworm apt entry found in /etc/apt/sources.list{,.d}: cannot tell which mirror to use for trixie"
mirror=${src%%$'\t'*}
keyring=${src#*$'\t'}
if [[ -z $keyring && -f /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
fi
want_sources="# Written by berth deploy/setup.sh: Debian 13 for nats-server 2.10 and the CRIU 4.1 prefix.
# Pinned to $TRIXIE_PIN in $TRIXIE_PREFS so that nothing else upgrades from it.
Types: deb
URIs: $mirror
Suites: trixie
Components: main
${keyring:+Signed-By: $keyring
}"
want_prefs="# Written by berth deploy/setup.sh: take from trixie only what is asked for by name.
Package: *
Pin: release n=trixie
Pin-Priority: $TRIXIE_PIN
"
if [[ "$(cat "$TRIXIE_SOURCES" 2>/dev/null)" != "${want_sources%$'\n'}" ]]; then
  need_root "adding the trixie apt source"
  say "adding trixie apt source $TRIXIE_SOURCES"
  printf '%s' "$want_sources" >"$TRIXIE_SOURCES"
  TRIXIE_CHANGED=1
fi
if [[ "$(cat "$TRIXIE_PREFS" 2>/dev/null)" != "${want_prefs%$'\n'}" ]]; then
  need_root "pinning the trixie apt source"
  say "pinning trixie at $TRIXIE_PIN in $TRIXIE_PREFS"
  printf '%s' "$want_prefs" >"$TRIXIE_PREFS"
  TRIXIE_CHANGED=1
fi
((TRIXIE_CHANGED)) || say "trixie apt source: present (pinned $TRIXIE_PIN)"
# Before anything is fetched from trixie: lists that predate the source have no trixie entries,
# and stale ones point at files the mirror no longer has. apt_update runs once per setup at most.
apt_update_for_trixie() { apt_update; }

# ---------------------------------------------------------------------------------------------
# 2. Debian 12 packages (the trixie pin keeps them all from Debian 12)
missing=()
installed=$(dpkg-query -W -f='${db:Status-Abbrev}|${Package}\n' "${DEBIAN12_PKGS[@]}" 2>/dev/null || true)
for p in "${DEBIAN12_PKGS[@]}"; do
  grep -qxF "ii |$p" <<<"$installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt_update
  say "installing Debian 12 packages: ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
else
  say "Debian 12 packages: present"
fi

# ---------------------------------------------------------------------------------------------
# 3. nats-server 2.10 from trixie
nats_version() { { nats-server --version 2>/dev/null || true; } | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p' | head -n1; }
nats_ok() {
  local v maj min
  v=$(nats_version)
  [[ -n $v ]] || return 1
  maj=${v%%.*}; min=${v#*.}; min=${min%%.*}
  ((maj > 2 || (maj == 2 && min >= 10)))
}
if nats_ok; then
  say "nats-server $(nats_version): present"
else
  need_root "installing nats-server"
  apt_update_for_trixie nats-server
  # Only nats-server itself comes from trixie; its dependencies must resolve from Debian 12. A
  # plan that would also pull libc6 (or anything else) from trixie is refused.
  plan=$(apt-get install -s --no-install-recommends nats-server/trixie 2>&1) \
    || die "apt-get cannot plan nats-server from trixie: $plan"
  others=$(grep '^Inst ' <<<"$plan" | grep -v '^Inst nats-server ' | grep -E 'Debian:13|trixie' || true)
  [[ -z $others ]] || die "installing nats-server from trixie would also take from trixie: $others"
  say "installing nats-server from trixie"
  # The package's postinst may try to start its service; no need, the daemon starts its own.
  apt-get install -y -qq --no-install-recommends nats-server/trixie >/dev/null \
    || die "apt-get install nats-server/trixie failed"
  nats_ok || die "nats-server --version says '$(nats-server --version 2>&1)', need 2.10 or newer"
  say "nats-server $(nats_version) installed"
fi
# Keep the packaged service off (the daemon starts its own nats-server on its own port).
# Usually no systemd runs here (often not even systemctl): then only the enablement links go.
if [[ $EUID -eq 0 && ( -e /lib/systemd/system/nats-server.service || -e /usr/lib/systemd/system/nats-server.service ) ]]; then
  if [[ -d /run/systemd/system ]] && systemctl is-active --quiet nats-server.service 2>/dev/null; then
    say "stopping the packaged nats-server service"
    systemctl stop nats-server.service || die "systemctl stop nats-server failed"
  fi
  if [[ -n $(find /etc/systemd/system -name nats-server.service -type l -print -quit 2>/dev/null) ]]; then
    say "disabling the packaged nats-server service"
    if command -v systemctl >/dev/null; then
      systemctl disable nats-server.service >/dev/null 2>&1 || die "systemctl disable nats-server failed"
    fi
    find /etc/systemd/system -name nats-server.service -type l -delete
  fi
fi
if [[ $EUID -eq 0 && -x /etc/init.d/nats-server ]] && compgen -G '/etc/rc[2-5].d/S*nats-server' >/dev/null; then
  say "disabling the packaged nats-server init script"
  update-rc.d nats-server disable >/dev/null 2>&1 || die "update-rc.d nats-server disable failed"
fi

# ---------------------------------------------------------------------------------------------
# 4. CRIU 4.1 in a private prefix
#
# The daemon hands the wrapper to runc as a global flag, e.g. `runc --criu /opt/berth/criu/criu
# checkpoint ...` (`runc --help` lists --criu under GLOBAL OPTIONS), or to conmon as
# `--runtime-arg --criu=/opt/berth/criu/criu`.
criu_loader() { find "$1" -name 'ld-linux-x86-64.so.2' -type f 2>/dev/null | sort | head -n1; }
criu_libpath() {
  local root=$1 d out=
  for d in usr/lib/x86_64-linux-gnu lib/x86_64-linux-gnu; do
    [[ -d $root/$d && ! -L $root/$d ]] && out+="${out:+:}$root/$d"
  done
  printf '%s' "$out"
}
criu_binary() {
  local b
  for b in usr/sbin/criu sbin/criu usr/bin/criu; do
    [[ -f $1/$b && -x $1/$b ]] && { printf '%s' "$1/$b"; return 0; }
  done
  return 1
}
criu_version() { { "$CRIU_WRAPPER" --version 2>/dev/null || true; } | sed -n 's/^Version: *//p' | head -n1; }
criu_stamp_want() { printf 'debs: %s\n' "${CRIU_DEBS[*]}"; }

if [[ -x $CRIU_WRAPPER && -f $CRIU_STAMP ]] && grep -qxF "$(criu_stamp_want)" "$CRIU_STAMP" \
  && [[ $(criu_version) == 4.1* ]]; then
  say "CRIU $(criu_version) in $CRIU_PREFIX: present"
else
  need_root "installing CRIU into $CRIU_PREFIX"
  apt_update_for_trixie criu
  mkdir -p "$CRIU_PREFIX"
  work=$(mktemp -d "$CRIU_PREFIX/.install.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/debs" "$work/root"
  # apt-get download drops to the _apt user: let it reach and write there.
  chmod 755 "$work"
  if id _apt >/dev/null 2>&1; then chown _apt "$work/debs"; fi
  say "downloading ${#CRIU_DEBS[@]} packages from trixie for CRIU"
  (cd "$work/debs" && apt-get download -qq "${CRIU_DEBS[@]/%//trixie}") \
    || die "apt-get download of CRIU packages from trixie failed"
  for p in "${CRIU_DEBS[@]}"; do
    debs=("$work/debs/${p}_"*.deb)
    deb=${debs[0]}
    [[ -f $deb ]] || die "apt-get download produced no .deb for $p"
    dpkg -x "$deb" "$work/root" || die "dpkg -x $deb failed"
    printf '%s=%s\n' "$p" "$(dpkg-deb -f "$deb" Version)" >>"$work/versions"
  done
  # Move into place, then check through the final paths (the wrapper embeds them).
  rm -rf "$CRIU_ROOT.old"
  [[ -e $CRIU_ROOT ]] && mv "$CRIU_ROOT" "$CRIU_ROOT.old"
  mv "$work/root" "$CRIU_ROOT"
  rm -rf "$CRIU_ROOT.old"
  loader=$(criu_loader "$CRIU_ROOT"); [[ -n $loader ]] || die "no ld-linux-x86-64.so.2 in $CRIU_ROOT (libc6 from trixie)"
  libpath=$(criu_libpath "$CRIU_ROOT")
  bin=$(criu_binary "$CRIU_ROOT") || die "no criu binary in $CRIU_ROOT"
  # Every library must come from the prefix: the prefix's loader would otherwise silently fall
  # back to Debian 12's copies through /etc/ld.so.cache.
  deps=$("$loader" --library-path "$libpath" --list "$bin" 2>&1) || die "loader cannot list criu's libraries: $deps"
  bad=$(grep '=>' <<<"$deps" | grep -v -F "=> $CRIU_ROOT/" || true)
  [[ -z $bad ]] || die "criu needs libraries that are not in the prefix (add their packages to CRIU_DEBS):
$bad"
  {
    echo '#!/bin/sh'
    echo "# Written by berth deploy/setup.sh. CRIU 4.1 from Debian 13 run through its own loader and"
    echo "# libraries, so the system's Debian 12 libc stays as it is. Use: runc --criu $CRIU_WRAPPER ..."
    printf 'exec %q --argv0 %q --library-path %q %q "$@"\n' "$loader" "$CRIU_WRAPPER" "$libpath" "$bin"
  } >"$work/criu"
  chmod 755 "$work/criu"
  mv "$work/criu" "$CRIU_WRAPPER"
  v=$(criu_version)
  [[ $v == 4.1* ]] || die "$CRIU_WRAPPER --version says '$("$CRIU_WRAPPER" --version 2>&1)', need 4.1"
  { criu_stamp_want; cat "$work/versions"; printf 'libraries:\n%s\n' "$deps"; } >"$CRIU_STAMP"
  rm -rf "$work"
  trap - EXIT
  say "CRIU $v installed in $CRIU_PREFIX"
fi
if ! out=$("$CRIU_WRAPPER" check 2>&1); then
  printf '%s\n' "$out" >&2
  die "$CRIU_WRAPPER check failed: this kernel cannot checkpoint/restore with CRIU (output above)"
fi
say "criu check: $(tail -n1 <<<"$out")"

# ---------------------------------------------------------------------------------------------
# 5. node_modules and dist
cd "$PROJECT"
lock_hash=$( { sha256sum package-lock.json; node --version; } | sha256sum | cut -d' ' -f1)
if [[ -d node_modules && "$(cat node_modules/.berth-lock-hash 2>/dev/null)" == "$lock_hash" ]]; then
  say "node_modules: up to date"
else
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error || die "npm ci failed"
  printf '%s\n' "$lock_hash" >node_modules/.berth-lock-hash
fi

# Rebuild when a source file (src/, or scripts/ with the CLI bundler) is newer than the last
# build, or one was added or removed.
build_key=$( { printf '%s\n' "$lock_hash"; find src scripts -type f | LC_ALL=C sort; } | sha256sum | cut -d' ' -f1)
build_stamp=dist/.berth-build-stamp
if [[ -f $build_stamp && "$(cat "$build_stamp")" == "$build_key" ]] \
  && [[ -f dist/cli/berth.cjs && -f dist/daemon-main.js ]] \
  && [[ -z $(find src scripts tsconfig.json package.json -newer "$build_stamp" -print -quit) ]]; then
  say "dist: up to date"
else
  say "npm run build"
  # Start clean when files were added or removed (tsc leaves outputs of deleted sources behind).
  [[ -f $build_stamp && "$(cat "$build_stamp")" == "$build_key" ]] || rm -rf dist
  rm -f "$build_stamp"
  npm run build --silent || die "npm run build (tsc, esbuild) failed: see the errors above"
  printf '%s\n' "$build_key" >"$build_stamp"
fi

# ---------------------------------------------------------------------------------------------
# 6. demo image archives (busybox:latest, busybox:v2, busybox:broken), built once
IMAGE_DIR=$(dirname "$IMAGE_ARCHIVE")
if [[ -f $IMAGE_ARCHIVE && -f $IMAGE_DIR/busybox-v2.oci.tar && -f $IMAGE_DIR/busybox-broken.oci.tar ]]; then
  say "image archives in $IMAGE_DIR: present"
elif [[ -f $PROJECT/deploy/build-busybox-image.sh ]]; then
  say "building the demo image archives in $IMAGE_DIR"
  bash "$PROJECT/deploy/build-busybox-image.sh" "$IMAGE_DIR" || die "deploy/build-busybox-image.sh failed"
  [[ -f $IMAGE_ARCHIVE ]] || die "deploy/build-busybox-image.sh did not produce $IMAGE_ARCHIVE"
else
  say "image archive: skipped (deploy/build-busybox-image.sh not present)"
fi

# ---------------------------------------------------------------------------------------------
# 7. berth on PATH
if [[ $EUID -eq 0 ]]; then
  if [[ "$(readlink /usr/local/bin/berth 2>/dev/null)" != "$PROJECT/bin/berth" ]]; then
    say "linking /usr/local/bin/berth -> $PROJECT/bin/berth"
    ln -sfn "$PROJECT/bin/berth" /usr/local/bin/berth
  fi
  [[ -e $PROJECT/bin/berth ]] || say "note: $PROJECT/bin/berth does not exist yet"
fi

say "done in $(( ($(date +%s%N) - T0) / 1000000 )) ms"
