#!/usr/bin/env bash
# Builds the demo image busybox:latest ONCE as a real OCI image archive from Debian's
# busybox-static, so every daemon (also one on an empty data root) can import it offline.
# Needs: busybox (busybox-static), umoci, skopeo. Idempotent: an existing archive is kept.
set -euo pipefail

OUT="${1:-/opt/berth/images/busybox-latest.oci.tar}"
REF="busybox:latest"
BUSYBOX="${BUSYBOX:-/bin/busybox}"

if [[ -s "$OUT" ]]; then
  echo "build-busybox-image: $OUT exists, nothing to do"
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
umoci gc --layout "$LAYOUT"

install -d -m 0755 "$(dirname "$OUT")"
# skopeo 1.9 stores the part after the path's first ':' as the archive's
# org.opencontainers.image.ref.name, and accepts "busybox:latest" there.
skopeo copy --quiet "oci:$LAYOUT:latest" "oci-archive:$OUT.tmp:$REF"
mv -f "$OUT.tmp" "$OUT"
echo "build-busybox-image: wrote $OUT ($REF)"
