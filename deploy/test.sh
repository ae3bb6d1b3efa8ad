#!/usr/bin/env bash
# Run the whole test suite (unit and integration against real nats-server, runc, conmon, CRIU)
# after making sure the host is set up. Extra arguments go to vitest, e.g. `deploy/test.sh test/unit`.
# vitest's exit status is this script's; the last line is a plain "N passed, N failed, N skipped".
set -euo pipefail
PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$PROJECT/deploy/setup.sh"
cd "$PROJECT"
mkdir -p .cache
report=.cache/vitest-report.json
rm -f "$report"
status=0
# The layer rules (docs/ARCHITECTURE.md) and the types of src and tests, before any test runs.
npm run --silent lint:deps
npm run --silent typecheck
# --no: use the project's own vitest from node_modules, never fetch one.
npx --no vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
if [ -f "$report" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
  ' "$report"
fi
exit "$status"
