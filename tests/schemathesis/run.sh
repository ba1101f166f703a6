#!/usr/bin/env bash
# Fuzzes the REST API from its own OpenAPI document: starts `wharf serve` in a sandbox (a
# temporary data directory, loopback ports, local buckets only under it) and runs schemathesis
# with every check over every /v1 operation. Fails on any server error, any response that does
# not match the document, and any request the document calls valid that is refused (or invalid
# that is accepted), except the few rules tests/schemathesis/schemathesis.toml lists.
#
# usage: tests/schemathesis/run.sh <path to the wharf binary> [--max-examples N]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wharf="${1:?usage: run.sh <wharf binary> [--max-examples N]}"
shift
max_examples=15
if [[ "${1:-}" == "--max-examples" ]]; then max_examples="$2"; fi

version=4.32.5
if ! python3 -c "import schemathesis, sys; sys.exit(schemathesis.__version__ != '$version')" 2>/dev/null; then
    echo "installing schemathesis $version"
    python3 -m pip install --quiet "schemathesis==$version"
fi

sandbox="$(mktemp -d)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api_port="$(port)"
passive=$((40000 + RANDOM % 20000))
key="wharf_schemathesis_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
WHARF_ADMIN_API_KEY="$key" "$wharf" serve --data-dir "$sandbox/data" \
    --api-addr "127.0.0.1:$api_port" --sftp-addr "127.0.0.1:$(port)" \
    --ftps-addr "127.0.0.1:$(port)" --ftps-implicit-addr "127.0.0.1:$(port)" \
    --ftps-passive-ports "$passive-$((passive + 9))" \
    >"$sandbox/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$sandbox"' EXIT

status=0
# From the sandbox, so that schemathesis's own files (.schemathesis/, .hypothesis/) go with it.
cd "$sandbox"
schemathesis --config-file "$here/schemathesis.toml" run \
    "http://127.0.0.1:$api_port/openapi.json" --wait-for-schema 30 \
    -H "Authorization: Bearer $key" --checks all --max-examples "$max_examples" \
    --exclude-path-regex '^/internal' --seed 20261207 --no-color || status=$?
if ((status != 0)); then
    echo "--- wharf serve log (last 50 lines) ---" >&2
    tail -n 50 "$sandbox/serve.log" >&2
fi
exit "$status"
