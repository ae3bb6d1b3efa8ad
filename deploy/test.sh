#!/usr/bin/env bash
# Run the whole test suite (unit and integration against real nats-server, runc, conmon, CRIU)
# after making sure the host is set up. Extra arguments go to vitest, e.g. `deploy/test.sh test/unit`.
# vitest's exit status is this script's.
set -euo pipefail
PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$PROJECT/deploy/setup.sh"
cd "$PROJECT"
# --no: use the project's own vitest from node_modules, never fetch one.
exec npx --no vitest run "$@"
