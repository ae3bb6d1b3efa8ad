#!/usr/bin/env bash
# Builds the demo images ONCE as real OCI image archives from Debian's busybox-static, so every
# daemon (also one on an empty data root) can import them offline:
#   busybox-latest.oci.tar  busybox:latest  the seed image (cmd sh)
#   busybox-v2.oci.tar      busybox:v2      the upgrade target: one more layer (/etc/berth-release),
#                                           other env and labels, cmd `sleep 86400`, VOLUME /cache
#   busybox-broken.oci.tar  busybox:broken  an entrypoint that does not exist (a failing upgrade)
# Needs: busybox (busybox-static), umoci, skopeo. Idempotent: existing archives are kept.
set -euo pipefail

DIR="${1:-/opt/berth/images}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"

if [[ -s "$DIR/busybox-latest.oci.tar" && -s "$DIR/busybox-v2.oci.tar" && -s "$DIR/busybox-broken.oci.tar" ]]; then
  echo "build-busybox-image: the archives in $DIR exist, nothing to do"
  exit 0
fi

for tool in umoci skopeo; do
  command -v "$tool" >/dev/null || { echo "build-busybox-image: $tool is missing" >&2; exit 1; }
done
[[ -x "$BUSYBOX" ]] || { echo "build-busybox-image: $BUSYBOX is missing (apt-get install busybox-static)" >&2; exit 1; }
# A dynamically linked busybox would need the host's libc inside the image.
if file -L "$BUSYBOX" 2>/dev/null | grep -q 'dynamically linked'; then
  echo "build-busybox-image: $BUSYBOX is dynamically linked; install busybox-static" >&2
  exit 1
fi

WORK="$(mktemp -d /tmp/berth-busybox.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
LAYOUT="$WORK/layout"
BUNDLE="$WORK/bundle"

umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:latest"
umoci unpack --image "$LAYOUT:latest" "$BUNDLE"

ROOT="$BUNDLE/rootfs"
install -d -m 0755 "$ROOT"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,run,var,home}
install -d -m 0700 "$ROOT/root"
install -d -m 1777 "$ROOT/tmp" "$ROOT/var/tmp"
install -m 0755 "$BUSYBOX" "$ROOT/bin/busybox"
# One hardlink per applet, all in /bin: the image's PATH covers it and a hardlink needs no
# resolution at exec time. `busybox --list` prints bare applet names.
for applet in $("$BUSYBOX" --list); do
  [[ "$applet" == busybox || "$applet" == */* ]] && continue
  ln -f "$ROOT/bin/busybox" "$ROOT/bin/$applet"
done

cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
cat >"$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
echo 'hosts: files dns' >"$ROOT/etc/nsswitch.conf"
: >"$ROOT/etc/resolv.conf"
chmod 0644 "$ROOT"/etc/{passwd,group,hosts,nsswitch.conf,resolv.conf}

umoci repack --image "$LAYOUT:latest" "$BUNDLE"
umoci config --image "$LAYOUT:latest" \
  --config.cmd sh \
  --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  --config.workingdir / \
  --author berth

# v2: the same rootfs plus one layer, and a config that differs in every way an upgrade merges.
umoci unpack --image "$LAYOUT:latest" "$WORK/v2"
echo v2 >"$WORK/v2/rootfs/etc/berth-release"
chmod 0644 "$WORK/v2/rootfs/etc/berth-release"
umoci repack --image "$LAYOUT:v2" "$WORK/v2"
umoci config --image "$LAYOUT:v2" \
  --config.cmd sleep --config.cmd 86400 \
  --config.env RELEASE=v2 --config.env GREETING=hello \
  --config.label org.berth.release=v2 --config.label org.berth.flavour=demo \
  --config.volume /cache \
  --author berth
# broken: its entrypoint is missing, so every start fails (runc: no such file).
umoci config --image "$LAYOUT:latest" --tag broken \
  --config.entrypoint /usr/local/bin/no-such-server \
  --config.label org.berth.release=broken \
  --author berth
umoci gc --layout "$LAYOUT"

install -d -m 0755 "$DIR"
# skopeo 1.9 stores the part after the path's first ':' as the archive's
# org.opencontainers.image.ref.name, and accepts "busybox:latest" there.
for tag in latest v2 broken; do
  out="$DIR/busybox-$tag.oci.tar"
  [[ -s "$out" ]] && continue
  skopeo copy --quiet "oci:$LAYOUT:$tag" "oci-archive:$out.tmp:busybox:$tag"
  mv -f "$out.tmp" "$out"
  echo "build-busybox-image: wrote $out (busybox:$tag)"
done
