#!/usr/bin/env bash
# Stop everything (scripts/down.sh) and delete the local PostgreSQL and JetStream data.
set -euo pipefail
here="$(dirname "${BASH_SOURCE[0]}")"
"$here/down.sh"
"$here/infra.sh" wipe
