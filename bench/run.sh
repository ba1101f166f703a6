#!/usr/bin/env bash
# Runs the benchmark (bench/bench.py): installs the peers and clients it needs, builds Wharf
# in release mode, then measures everything in one run.
#   bench/run.sh           full run; writes docs/benchmarks.{md,json,png}
#   bench/run.sh --smoke   tiny sizes, one run, results in a temporary directory (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
for pair in sftp:openssh-client rclone:rclone hyperfine:hyperfine openssl:openssl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
    echo "installing ${need[*]}"
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v s3s-fs >/dev/null 2>&1; then
    echo "installing s3s-fs 0.15.0"
    cargo install s3s-fs --version 0.15.0 --features binary --locked --ignore-rust-version --quiet
fi
if ! python3 -c "import matplotlib" >/dev/null 2>&1; then
    python3 -m pip install --quiet matplotlib
fi
# The smoke run only keeps the script working, so it uses the debug build the tests made.
if [[ " $* " == *" --smoke "* ]]; then
    cargo build --locked -p wharf
    export WHARF_BENCH_BINARY="$PWD/target/debug/wharf"
else
    cargo build --release --locked -p wharf
fi
exec python3 bench/bench.py "$@"
