#!/usr/bin/env bash
# Start a berth daemon in the foreground: make sure the host is set up (quick when it is), then
# hand over to the daemon (its own entry point, dist/daemon-main.js). Flags are those of
# `berth daemon` (see docs/API.md), e.g.
#   deploy/daemon.sh --data-root /var/lib/berth --http-listen 127.0.0.1:7780
set -euo pipefail
PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$PROJECT/deploy/setup.sh"
exec node "$PROJECT/dist/daemon-main.js" "$@"
