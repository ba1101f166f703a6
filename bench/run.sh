#!/usr/bin/env bash
# Wharf's benchmark (issue 8): installs the peers and clients it needs, builds Wharf in release
# mode, then bench/bench.py starts every server on 127.0.0.1:24000-24099, measures them all in
# one run and stops them again (also on Ctrl-C / SIGTERM). SFTP: OpenSSH sshd and rclone;
# FTPS: ProFTPD (mod_tls); workloads a) to f), see bench/bench.py.
#
#   bench/run.sh                  full run (about 25 minutes); writes docs/benchmarks.{md,png,json,csv}
#   bench/run.sh --smoke          tiny sizes, one run each, results in a new temporary directory
#   bench/run.sh --help           every option (--targets, --workloads, --out, --keep-state)
#
# `just bench [--smoke]` runs this script. Run as root: sshd's chroot, a `bench` system user,
# ProFTPD started as root.
# WHARF_BENCH_BINARY=/path/to/wharf skips the build and measures that binary instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

for arg in "$@"; do
    case "$arg" in -h | --help) exec python3 bench/bench.py --help ;; esac
done
if [ "$(id -u)" != 0 ]; then
    echo "bench: run as root (sshd's chroot and the bench system user)" >&2
    exit 1
fi

# Debian packages: the peers (sshd, rclone, ProFTPD with mod_tls, which Debian ships in
# proftpd-mod-crypto), the clients (sftp, lftp, curl), the timer, openssl for the
# SHA-512-crypt password hashes and the FTPS certificate.
need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
[ -x /usr/sbin/proftpd ] || need+=(proftpd-core)
[ -f /usr/lib/proftpd/mod_tls.so ] || need+=(proftpd-mod-crypto)
for pair in sftp:openssh-client ssh-keygen:openssh-client rclone:rclone hyperfine:hyperfine \
    openssl:openssl lftp:lftp curl:curl; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if ((${#need[@]})); then
    echo "bench: installing ${need[*]}"
    # The packages must not start their daemons (sshd on port 22, ProFTPD on port 21): the
    # benchmark starts its own. Where no policy says so already (Debian's container images
    # have one), a temporary policy-rc.d does for the length of the install.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\n# written by wharf bench/run.sh for one apt-get install\nexit 101\n' \
            >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
    if [ -n "$policy" ]; then
        rm -f "$policy"
        trap - EXIT
    fi
fi

# s3s-fs, the S3-compatible server behind rclone-s3 and wharf-s3: installed exactly as .ci/run
# does (0.15.0 declares rustc 1.96 but builds with 1.95; about 3.5 minutes on 2 cores).
s3s_fs_ok=false
if command -v s3s-fs >/dev/null 2>&1; then
    have=$(s3s-fs --version 2>/dev/null | awk '{print $2}')
    if [ -n "$have" ] && [ "$(printf '%s\n' 0.15.0 "$have" | sort -V | head -n1)" = 0.15.0 ]; then
        s3s_fs_ok=true
    fi
fi
if ! $s3s_fs_ok; then
    echo "bench: installing s3s-fs 0.15.0"
    cargo install s3s-fs --version 0.15.0 --features binary --locked --ignore-rust-version \
        --force --quiet
fi

# matplotlib draws docs/benchmarks.png; paramiko is the SFTP client of bench/sessions.py
# (workloads e and f).
python3 -c "import matplotlib" >/dev/null 2>&1 || python3 -m pip install --quiet matplotlib
python3 -c "import paramiko" >/dev/null 2>&1 || python3 -m pip install --quiet paramiko

if [ -z "${WHARF_BENCH_BINARY:-}" ]; then
    echo "bench: cargo build --release -p wharf"
    build_start=$(date +%s)
    cargo build --release --locked -p wharf
    echo "bench: build took $(($(date +%s) - build_start)) s"
fi

# exec: Ctrl-C and SIGTERM reach bench.py, which stops every server it started.
exec python3 bench/bench.py "$@"
