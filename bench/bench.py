#!/usr/bin/env python3
"""Wharf's benchmark: Wharf and its peers side by side, in one run, with the same clients.

Started by `bench/run.sh` (`just bench`), which installs the peers and builds Wharf; run as
root (sshd chroots, a `bench` system user). Every server listens on 127.0.0.1, ports
24000-24099:

  openssh-local     OpenSSH sshd, `internal-sftp` in a root-owned chroot under /srv, user `bench`
  rclone-local      `rclone serve sftp` on a local directory
  wharf-local       `wharf serve`, user `bench` in the default (local-disk) bucket
  rclone-s3         `rclone serve sftp` on a bucket of an s3s-fs server (--vfs-cache-mode off)
  wharf-s3          the same `wharf serve`, user `bench-s3` in a bucket on the same s3s-fs server
  proftpd-local     ProFTPD with mod_tls, explicit FTPS (TLSRequired on), user `bench` jailed
                    to a local directory (DefaultRoot)
  wharf-ftps-local  the same `wharf serve`'s FTPS gateway, user `bench` as on wharf-local

Workloads, timed by hyperfine; every timed run is a whole client process (start-up, connect,
key exchange or TLS handshake, authentication, transfer). SFTP: OpenSSH `sftp`, key
authentication, batch mode; FTPS: `lftp` (and `curl` for a), password, TLS on control and data:

  a) one big file up and down, MB/s, with the default cipher and with aes128-gcm (SFTP), with
     lftp and with curl (FTPS)
  b) many 4 KiB files up in one session, files/s
  c) concurrent clients each uploading one file, aggregate MB/s
  d) connect + authenticate + list, ms
  e) server resident memory (VmRSS of the server's processes): idle, with N idle authenticated
     sessions (bench/sessions.py), per idle session, and the peak during c)'s uploads
  f) password logins per second through Wharf's control plane with 100,000 users in its
     database (bench/sessions.py, paramiko workers), against OpenSSH (and rclone) with one
     system user; runs after every other workload of every target

Before a target is timed, a round trip through it is compared by SHA-256; after every upload
workload the remote sizes are checked. A broken target fails loudly: its remaining figures are
marked FAILED and the run exits non-zero.

A target is a `start_*` function in `start_servers` plus a Target; each workload names the
protocols and stores it runs on, and every client (SftpClient, FtpsClient) offers the same
small interface.

No figure is asserted anywhere: the numbers are for reading, as ratios between servers measured
on the same machine in the same run.
"""

import argparse
import csv
import dataclasses
import datetime
import fcntl
import functools
import hashlib
import json
import os
import platform
import resource
import select
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WHARF = Path(os.environ.get("WHARF_BENCH_BINARY", REPO / "target" / "release" / "wharf"))
STATE = Path(os.environ.get("WHARF_BENCH_STATE", "/tmp/wharf-bench"))
# sshd chroots only into a directory whose every component is root-owned and not group- or
# world-writable, which rules out /tmp (peers.md, finding 7).
CHROOT = Path("/srv/wharf-bench")
USER, PASSWORD = "bench", "benchpass"
ADMIN_KEY = "wharf_bench_admin_key_0123456789abcdef0123"
S3_KEY, S3_SECRET = "bench-access-key", "bench-secret-key-0123456789"
S3_BUCKET_RCLONE, S3_BUCKET_WHARF = "bench-rclone", "bench-wharf"

# Every port of the benchmark, all on 127.0.0.1, in one block that neither the tests (random
# ports) nor the machine's services use. 24030-24039 and 24060-24079 are kept for the FTPS
# peers (ProFTPD's control port and passive range); Wharf's FTPS gateway has its own.
PORTS = {
    "openssh-local": 24001,
    "rclone-local": 24003,
    "rclone-s3": 24004,
    "s3s-fs": 24009,
    "wharf-ftps": 24021,
    "wharf-sftp": 24022,
    "wharf-ftps-implicit": 24023,
    "proftpd": 24031,
    "wharf-api": 24080,
}
WHARF_PASSIVE_PORTS = "24040-24059"
PROFTPD_PASSIVE_PORTS = "24060-24079"
GCM = "aes128-gcm@openssh.com"
SESSIONS_PY = REPO / "bench" / "sessions.py"

MiB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Sizes:
    big: int            # a) bytes of the one big file
    small_files: int    # b) how many files
    small_size: int     # b) bytes each
    conc_clients: int   # c) client processes at once
    conc_size: int      # c) bytes each client uploads
    runs: int           # timed runs of a)-c), rounds of e) and f)
    hs_runs: int        # timed runs of d)
    hs_warmup: int      # untimed runs of d) first
    idle: float         # seconds of rest before every timed run
    verify: int         # bytes of the checked round trip (odd, spans several S3 parts)
    idle_sessions: int  # e) idle authenticated sessions held open
    settle: float       # e) seconds between the last session opened and reading the memory
    users: int          # f) users in Wharf's database
    login_workers: int  # f) client processes logging in at once
    login_seconds: float  # f) how long each round of logins lasts


FULL = Sizes(big=1024 * MiB, small_files=2000, small_size=4096, conc_clients=20,
             conc_size=50 * MiB, runs=5, hs_runs=20, hs_warmup=2, idle=0.5,
             verify=20 * MiB + 12345, idle_sessions=500, settle=2.0, users=100_000,
             login_workers=8, login_seconds=10.0)
SMOKE = Sizes(big=8 * MiB, small_files=50, small_size=4096, conc_clients=3,
              conc_size=2 * MiB, runs=1, hs_runs=1, hs_warmup=0, idle=0.2,
              verify=9 * MiB + 12345, idle_sessions=20, settle=0.5, users=1000,
              login_workers=4, login_seconds=2.0)


class BenchError(Exception):
    """A target is broken (or a tool failed): reported loudly, never turned into a figure."""


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd, check=True, **kwargs):
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kwargs)


def sh(command, timeout):
    """Runs a shell command in its own process group; kills the whole group on timeout."""
    proc = subprocess.Popen(["bash", "-c", command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise BenchError(f"timed out after {timeout:.0f} s: {command[:300]}")
    except BaseException:  # Ctrl-C, SIGTERM: take the clients down with the run
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_port(port, what, proc, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode} at start; see "
                             f"{STATE}/log/")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise BenchError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def random_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, MiB))
            f.write(chunk)
            left -= len(chunk)


# --------------------------------------------------------------------------------------------
# Servers


@dataclasses.dataclass
class Pinning:
    """Which cores the servers and the clients run on. On a machine shared with its clients, a
    thread-pool server (Wharf) and process-per-connection servers (sshd, ProFTPD) compete for
    CPU differently, and unpinned figures rank the scheduler, not the servers (issue 23). So by
    default every server process (and everything it forks or spawns) runs on `servers` and
    every client (hyperfine, sftp, lftp, curl, paramiko) on `clients`; `None` is unpinned.
    Production gateways do not share cores with their partners' clients either."""
    servers: set | None
    clients: set | None

    @staticmethod
    def split(unpinned, server_cpus=None, client_cpus=None):
        if unpinned:
            return Pinning(None, None)
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("bench: pinning needs 2 cores or more; pass --unpinned")
        half = len(cpus) // 2
        servers = parse_cpus(server_cpus) if server_cpus else set(cpus[:half])
        clients = parse_cpus(client_cpus) if client_cpus else set(cpus[half:])
        if servers & clients:
            raise SystemExit(f"bench: server cores {sorted(servers)} and client cores "
                             f"{sorted(clients)} overlap")
        return Pinning(servers, clients)

    def describe(self):
        if self.servers is None:
            return "unpinned: servers and clients share every core (`--unpinned`)"
        return (f"servers on core(s) {cpu_list(self.servers)}, clients on core(s) "
                f"{cpu_list(self.clients)} (sched_setaffinity, inherited by every process a "
                "server or client starts)")


def parse_cpus(text):
    """`0`, `0,2`, `0-3`: a set of core numbers."""
    cpus = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def cpu_list(cpus):
    return ",".join(str(c) for c in sorted(cpus))


def autogroup():
    try:
        value = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip()
    except OSError:
        return "not available"
    return {"0": "off", "1": "on"}.get(value, value)


# Set by main() before any server starts.
PINNING = Pinning(None, None)


class Servers:
    """Every server process the benchmark starts; all of them are stopped on exit. Their pids
    are recorded in the state directory so a run that was killed outright (SIGKILL) has its
    leftovers stopped by the next run, and nothing else. Each runs on the server cores
    ([`Pinning`])."""

    def __init__(self):
        self.processes = []

    def spawn(self, name, cmd, env=None):
        logf = open(STATE / "log" / f"{name}.log", "a")
        cores = PINNING.servers
        pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=pin)
        self.processes.append((name, proc))
        pids = {str(p.pid): " ".join(p.args) for _, p in self.processes}
        (STATE / "pids.json").write_text(json.dumps(pids))
        return proc

    def stop_one(self, name):
        """Stops the process spawned as `name` (SIGTERM, then SIGKILL after 20 s)."""
        for entry in [e for e in self.processes if e[0] == name]:
            proc = entry[1]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            self.processes.remove(entry)

    def stop(self):
        for name, proc in reversed(self.processes):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)
                except ProcessLookupError:
                    pass
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.processes = []


def stop_leftovers():
    """Stops the servers a previous, killed run of this script left behind (by pid, and only
    if the pid still runs the same command line)."""
    pids_file = STATE / "pids.json"
    if not pids_file.exists():
        return
    for pid, cmdline in json.loads(pids_file.read_text()).items():
        try:
            now = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if now == cmdline:
            log(f"stopping pid {pid} left over from an earlier run: {cmdline[:80]}")
            try:
                os.killpg(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass
    time.sleep(1)


# Directories of an earlier run, moved out of the way at the start and removed once this run's
# measurements are done (see `set_aside`).
SET_ASIDE = []


def set_aside(path):
    """Moves `path` out of the way, to be removed after the measurements: deleting many files
    right before them would slow every file created in the next minutes (see `move_aside`)."""
    if path.exists():
        aside = path.with_name(f"{path.name}.old-{os.getpid()}-{len(SET_ASIDE)}")
        path.rename(aside)
        SET_ASIDE.append(aside)


def prepare_state():
    stop_leftovers()
    for left in [STATE, CHROOT]:  # set aside by a run that was killed
        for old in left.parent.glob(left.name + ".old-*"):
            shutil.rmtree(old, ignore_errors=True)
    set_aside(STATE)
    for d in ["log", "client", "etc", "rclone", f"s3/{S3_BUCKET_RCLONE}",
              f"s3/{S3_BUCKET_WHARF}", "wharf", "src", "batch", "hyperfine", "verify",
              "proftpd", "trash"]:
        (STATE / d).mkdir(parents=True, exist_ok=True)
    key = STATE / "client" / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wharf-bench", "-f", str(key)])
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wharf-bench-host",
         "-f", str(STATE / "etc" / "host_ed25519")])
    # One self-signed certificate (ECDSA P-256) for both FTPS servers, so their handshakes
    # do the same work.
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "30", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(STATE / "etc" / "tls.key"), "-out", str(STATE / "etc" / "tls.crt")])
    os.chmod(STATE / "etc" / "tls.key", 0o600)
    return key


def bench_user():
    """The `bench` system user (sshd and ProFTPD files belong to it) and the SHA-512-crypt
    hash of its password, as for every peer (peers.md, finding 6): logins compare on protocol
    work."""
    if run(["id", USER], check=False).returncode != 0:
        run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER])
    return run(["openssl", "passwd", "-6", PASSWORD]).stdout.strip()


def start_openssh(servers, pubkey):
    hashed = bench_user()
    run(["chpasswd", "-e"], input=f"{USER}:{hashed}\n")
    set_aside(CHROOT)
    (CHROOT / "data").mkdir(parents=True)
    os.chmod(CHROOT, 0o755)
    shutil.chown(CHROOT / "data", USER, USER)
    keys = STATE / "etc" / "authorized_keys"
    keys.write_text(pubkey)
    os.chmod(keys, 0o644)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    config = STATE / "etc" / "sshd_config"
    config.write_text(f"""# wharf bench: OpenSSH's sftp-server (in-process) in a chroot
Port {PORTS['openssh-local']}
ListenAddress 127.0.0.1
HostKey {STATE}/etc/host_ed25519
PidFile {STATE}/etc/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile {keys}
MaxStartups 200:30:400
MaxSessions 100
UseDNS no
Subsystem sftp internal-sftp
Match User {USER}
    ChrootDirectory {CHROOT}
    ForceCommand internal-sftp -d /data
    AllowTcpForwarding no
    X11Forwarding no
""")
    check = run(["/usr/sbin/sshd", "-t", "-f", str(config)], check=False)
    if check.returncode != 0:
        raise BenchError(f"sshd rejects its configuration: {check.stderr.strip()}")
    proc = servers.spawn("openssh", ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)])
    wait_port(PORTS["openssh-local"], "sshd", proc)
    return proc


def start_proftpd(servers):
    """ProFTPD with mod_tls in the foreground (`-n`), as root: explicit FTPS required on control
    and data connections, one virtual user (AuthUserFile, the `bench` system user's ids, a
    SHA-512-crypt password) jailed to its home (DefaultRoot ~), no DNS or ident lookups, and
    every state file (pid, scoreboard, delay table, logs) under the state directory."""
    hashed = bench_user()
    uid, gid = run(["id", "-u", USER]).stdout.strip(), run(["id", "-g", USER]).stdout.strip()
    home = STATE / "proftpd"
    shutil.chown(home, USER, USER)
    etc = STATE / "etc"
    (etc / "ftpd.passwd").write_text(f"{USER}:{hashed}:{uid}:{gid}::{home}:/usr/sbin/nologin\n")
    (etc / "ftpd.group").write_text(f"{USER}:x:{gid}:\n")
    for f in ["ftpd.passwd", "ftpd.group"]:
        os.chmod(etc / f, 0o600)
    first, last = PROFTPD_PASSIVE_PORTS.split("-")
    config = etc / "proftpd.conf"
    config.write_text(f"""# wharf bench: ProFTPD, explicit FTPS, one virtual user in a jail
ServerType standalone
ServerName "wharf bench"
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
Port {PORTS['proftpd']}
PassivePorts {first} {last}
User nobody
Group nogroup
PidFile {etc}/proftpd.pid
ScoreboardFile {etc}/proftpd.scoreboard
DelayTable {etc}/proftpd.delay
SystemLog {STATE}/log/proftpd-system.log
TransferLog NONE
WtmpLog off
UseReverseDNS off
<IfModule mod_ident.c>
  IdentLookups off
</IfModule>
<IfModule mod_ctrls.c>
  ControlsEngine off
</IfModule>
# Enough for workload e)'s idle sessions.
MaxInstances 1000
AuthOrder mod_auth_file.c
AuthUserFile {etc}/ftpd.passwd
AuthGroupFile {etc}/ftpd.group
RequireValidShell off
DefaultRoot ~
AllowOverwrite on
Umask 022
TimeoutIdle 600
TimeoutNoTransfer 600
ModulePath /usr/lib/proftpd
LoadModule mod_tls.c
TLSEngine on
TLSLog {STATE}/log/proftpd-tls.log
TLSProtocol TLSv1.2 TLSv1.3
TLSECCertificateFile {etc}/tls.crt
TLSECCertificateKeyFile {etc}/tls.key
TLSVerifyClient off
TLSRequired on
""")
    check = run(["proftpd", "-t", "-c", str(config)], check=False)
    if check.returncode != 0:
        raise BenchError(f"proftpd rejects its configuration: "
                         f"{(check.stderr or check.stdout).strip()[-500:]}")
    proc = servers.spawn("proftpd", ["proftpd", "-n", "-c", str(config)])
    wait_port(PORTS["proftpd"], "proftpd", proc)
    return proc


def start_s3(servers):
    proc = servers.spawn("s3s-fs", [
        "s3s-fs", "--host", "127.0.0.1", "--port", str(PORTS["s3s-fs"]),
        "--access-key", S3_KEY, "--secret-key", S3_SECRET, str(STATE / "s3"),
    ], env={**os.environ, "RUST_LOG": "warn"})
    wait_port(PORTS["s3s-fs"], "s3s-fs", proc)
    return proc


def rclone_env():
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)  # breaks rclone's S3 backend at start (peers.md, finding 8)
    env.update({
        "RCLONE_CONFIG_BENCHS3_TYPE": "s3",
        "RCLONE_CONFIG_BENCHS3_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCHS3_ENDPOINT": f"http://127.0.0.1:{PORTS['s3s-fs']}",
        "RCLONE_CONFIG_BENCHS3_ACCESS_KEY_ID": S3_KEY,
        "RCLONE_CONFIG_BENCHS3_SECRET_ACCESS_KEY": S3_SECRET,
        "RCLONE_CONFIG_BENCHS3_FORCE_PATH_STYLE": "true",
    })
    return env


def start_rclone(servers, name, remote, pubkey_file):
    # --vfs-cache-mode off: an upload returns when the object is stored, as Wharf's does
    # (peers.md, finding 9).
    proc = servers.spawn(name, [
        "rclone", "serve", "sftp", remote, "--addr", f"127.0.0.1:{PORTS[name]}",
        "--user", USER, "--pass", PASSWORD, "--authorized-keys", str(pubkey_file),
        "--key", str(STATE / "etc" / "host_ed25519"), "--vfs-cache-mode", "off",
        "--config", "/dev/null",
    ], env=rclone_env())
    wait_port(PORTS[name], name, proc)
    return proc


def api(method, path, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORTS['wharf-api']}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Key {ADMIN_KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        raise BenchError(f"wharf API {method} {path}: {e.code} {e.read().decode()[:500]}")


def start_wharf(servers, pubkey, with_s3=True):
    """One `wharf serve` (SQLite, local-disk default bucket) with a second bucket on s3s-fs,
    registered through the API like an operator would; user `bench` in the local bucket and
    `bench-s3` in the S3 one, both with the benchmark's key (Wharf generates passwords; the
    workloads log in with the key everywhere; FTPS and f) with the password the API returns).
    maxSessions is raised from its default of 10 to the most allowed (1000), so c) runs 20
    clients at once and e) holds 500 sessions as on the peers. The FTPS gateway serves the
    same certificate as ProFTPD. Returns the process and `bench`'s password."""
    # A copy, so a build finishing elsewhere during the run cannot swap the binary under it.
    binary = STATE / "bin" / "wharf"
    binary.parent.mkdir(exist_ok=True)
    shutil.copy2(WHARF, binary)
    proc = spawn_wharf(servers)
    if with_s3:
        api("POST", "/v1/buckets", {
            "bucketName": "bench-s3", "storageUrl": f"s3://{S3_BUCKET_WHARF}",
            "options": {"aws_endpoint": f"http://127.0.0.1:{PORTS['s3s-fs']}",
                        "aws_access_key_id": S3_KEY, "aws_secret_access_key": S3_SECRET,
                        "aws_region": "us-east-1"}})
    passwords = {}
    for username, bucket in [(USER, None)] + ([(USER + "-s3", "bench-s3")] if with_s3 else []):
        body = {"username": username, "description": "benchmark", "homeDirectory": f"/{username}",
                "publicKeys": [pubkey.strip()], "maxSessions": 1000}
        if bucket:
            body["bucketName"] = bucket
        passwords[username] = api("POST", "/v1/users", body)["password"]
    return proc, passwords[USER]


def spawn_wharf(servers):
    """Starts `wharf serve` on the benchmark's state and ports and waits until it listens."""
    env = {**os.environ, "WHARF_ADMIN_API_KEY": ADMIN_KEY, "WHARF_LOG": "warn"}
    for var in ["WHARF_DATABASE_URL", "WHARF_BUCKET_URL", "WHARF_DATA_DIR"]:
        env.pop(var, None)
    proc = servers.spawn("wharf", [
        str(STATE / "bin" / "wharf"), "serve", "--data-dir", str(STATE / "wharf"),
        "--sftp-addr", f"127.0.0.1:{PORTS['wharf-sftp']}",
        "--api-addr", f"127.0.0.1:{PORTS['wharf-api']}",
        "--ftps-addr", f"127.0.0.1:{PORTS['wharf-ftps']}",
        "--ftps-implicit-addr", f"127.0.0.1:{PORTS['wharf-ftps-implicit']}",
        "--ftps-passive-ports", WHARF_PASSIVE_PORTS,
        "--ftps-cert-file", str(STATE / "etc" / "tls.crt"),
        "--ftps-key-file", str(STATE / "etc" / "tls.key"),
    ], env=env)
    wait_port(PORTS["wharf-api"], "wharf API", proc)
    wait_port(PORTS["wharf-sftp"], "wharf SFTP", proc)
    wait_port(PORTS["wharf-ftps"], "wharf FTPS", proc)
    return proc


def restart_wharf(servers, targets):
    """Stops `wharf serve` and starts it again on the same state (database, buckets, users
    and passwords stay), so that e) reads a fresh process: in the process that ran a) to d)
    the allocator reuses memory those workloads freed, which hides what sessions cost."""
    servers.stop_one("wharf")
    proc = spawn_wharf(servers)
    for t in targets:
        if t.is_wharf:
            t.pid = proc.pid


def seed_wharf_users(count):
    """Brings Wharf's user table to `count` users: `load-000001`... are inserted straight into
    its SQLite database in one transaction, each a copy of `bench`'s row (same bucket,
    permissions and argon2id password hash, so the same password; no keys; the default
    maxSessions). The API would hash every password (tens of ms each). Returns the names
    inserted and the number of users in the table."""
    db = sqlite3.connect(STATE / "wharf" / "wharf.db", timeout=60)
    try:
        have = db.execute("SELECT COUNT(*) FROM users").fetchone()[0]
        names = [f"load-{i:06}" for i in range(1, max(0, count - have) + 1)]
        with db:
            db.executemany(
                "INSERT INTO users (username, description, home_directory, bucket_name, "
                "permissions, password_hash, public_keys, disabled, max_sessions, created_at, "
                "updated_at) SELECT ?, 'benchmark f)', ?, bucket_name, permissions, "
                "password_hash, '[]', 0, 10, created_at, updated_at FROM users "
                "WHERE username = ?", [(n, f"/{n}", USER) for n in names])
        total = db.execute("SELECT COUNT(*) FROM users").fetchone()[0]
    finally:
        db.close()
    if total < count:
        raise BenchError(f"wharf: {total} users in the database after seeding, {count} wanted")
    return names, total


# --------------------------------------------------------------------------------------------
# Targets and clients


@dataclasses.dataclass
class Target:
    name: str       # as in the tables: <server>-<store>
    server: str     # openssh, rclone, proftpd, wharf
    proto: str      # sftp or ftps
    store: str      # local or s3
    port: int
    user: str
    pid: int = 0    # the serving process (with its children: e)'s memory)
    password: str = PASSWORD  # FTPS logins and f)
    passive: str = ""         # FTPS: the passive port range
    home: Path | None = None  # where the user's files are on this machine's disk

    @property
    def is_wharf(self):
        return self.server.startswith("wharf")


# The reference peer that issue 8 states Wharf's targets against, per (proto, store). The
# ratio to the best peer of the same (proto, store) is always shown as well.
REFERENCE = {("sftp", "local"): "openssh-local", ("sftp", "s3"): "rclone-s3",
             ("ftps", "local"): "proftpd-local"}

TARGET_ORDER = ["openssh-local", "rclone-local", "wharf-local", "rclone-s3", "wharf-s3",
                "proftpd-local", "wharf-ftps-local"]


def start_servers(servers, pubkey, pubkey_file, wanted):
    """Starts the servers behind the wanted targets and returns the targets."""
    targets = []
    need = lambda *names: any(n in wanted for n in names)  # noqa: E731
    if need("openssh-local"):
        p = start_openssh(servers, pubkey)
        targets.append(Target("openssh-local", "openssh", "sftp", "local",
                              PORTS["openssh-local"], USER, p.pid, home=CHROOT / "data"))
    if need("rclone-s3", "wharf-s3"):
        start_s3(servers)
    if need("rclone-local"):
        p = start_rclone(servers, "rclone-local", str(STATE / "rclone"), pubkey_file)
        targets.append(Target("rclone-local", "rclone", "sftp", "local",
                              PORTS["rclone-local"], USER, p.pid, home=STATE / "rclone"))
    if need("wharf-local", "wharf-s3", "wharf-ftps-local"):
        p, password = start_wharf(servers, pubkey, with_s3=need("wharf-s3"))
        wharf_home = STATE / "wharf" / "buckets" / USER
        targets.append(Target("wharf-local", "wharf", "sftp", "local", PORTS["wharf-sftp"],
                              USER, p.pid, password, home=wharf_home))
        targets.append(Target("wharf-s3", "wharf", "sftp", "s3", PORTS["wharf-sftp"],
                              USER + "-s3", p.pid,
                              home=STATE / "s3" / S3_BUCKET_WHARF / (USER + "-s3")))
        targets.append(Target("wharf-ftps-local", "wharf", "ftps", "local",
                              PORTS["wharf-ftps"], USER, p.pid, password,
                              WHARF_PASSIVE_PORTS, home=wharf_home))
    if need("rclone-s3"):
        p = start_rclone(servers, "rclone-s3", f"benchs3:{S3_BUCKET_RCLONE}", pubkey_file)
        targets.append(Target("rclone-s3", "rclone", "sftp", "s3", PORTS["rclone-s3"], USER,
                              p.pid, home=STATE / "s3" / S3_BUCKET_RCLONE))
    if need("proftpd-local"):
        p = start_proftpd(servers)
        targets.append(Target("proftpd-local", "proftpd", "ftps", "local", PORTS["proftpd"],
                              USER, p.pid, PASSWORD, PROFTPD_PASSIVE_PORTS,
                              home=STATE / "proftpd"))
    targets = [t for t in targets if t.name in wanted]
    return sorted(targets, key=lambda t: TARGET_ORDER.index(t.name))


class SftpClient:
    """OpenSSH's `sftp` in batch mode (`-b`), key authentication, no config file, no
    multiplexing. Every method returns the shell command of one client process; batch files
    are written under $STATE/batch and are the same for every target (paths are relative to
    the login directory)."""

    proto = "sftp"
    # The variant names of b), c) ({n}: clients) and d).
    labels = {"b": "sftp put *", "c": "{n} x sftp put", "d": "sftp ls"}

    def __init__(self, key):
        self.key = key

    def variants(self):
        """Bulk-transfer variants of workload a): (label, cipher)."""
        return [("default cipher", None), ("aes128-gcm", GCM)]

    def argv(self, target, batch, variant=None, verbose=False):
        cmd = ["sftp", "-v" if verbose else "-q", "-F", "/dev/null", "-i", str(self.key),
               "-P", str(target.port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        if not verbose:
            cmd += ["-o", "LogLevel=ERROR"]
        cmd += ["-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "ConnectTimeout=20"]
        if variant:
            cmd += ["-c", variant]
        return cmd + ["-b", str(batch), f"{target.user}@127.0.0.1"]

    def _batch(self, name, text):
        path = STATE / "batch" / name
        path.write_text(text)
        return path

    def _cmd(self, target, name, text, variant=None):
        return shlex.join(self.argv(target, self._batch(name, text), variant))

    def put(self, target, local, remote, variant=None):
        return self._cmd(target, f"put_{remote}", f"put {local} {remote}\n", variant)

    def get(self, target, remote, local, variant=None):
        name = f"get_{remote}" + ("" if local == "/dev/null" else "_to_" + Path(local).name)
        return self._cmd(target, name, f"get {remote} {local}\n", variant)

    def put_dir(self, target, local_dir, remote_dir):
        """Every file of local_dir into remote_dir, one session: `put *`."""
        return self._cmd(target, f"put_dir_{remote_dir}",
                         f"-mkdir {remote_dir}\ncd {remote_dir}\nlcd {local_dir}\nput *\n")

    def put_parallel(self, target, files):
        """One client process per (local, remote) pair, all started at once; fails if any
        fails (each client's exit status is waited for)."""
        for i, (local, remote) in enumerate(files):
            self._batch(f"put_par_{i:02}", f"put {local} {remote}\n")
        one = shlex.join(self.argv(target, "@@BATCH@@")).replace(
            "@@BATCH@@", f"{STATE}/batch/put_par_$i")
        return (f"pids=; for i in $(seq -f %02g 0 {len(files) - 1}); do {one} >/dev/null & "
                f"pids=\"$pids $!\"; done; rc=0; for p in $pids; do wait $p || rc=1; done; "
                f"exit $rc")

    def listing(self, target):
        return self._cmd(target, "ls", "ls\n")

    def remove(self, target, files=(), dirs=()):
        """Deletes remote files (globs allowed) and then directories, ignoring missing ones."""
        text = "".join(f"-rm {f}\n" for f in files) + "".join(f"-rmdir {d}\n" for d in dirs)
        name = "rm_" + hashlib.sha1(text.encode()).hexdigest()[:10]
        return self._cmd(target, name, text)

    def sizes(self, target, remote_dir="."):
        """{name: size} of the regular files in remote_dir (`ls -ln`, formatted by the
        client from the attributes)."""
        cmd = self._cmd(target, f"lsn_{remote_dir.replace('/', '_')}", f"ls -ln {remote_dir}\n")
        result = sh(cmd, timeout=120)
        if result.returncode != 0:
            raise BenchError(f"{target.name}: ls -ln {remote_dir} failed: "
                             f"{result.stderr.strip()[-500:]}")
        found = {}
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) >= 9 and fields[0].startswith("-"):
                found[Path(fields[-1]).name] = int(fields[4])
        return found

    def negotiated(self, target):
        """The key exchange, host key and cipher the client settles on by default."""
        batch = self._batch("ls", "ls\n")
        result = run(self.argv(target, batch, verbose=True), check=False, timeout=60)
        info = {}
        for line in result.stderr.splitlines():
            if "kex: algorithm:" in line:
                info["kex"] = line.split("kex: algorithm:")[1].strip()
            elif "kex: host key algorithm:" in line:
                info["host key"] = line.split("kex: host key algorithm:")[1].strip()
            elif "kex: server->client cipher:" in line:
                rest = line.split("kex: server->client cipher:")[1].split()
                info["cipher"] = rest[0]
                info["mac"] = rest[2] if len(rest) > 2 else ""
        return info


class FtpsClient:
    """Explicit FTPS with `lftp` (every workload) and `curl` (a second client for a), as in
    peers.md): TLS required on the control and the data connections, the certificate not
    verified (self-signed), passive mode, password login. Every method returns the shell command
    of one client process, with the same interface as SftpClient. lftp's settings are one
    file, `$STATE/batch/ftps.lftp`, the same for every target; the rest of each command is
    on its command line (`lftp -c 'source ...; open ...; <commands>'`)."""

    proto = "ftps"
    labels = {"b": "lftp mput", "c": "{n} x lftp put", "d": "lftp cls"}
    SETTINGS = """set ftp:ssl-force true
set ftp:ssl-protect-data true
set ftp:ssl-protect-list true
set ssl:verify-certificate no
set ftp:passive-mode true
set xfer:clobber on
set net:max-retries 1
set net:timeout 30
set cmd:fail-exit true
"""

    def __init__(self):
        self.settings = STATE / "batch" / "ftps.lftp"
        self.settings.write_text(self.SETTINGS)

    def variants(self):
        """Bulk-transfer variants of workload a): (label, client)."""
        return [("lftp", None), ("curl", "curl")]

    def _lftp(self, target, commands):
        return shlex.join(["lftp", "-c", f"source {self.settings}; open -u "
                           f"{target.user},{target.password} -p {target.port} "
                           f"ftp://127.0.0.1; {commands}"])

    def _curl(self, target, *args):
        return shlex.join(["curl", "-sS", "--fail", "--ssl-reqd", "-k", "--ftp-pasv",
                           "-u", f"{target.user}:{target.password}", *args])

    def put(self, target, local, remote, variant=None):
        if variant == "curl":
            return self._curl(target, "-T", str(local),
                              f"ftp://127.0.0.1:{target.port}/{remote}")
        return self._lftp(target, f"put {local} -o {remote}")

    def get(self, target, remote, local, variant=None):
        if variant == "curl":
            return self._curl(target, "-o", str(local),
                              f"ftp://127.0.0.1:{target.port}/{remote}")
        return self._lftp(target, f"get {remote} -o {local}")

    def put_dir(self, target, local_dir, remote_dir):
        """Every file of local_dir into remote_dir, one session (one TLS data connection per
        file): `mput`."""
        return self._lftp(target, f"mkdir -p -f {remote_dir}; mput -O {remote_dir} "
                                  f"{local_dir}/*")

    def put_parallel(self, target, files):
        """One client process per (local, remote) pair, all started at once; fails if any
        fails. Like SftpClient's, each process reads its `put` from a file of its own."""
        for i, (local, remote) in enumerate(files):
            (STATE / "batch" / f"put_par_{i:02}.lftp").write_text(f"put {local} -o {remote}\n")
        one = self._lftp(target, "source @@BATCH@@").replace(
            "@@BATCH@@", f"{STATE}/batch/put_par_'$i'.lftp")
        return (f"pids=; for i in $(seq -f %02g 0 {len(files) - 1}); do {one} >/dev/null & "
                f"pids=\"$pids $!\"; done; rc=0; for p in $pids; do wait $p || rc=1; done; "
                f"exit $rc")

    def listing(self, target):
        return self._lftp(target, "cls")

    def remove(self, target, files=(), dirs=()):
        """Deletes remote files and then directories (recursively), ignoring missing ones;
        files inside a removed directory (`small/*`) go with it."""
        names = [f for f in files if not any(f.startswith(d + "/") for d in dirs)]
        commands = []
        if names:
            commands.append("rm -f " + " ".join(names))
        if dirs:
            commands.append("rm -r -f " + " ".join(dirs))
        return self._lftp(target, "; ".join(commands) or "cls")

    def sizes(self, target, remote_dir="."):
        """{name: size} of the regular files in remote_dir (`cls --size`, from the server's
        MLSD or LIST)."""
        cmd = self._lftp(target, f"cls -1 --size --block-size=1 {remote_dir}/")
        result = sh(cmd, timeout=120)
        if result.returncode != 0:
            raise BenchError(f"{target.name}: cls {remote_dir} failed: "
                             f"{result.stderr.strip()[-500:]}")
        found = {}
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0].isdigit() and not fields[1].endswith("/"):
                found[Path(fields[1]).name] = int(fields[0])
        return found

    def negotiated(self, target):
        """The TLS version and cipher suite curl (OpenSSL) settles on, as the `-v` output
        says; lftp (GnuTLS) is not asked."""
        cmd = self._curl(target, "-v", "-l", f"ftp://127.0.0.1:{target.port}/")
        result = sh(cmd, timeout=60)
        info = {}
        for line in result.stderr.splitlines():
            if "SSL connection using" in line:
                rest = line.split("SSL connection using", 1)[1].strip()
                version, _, cipher = rest.partition(" / ")
                info["tls"] = version.strip()
                info["cipher"] = cipher.strip()
                break
        return info


# --------------------------------------------------------------------------------------------
# Measuring


class Context:
    def __init__(self, sizes, key, clients):
        self.sizes = sizes
        self.key = key
        self.clients = clients
        self.src = STATE / "src"
        self.big = self.src / "big.bin"
        self.small_dir = self.src / "small"
        self.conc = [self.src / f"conc-{i:02}.bin" for i in range(sizes.conc_clients)]
        self.verify_file = self.src / "verify.bin"
        self.rows = []  # every result so far, in order
        self.wharf_users = None  # f): (usernames file, users in the database, inserted)
        self.restart_wharf = None  # e): starts Wharf afresh (see restart_wharf)

    def client(self, target):
        return self.clients[target.proto]

    def make_sources(self):
        s = self.sizes
        log(f"writing the source files: {s.big // MiB} MiB, {s.small_files} x "
            f"{s.small_size} B, {s.conc_clients} x {s.conc_size // MiB} MiB")
        random_file(self.big, s.big)
        random_file(self.verify_file, s.verify)
        self.small_dir.mkdir(exist_ok=True)
        for i in range(s.small_files):
            random_file(self.small_dir / f"f{i:05}.bin", s.small_size)
        for path in self.conc:
            random_file(path, s.conc_size)

    def untimed(self, target, command, what, timeout=600):
        result = sh(command, timeout)
        if result.returncode != 0:
            raise BenchError(f"{target.name}: {what} failed (exit {result.returncode}): "
                             f"{(result.stderr or result.stdout).strip()[-1000:]}")
        return result

    def time(self, target, test, variant, unit, command, to_value, prepare=None, runs=None,
             warmup=0, budget=None):
        """Times `command` with hyperfine: `runs` runs, each after `prepare` (not timed) and
        `sync` and `idle` seconds of rest. Returns one result row; to_value turns seconds into the
        figure."""
        runs = runs or self.sizes.runs
        slug = f"{target.name}-{test}-{variant}".replace(" ", "_").replace("*", "x")
        out = STATE / "hyperfine" / f"{slug}.json"
        # `sync`: the page cache's dirty data from earlier runs (and targets) is written out
        # before the run, not during it, so no run pays for another's writeback.
        full_prepare = (f"{prepare} >/dev/null 2>&1; " if prepare else "") + \
            f"sync; sleep {self.sizes.idle}"
        cmd = ["hyperfine", "--style", "none", "--shell", "bash", "--runs", str(runs),
               "--warmup", str(warmup), "--prepare", full_prepare, "--export-json", str(out),
               command]
        log(f"{target.name}: {test} {variant}: {runs} run(s)")
        budget = budget or 600
        result = sh(shlex.join(cmd), timeout=budget * (runs + warmup) + 60)
        if result.returncode != 0:
            raise BenchError(f"{target.name}: {test} ({variant}) failed: "
                             f"{self.diagnose(target, command, prepare)}")
        times = json.loads(out.read_text())["results"][0]["times"]
        values = [to_value(t) for t in times]
        row = dict(target=target.name, server=target.server, proto=target.proto,
                   store=target.store, test=test, variant=variant, unit=unit,
                   min=min(values), median=statistics.median(values), max=max(values),
                   mean=statistics.fmean(values), runs=len(values), values=values,
                   seconds=times, status="ok", command=command,
                   prepare=full_prepare, warmup=warmup,
                   template=template(command, target), prepare_template=template(full_prepare,
                                                                                 target))
        log(f"{target.name}: {test} {variant}: median {fmt(row['median'], unit)} {unit} "
            f"(min {fmt(row['min'], unit)}, max {fmt(row['max'], unit)})")
        self.rows.append(row)
        return row

    def record(self, target, test, variant, unit, values, command, **extra):
        """A result row measured without hyperfine (e, f): min/median/max over the rounds."""
        row = dict(target=target.name, server=target.server, proto=target.proto,
                   store=target.store, test=test, variant=variant, unit=unit,
                   min=min(values), median=statistics.median(values), max=max(values),
                   mean=statistics.fmean(values), runs=len(values), values=values,
                   seconds=[], status="ok", command=command, prepare="", warmup=0,
                   template=template(command, target), prepare_template="", **extra)
        log(f"{target.name}: {test} {variant}: median {fmt(row['median'], unit)} {unit} "
            f"(min {fmt(row['min'], unit)}, max {fmt(row['max'], unit)})")
        self.rows.append(row)
        return row

    def diagnose(self, target, command, prepare):
        """Runs a failed command once more outside hyperfine (which hides its output) and
        returns what the client said, with the end of the server's log."""
        if prepare:
            sh(prepare, timeout=600)
        try:
            again = sh(command, timeout=600)
            said = f"exit {again.returncode}, client: " + \
                ((again.stderr or again.stdout).strip()[-800:] or "(nothing)")
        except BenchError as e:
            said = str(e)
        # Named as Servers.spawn was told: one log per server process.
        name = target.name if target.server == "rclone" else target.server
        if target.server == "proftpd":
            name = "proftpd-system"
        server_log = STATE / "log" / f"{name}.log"
        tail = ""
        if server_log.exists():
            tail = " | ".join(server_log.read_text(errors="replace").strip().splitlines()[-5:])
        return f"{said}; server log ({server_log.name}): {tail[-800:]}"

    def expect_sizes(self, target, remote_dir, expected):
        found = self.client(target).sizes(target, remote_dir)
        wrong = {n: (s, found.get(n)) for n, s in expected.items() if found.get(n) != s}
        if wrong:
            sample = dict(list(wrong.items())[:5])
            raise BenchError(f"{target.name}: after the upload, {len(wrong)} of "
                             f"{len(expected)} files in {remote_dir} are missing or have the "
                             f"wrong size (expected, found): {sample}")


def template(command, target):
    """The command with this target's port, user, password and the state directory as
    variables."""
    return (command.replace(f"-P {target.port} ", "-P $PORT ")
            .replace(f"{target.user}@127.0.0.1", "$USER@127.0.0.1")
            .replace(f"-u {target.user},{target.password} -p {target.port} ",
                     "-u $USER,$PASSWORD -p $PORT ")
            .replace(f"-u {target.user}:{target.password} ", "-u $USER:$PASSWORD ")
            .replace(f"127.0.0.1:{target.port}/", "127.0.0.1:$PORT/")
            .replace(f"--port {target.port} ", "--port $PORT ")
            .replace(f"--password {target.password} ", "--password $PASSWORD ")
            .replace(f"--user {target.user} ", "--user $USER ")
            .replace(f"{REPO}/", "")
            .replace(str(STATE), "$STATE"))


def verify(ctx, target):
    """A round trip compared by SHA-256, so a broken target cannot produce figures."""
    c = ctx.client(target)
    back = STATE / "verify" / f"{target.name}.bin"
    log(f"{target.name}: verifying a {ctx.sizes.verify:,} B round trip (SHA-256)")
    ctx.untimed(target, c.remove(target, ["verify.bin"]), "cleaning up")
    ctx.untimed(target, c.put(target, ctx.verify_file, "verify.bin"), "verify upload")
    ctx.expect_sizes(target, ".", {"verify.bin": ctx.sizes.verify})
    ctx.untimed(target, c.get(target, "verify.bin", back), "verify download")
    want, got = sha256(ctx.verify_file), sha256(back) if back.exists() else "(no file)"
    if want != got:
        raise BenchError(f"{target.name}: the round trip changed the file: sha256 {want} "
                         f"sent, {got} received")
    ctx.untimed(target, c.remove(target, ["verify.bin"]), "cleaning up")
    back.unlink()


# Workloads. Each takes (ctx, target), records its results through ctx.time (which appends to
# ctx.rows), leaves the login directory empty, and names the protocols it runs on.


def wl_big(ctx, target):
    """a) one big file up, then down to /dev/null, per bulk-transfer variant."""
    c, size = ctx.client(target), ctx.sizes.big
    mbps = lambda seconds: size / seconds / 1e6  # noqa: E731
    budget = 60 + size / 5e6  # generous: 5 MB/s
    for label, variant in c.variants():
        ctx.time(target, "a-up", label, "MB/s", c.put(target, ctx.big, "big.bin", variant),
                 mbps, prepare=c.remove(target, ["big.bin"]), budget=budget)
        ctx.expect_sizes(target, ".", {"big.bin": size})
        ctx.time(target, "a-down", label, "MB/s",
                 c.get(target, "big.bin", "/dev/null", variant), mbps, budget=budget)
    ctx.untimed(target, c.remove(target, ["big.bin"]), "cleaning up")


def move_aside(target, name):
    """A shell command that moves `name` in the target's home out of its way, on disk, into
    $STATE/trash (removed when the run ends).

    Not deleted: this machine's root file system is ext4 without a journal, and there a new
    file's inode is never one freed in the last 60 s (6 min while its inode table block is
    still dirty): every create walks past each recently freed inode of its block group
    (`recently_deleted()` in fs/ext4/ialloc.c). Deleting b)'s 2,000 files before a timed run
    made each of the next run's creates walk past up to 2,000 of them, in whichever server
    created them: measured, half of Wharf's CPU in b), about 0.5 ms per file, and a spread of
    2.5x in OpenSSH's runs, depending on whether the new directory's inodes landed in the
    old one's block group. On ext4 with a journal (the usual case) there is no such walk."""
    src, trash = shlex.quote(str(target.home / name)), shlex.quote(str(STATE / "trash"))
    return (f"if [ -e {src} ]; then mv -T {src} {trash}/{target.name}-{name}-$(date +%s%N); "
            f"fi")


def wl_small(ctx, target):
    """b) every small file up in one session, each run into a new directory (see
    `move_aside`)."""
    c, n = ctx.client(target), ctx.sizes.small_files
    aside = move_aside(target, "small")
    ctx.time(target, "b-small", c.labels["b"], "files/s",
             c.put_dir(target, ctx.small_dir, "small"), lambda s: n / s, prepare=aside,
             budget=60 + n / 5)
    ctx.expect_sizes(target, "small", {f"f{i:05}.bin": ctx.sizes.small_size for i in range(n)})
    if not (target.home / "small").is_dir():
        raise BenchError(f"{target.name}: b)'s files are not in {target.home / 'small'}, so "
                         f"the runs could not move the previous ones aside")
    ctx.untimed(target, aside, "cleaning up", timeout=60)


def wl_concurrent(ctx, target):
    """c) N client processes at once, each uploading its own file; aggregate MB/s."""
    c, s = ctx.client(target), ctx.sizes
    files = [(p, p.name) for p in ctx.conc]
    rm = c.remove(target, [name for _, name in files])
    total = s.conc_size * s.conc_clients
    ctx.time(target, "c-conc", c.labels["c"].format(n=s.conc_clients), "MB/s",
             c.put_parallel(target, files), lambda sec: total / sec / 1e6, prepare=rm,
             budget=60 + total / 2e6)
    ctx.expect_sizes(target, ".", {name: s.conc_size for _, name in files})
    ctx.untimed(target, rm, "cleaning up")


def wl_handshake(ctx, target):
    """d) connect + key exchange + authenticate + list the (empty) login directory."""
    c = ctx.client(target)
    ctx.time(target, "d-login", c.labels["d"], "ms", c.listing(target), lambda s: s * 1000,
             runs=ctx.sizes.hs_runs, warmup=ctx.sizes.hs_warmup, budget=60)


def process_tree(pid):
    """pid and every process descended from it (sshd's and ProFTPD's per-session children)."""
    children = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def memory(pid, pss=False):
    """(VmRSS summed over the process tree in KiB, PSS summed in KiB or 0, processes). RSS
    counts pages shared between processes (a forking server's binary and libraries) once per
    process; PSS divides them among the processes sharing them."""
    rss = pss_kib = count = 0
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rss += next(int(line.split()[1]) for line in status.splitlines()
                        if line.startswith("VmRSS:"))
            if pss:
                rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
                pss_kib += next(int(line.split()[1]) for line in rollup.splitlines()
                                if line.startswith("Pss:"))
            count += 1
        except (OSError, StopIteration, ValueError):
            continue  # exited meanwhile (or a kernel thread without VmRSS)
    return rss, pss_kib, count


def cpu_seconds(pid):
    """CPU time of a process and of its children that have been waited for (utime, stime,
    cutime, cstime): a forking server's listener accounts for its reaped sessions."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def wait_quiet(target, timeout=60.0):
    """Waits until the server is down to its one listening process again (the sessions of an
    earlier step have exited), so that its memory is read with no session."""
    deadline = time.time() + timeout
    while len(process_tree(target.pid)) > 1 and time.time() < deadline:
        time.sleep(0.2)
    left = len(process_tree(target.pid)) - 1
    if left:
        log(f"{target.name}: {left} session process(es) still running after {timeout:.0f} s")


# e): sessions opened and closed on a freshly started Wharf before its memory is read, so
# that one-time allocations (the argon2 buffers, one per core, kept for reuse; the TLS and
# SSH configuration) are not counted per session.
WARM_SESSIONS = 16


def hold_sessions(target, cmd, n, settle):
    """Opens `n` idle sessions with bench/sessions.py `hold` (`cmd`), reads the server's
    memory `settle` seconds after the last one is open, closes them all and returns the
    reading."""
    holder = subprocess.Popen(["bash", "-c", cmd], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        ready, _, _ = select.select([holder.stdout], [], [], 60 + n * 0.5)
        line = holder.stdout.readline().strip() if ready else ""
        if not line.startswith("ready"):
            holder.kill()
            err = holder.stderr.read() if holder.poll() is not None else ""
            raise BenchError(f"{target.name}: opening {n} idle sessions failed: "
                             f"{(line or err or 'timed out').strip()[-800:]}")
        time.sleep(settle)
        after = memory(target.pid, pss=True)
        holder.stdin.write("close\n")
        holder.stdin.flush()
        holder.wait(timeout=60)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
    return after


def wl_memory(ctx, target):
    """e) the server's resident memory: with no session, with N idle authenticated sessions
    (bench/sessions.py holds them), per session, and its peak while c)'s uploads run."""
    c, s = ctx.client(target), ctx.sizes
    n = s.idle_sessions
    if target.proto == "sftp":
        who = ["--key", str(ctx.key)]
        variant = f"{n} SFTP sessions (paramiko)"
    else:
        who = ["--password", target.password]
        variant = f"{n} FTPS sessions (ftplib)"
    hold = ["python3", str(SESSIONS_PY), "hold", "--proto", target.proto,
            "--port", str(target.port), "--user", target.user, *who, "--sessions"]
    cmd = shlex.join(hold + [str(n)])
    base, loaded, per, per_pss, procs = [], [], [], [], []
    restart = target.is_wharf and ctx.restart_wharf
    warm = min(n, WARM_SESSIONS)
    log(f"{target.name}: e) memory with {n} idle sessions: {s.runs} round(s)" +
        (f", each on a restarted wharf serve warmed up by {warm} sessions" if restart else ""))
    for _ in range(s.runs):
        if restart:
            ctx.restart_wharf()
            hold_sessions(target, shlex.join(hold + [str(warm)]), warm, 0)
        wait_quiet(target)
        time.sleep(s.idle)
        before = memory(target.pid, pss=True)
        after = hold_sessions(target, cmd, n, s.settle)
        base.append(before[0])
        loaded.append(after[0])
        per.append((after[0] - before[0]) / n)
        per_pss.append((after[1] - before[1]) / n)
        procs.append(after[2])
    note = dict(processes=procs)
    ctx.record(target, "e-base", variant, "KiB", base, cmd, **note)
    ctx.record(target, "e-idle", variant, "KiB", loaded, cmd, **note)
    ctx.record(target, "e-session", variant, "KiB", per, cmd, **note)
    ctx.record(target, "e-session-pss", variant, "KiB", per_pss, cmd, **note)

    # The same N uploads as c), the memory of the server's processes read every 50 ms.
    files = [(p, p.name) for p in ctx.conc]
    rm = c.remove(target, [name for _, name in files])
    put = c.put_parallel(target, files)
    budget = 60 + s.conc_size * s.conc_clients / 2e6
    peaks = []
    log(f"{target.name}: e) memory during {s.conc_clients} uploads: {s.runs} round(s)")
    for _ in range(s.runs):
        ctx.untimed(target, rm, "cleaning up")
        wait_quiet(target)
        time.sleep(s.idle)
        peak = memory(target.pid)[0]
        uploads = subprocess.Popen(["bash", "-c", put], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.time() + budget
        try:
            while uploads.poll() is None and time.time() < deadline:
                peak = max(peak, memory(target.pid)[0])
                time.sleep(0.05)
            if uploads.poll() is None:
                raise BenchError(f"{target.name}: e) uploads timed out after {budget:.0f} s")
        finally:
            if uploads.poll() is None:
                os.killpg(uploads.pid, signal.SIGKILL)
                uploads.wait()
        if uploads.returncode != 0:
            raise BenchError(f"{target.name}: e) uploads failed: "
                             f"{uploads.stderr.read().strip()[-800:]}")
        peaks.append(peak)
    ctx.expect_sizes(target, ".", {name: s.conc_size for _, name in files})
    ctx.untimed(target, rm, "cleaning up")
    ctx.record(target, "e-active", c.labels["c"].format(n=s.conc_clients), "KiB", peaks, put)


def wl_logins(ctx, target):
    """f) password logins per second: W client processes (bench/sessions.py, paramiko) each
    repeating connect + key exchange + password authentication + disconnect for D seconds.
    Wharf checks each against its database, brought to `users` users first; the peers have
    their one system user (SHA-512-crypt)."""
    s = ctx.sizes
    if target.is_wharf:
        if ctx.wharf_users is None:
            log(f"wharf: inserting users until the database has {s.users:,}")
            t0 = time.time()
            names, total = seed_wharf_users(s.users)
            users_file = STATE / "batch" / "users.txt"
            users_file.write_text("".join(f"{name}\n" for name in names))
            ctx.wharf_users = (users_file, total, len(names))
            log(f"wharf: {len(names):,} users inserted in {time.time() - t0:.1f} s; "
                f"{total:,} in all")
        users_file, total, inserted = ctx.wharf_users
        if not inserted:
            raise BenchError("wharf: no user was inserted for f)")
        who = ["--users-file", str(users_file)]
        users = total
    else:
        who = ["--user", target.user]
        users = 1
    cmd = shlex.join(["python3", str(SESSIONS_PY), "logins", "--port", str(target.port),
                      *who, "--password", target.password, "--workers", str(s.login_workers),
                      "--seconds", f"{s.login_seconds:g}"])
    log(f"{target.name}: f) password logins, {s.login_workers} workers x "
        f"{s.login_seconds:g} s: {s.runs} round(s)")
    values, counts, cpu_ms = [], [], []
    for _ in range(s.runs):
        wait_quiet(target)
        time.sleep(s.idle)
        cpu_before = cpu_seconds(target.pid)
        result = sh(cmd, timeout=s.login_seconds + 120)
        wait_quiet(target)  # the sessions' processes reaped: their CPU time is counted
        try:
            out = json.loads(result.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise BenchError(f"{target.name}: f) logins failed: "
                             f"{(result.stderr or result.stdout).strip()[-800:]}")
        if out["failures"] or not out["logins"]:
            raise BenchError(f"{target.name}: f) {out['failures']} of "
                             f"{out['logins'] + out['failures']} logins failed; first: "
                             f"{out['first_error']}")
        values.append(out["logins"] / out["seconds"])
        counts.append(out["logins"])
        cpu_ms.append((cpu_seconds(target.pid) - cpu_before) * 1000 / out["logins"])
    ctx.record(target, "f-logins", f"{s.login_workers} workers", "logins/s", values, cmd,
               users=users, logins=counts)
    ctx.record(target, "f-cpu", f"{s.login_workers} workers", "ms", cpu_ms, cmd, users=users)


@dataclasses.dataclass(frozen=True)
class Workload:
    key: str
    title: str
    protos: frozenset
    run: object
    stores: frozenset = frozenset({"local", "s3"})
    last: bool = False  # runs after every other workload of every target


BOTH = frozenset({"sftp", "ftps"})
WORKLOADS = [
    Workload("a", "one big file up and down", BOTH, wl_big),
    Workload("b", "small files up, one session", BOTH, wl_small),
    Workload("c", "concurrent uploads", BOTH, wl_concurrent),
    Workload("d", "connect + authenticate + list", BOTH, wl_handshake),
    # Local disk only: the S3 targets are the same Wharf process, and store-independent.
    Workload("e", "resident memory: idle sessions, concurrent uploads", BOTH, wl_memory,
             frozenset({"local"})),
    # Last: thousands of argon2 verifications leave Wharf's allocator holding memory that
    # would show up in e) of the targets measured after them.
    Workload("f", "password logins per second", frozenset({"sftp"}), wl_logins,
             frozenset({"local"}), last=True),
]

# How each test is titled and which way is better.
TESTS = {
    "a-up": ("a) {big} upload", True),
    "a-down": ("a) {big} download", True),
    "b-small": ("b) {small_files} files of {small_size} up, one session", True),
    "c-conc": ("c) {conc_clients} clients each uploading {conc_size}, aggregate", True),
    "d-login": ("d) connect + authenticate + list", False),
    "e-base": ("e) server RSS with no session", False),
    "e-idle": ("e) server RSS with {idle_sessions} idle sessions", False),
    "e-session": ("e) RSS per idle session", False),
    "e-session-pss": ("e) PSS per idle session", False),
    "e-active": ("e) server RSS peak during {conc_clients} uploads", False),
    "f-logins": ("f) password logins per second", True),
    "f-cpu": ("f) server CPU time per login", False),
}


def human(n):
    if n >= 1 << 30 and n % (1 << 30) == 0:
        return f"{n >> 30} GiB"
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def test_title(test, sizes):
    return TESTS[test][0].format(big=human(sizes.big), small_files=f"{sizes.small_files:,}",
                                 small_size=human(sizes.small_size),
                                 conc_clients=sizes.conc_clients,
                                 conc_size=human(sizes.conc_size),
                                 idle_sessions=sizes.idle_sessions)


def heading(test, variant, sizes):
    """A test's title, with the variant where a test has several (the ciphers or clients of
    a)."""
    title = test_title(test, sizes)
    return f"{title}, {variant}" if test.startswith("a-") else title


def fmt(value, unit):
    if value is None:
        return "—"
    if unit == "KiB":
        return f"{value:,.0f}"
    return f"{value:.1f}" if unit in ("ms", "logins/s") else f"{value:.0f}"


def measure(ctx, targets, workloads):
    """Every workload on every target, target after target, then the workloads marked `last`
    on every target. A failure ends that target's run (its remaining figures are marked
    FAILED); the other targets still run."""
    failures = []
    broken = set()

    def plan(target, last):
        return [w for w in workloads if target.proto in w.protos and target.store in w.stores
                and w.last == last]

    def run_plan(target, steps):
        for i, w in enumerate(steps):
            try:
                w.run(ctx, target)
            except BenchError as e:
                failures.append(str(e))
                log(f"FAILED: {e}")
                ctx.rows += failed_rows(target, steps[i:], ctx, str(e)[:200], ctx.rows)
                broken.add(target.name)
                return

    for target in targets:
        try:
            verify(ctx, target)
        except BenchError as e:
            failures.append(str(e))
            log(f"FAILED: {e}")
            ctx.rows += failed_rows(target, plan(target, False) + plan(target, True), ctx,
                                    "round trip failed", ctx.rows)
            broken.add(target.name)
            continue
        run_plan(target, plan(target, False))
    for target in targets:
        if target.name in broken:
            ctx.rows += failed_rows(target, plan(target, True), ctx,
                                    "an earlier workload failed", ctx.rows)
        else:
            run_plan(target, plan(target, True))
    return ctx.rows, failures


def failed_rows(target, workloads, ctx, why, done):
    """FAILED rows for every test of the given workloads that has no result yet."""
    have = {(r["target"], r["test"], r["variant"]) for r in done}
    c = ctx.client(target)
    s = ctx.sizes
    sessions = f"{s.idle_sessions} {target.proto.upper()} sessions " + \
        ("(paramiko)" if target.proto == "sftp" else "(ftplib)")
    tests = {
        "a": [(t, label, "MB/s") for label, _ in c.variants() for t in ("a-up", "a-down")],
        "b": [("b-small", c.labels["b"], "files/s")],
        "c": [("c-conc", c.labels["c"].format(n=s.conc_clients), "MB/s")],
        "d": [("d-login", c.labels["d"], "ms")],
        "e": [(t, sessions, "KiB") for t in ("e-base", "e-idle", "e-session", "e-session-pss")]
        + [("e-active", c.labels["c"].format(n=s.conc_clients), "KiB")],
        "f": [("f-logins", f"{s.login_workers} workers", "logins/s"),
              ("f-cpu", f"{s.login_workers} workers", "ms")],
    }
    out = []
    for w in workloads:
        for test, variant, unit in tests.get(w.key, []):
            if (target.name, test, variant) not in have:
                out.append(dict(target=target.name, server=target.server, proto=target.proto,
                                store=target.store, test=test, variant=variant, unit=unit,
                                min=None, median=None, max=None, mean=None, runs=0,
                                values=[], seconds=[], status="FAILED: " + why, command="",
                                prepare="", warmup=0, template="", prepare_template=""))
    return out


# --------------------------------------------------------------------------------------------
# Reporting


def first_line(cmd):
    try:
        r = run(cmd, check=False, timeout=30)
        return ((r.stdout or "") + (r.stderr or "")).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not found"


@functools.cache
def git_describe():
    """The checkout's commit (`-dirty` if it has changes). Cached: main() asks at the start,
    when the binary is copied, so edits made while the run goes on are not counted."""
    return first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"])


def versions():
    def dpkg(pkg):
        return first_line(["dpkg-query", "-W", "-f", "${Version}", pkg])
    git = git_describe()
    profile = "debug build" if "/debug/" in str(WHARF) else "release build"
    try:
        import matplotlib
        mpl = matplotlib.__version__
    except ImportError:
        mpl = "not installed"
    try:
        import paramiko
        pmk = paramiko.__version__
    except ImportError:
        pmk = "not installed"
    return {
        "wharf": f"{first_line([str(WHARF), '--version'])} (commit {git}, {profile}, {WHARF})",
        "OpenSSH sshd (openssh-server)": dpkg("openssh-server"),
        "OpenSSH sftp client (openssh-client)": f"{dpkg('openssh-client')}; "
                                                f"{first_line(['ssh', '-V'])}",
        "rclone": f"{first_line(['rclone', 'version'])} (Debian {dpkg('rclone')})",
        "s3s-fs": first_line(["s3s-fs", "--version"]),
        "ProFTPD": f"{first_line(['proftpd', '--version'])} (Debian proftpd-core "
                   f"{dpkg('proftpd-core')}, mod_tls from proftpd-mod-crypto)",
        "lftp": f"{first_line(['lftp', '--version'])} (Debian {dpkg('lftp')})",
        "curl": first_line(["curl", "--version"]),
        "hyperfine": first_line(["hyperfine", "--version"]),
        "python": platform.python_version(),
        "paramiko": pmk,
        "matplotlib": mpl,
    }


def machine():
    cpu, flags = "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and cpu == "unknown":
            cpu = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    mem_kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
    os_name = "Linux"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    crypto = ", ".join(f for f in ["aes", "avx2", "sha_ni", "pclmulqdq"] if f in flags)
    return dict(cores=os.cpu_count(), cpu=cpu, cpu_flags=crypto,
                memory_gib=round(mem_kib / 1024 / 1024, 1), kernel=platform.release(),
                os=os_name)


def load():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def compare(rows):
    """Adds to every Wharf row its ratio to the best peer of the same protocol, store, test
    and variant, and to the reference peer (OpenSSH on local disk)."""
    index = {(r["target"], r["test"], r["variant"]): r for r in rows}
    for r in rows:
        r["vs_best"] = r["best_peer"] = r["vs_reference"] = r["reference"] = None
        if not r["server"].startswith("wharf") or r["median"] is None:
            continue
        higher = TESTS[r["test"]][1]
        peers = [p for p in rows if not p["server"].startswith("wharf")
                 and p["proto"] == r["proto"] and p["store"] == r["store"]
                 and p["test"] == r["test"] and p["variant"] == r["variant"]
                 and p["median"] and p["median"] > 0]
        if peers:
            best = (max if higher else min)(peers, key=lambda p: p["median"])
            r["vs_best"], r["best_peer"] = r["median"] / best["median"], best["target"]
        ref = REFERENCE.get((r["proto"], r["store"]))
        ref_row = index.get((ref, r["test"], r["variant"]))
        if ref_row and ref_row["median"] and ref_row["median"] > 0:
            r["vs_reference"], r["reference"] = r["median"] / ref_row["median"], ref


def ratio(x):
    """`1.23x`; a ratio under 0.1 also as a fraction (memory against forking servers):
    `0.003x (1/330)`."""
    if x is None:
        return ""
    if abs(x) >= 0.1:
        return f"{x:.2f}x"
    if x > 0:
        inverse = 1 / x
        digits = len(str(int(inverse)))
        return f"{x:.2g}x (1/{int(round(inverse, min(0, 2 - digits))):,})"
    return f"{x:.2g}x"


DESCRIPTIONS = {
    "openssh-local": "sshd, `internal-sftp` in a chroot (`/srv/wharf-bench`)",
    "rclone-local": "`rclone serve sftp` on a directory",
    "wharf-local": "`wharf serve`, default bucket (`file://`)",
    "rclone-s3": "`rclone serve sftp` on s3s-fs, `--vfs-cache-mode off`",
    "wharf-s3": "`wharf serve`, bucket `s3://bench-wharf` on s3s-fs",
    "proftpd-local": "ProFTPD + mod_tls, explicit FTPS (`TLSRequired on`), `DefaultRoot ~`",
    "wharf-ftps-local": "`wharf serve`'s FTPS gateway, default bucket (`file://`)",
}
# Issue 8: Wharf's FTPS at least 0.9x ProFTPD; an idle session at most 256 KiB.
FTPS_TARGET = 0.9
IDLE_SESSION_TARGET_KIB = 256
# Shown in the summaries (the other e) rows are in e)'s own table).
SUMMARY_TESTS = ["a-up", "a-down", "b-small", "c-conc", "d-login", "e-session", "e-active",
                 "f-logins"]


def spread(r):
    """`median (min–max)` of a row, or the median alone for one run."""
    if r is None:
        return ""
    if r["median"] is None:
        return "**FAILED**"
    if r["runs"] == 1:
        return fmt(r["median"], r["unit"])
    return f"{fmt(r['median'], r['unit'])} ({fmt(r['min'], r['unit'])}–" \
           f"{fmt(r['max'], r['unit'])})"


def meets_ftps_target(r):
    """Whether a wharf-ftps row meets issue 8's "FTPS >= 0.9x ProFTPD": throughput at least
    0.9x, times at most 1/0.9x."""
    if r is None or r["vs_reference"] is None:
        return ""
    higher = TESTS[r["test"]][1]
    ok = r["vs_reference"] >= FTPS_TARGET if higher else r["vs_reference"] <= 1 / FTPS_TARGET
    return "met" if ok else "**not met**"


def report(rows, failures, ctx, targets, negotiated, smoke, argv, out_dir, started, elapsed,
           loads):
    sizes = ctx.sizes
    compare(rows)
    mach = machine()
    vers = versions()
    protos = ["sftp", "ftps"]
    tests = []  # (proto, test, variant), in the order of TESTS, then of measurement
    for r in rows:
        if (r["proto"], r["test"], r["variant"]) not in tests:
            tests.append((r["proto"], r["test"], r["variant"]))
    tests.sort(key=lambda k: (protos.index(k[0]), list(TESTS).index(k[1])))
    index = {(r["target"], r["test"], r["variant"]): r for r in rows}
    by_name = {t.name: t for t in targets}
    ftps_client = ctx.clients.get("ftps")
    cmdline = "just bench" + (" " + " ".join(argv) if argv else "")
    L = [
        "# Benchmarks",
        "",
        "Wharf and its peers measured side by side in one run on one machine, with the same "
        "clients: OpenSSH `sftp` (key authentication, batch mode) for SFTP; `lftp` and `curl` "
        "(explicit TLS on the control and data connections, password) for FTPS. For a) to d) "
        "each figure is the median of the timed runs, with the minimum and maximum; every "
        "timed run is a whole client process (start-up, TCP connect, key exchange or TLS "
        "handshake, authentication and the transfer). e) reads the servers' memory, f) counts "
        "password logins per second, both over repeated rounds. MB/s = 10^6 bytes per "
        "second; KiB = 1024 bytes. Servers and clients run on separate cores (below), as a "
        "production gateway and its partners' clients do: on shared cores a thread-pool "
        "server and process-per-connection servers compete for CPU differently, and the "
        "figures would rank the scheduler. The figures rank servers against each other on "
        "the same cores; they are not capacity figures.",
        "",
    ]
    if smoke:
        L += ["**SMOKE RUN: tiny sizes, one run each. These figures only show that the script "
              "works; do not read them.**", ""]
    if failures:
        L += ["**FAILURES in this run** (the affected figures are marked FAILED):", ""]
        L += [f"- {f}" for f in failures] + [""]
    L += [
        f"- Command: `{cmdline}` (equivalently `bench/run.sh{' ' if argv else ''}"
        f"{' '.join(argv)}`), started {started:%Y-%m-%d %H:%M} UTC, "
        f"took {elapsed / 60:.1f} minutes (not counting the build).",
        f"- Machine: {mach['cores']} cores, {mach['cpu']} (flags: {mach['cpu_flags']}), "
        f"{mach['memory_gib']} GiB memory, {mach['os']}, kernel {mach['kernel']}.",
        f"- Cores: {PINNING.describe()}. Scheduler autogroup "
        f"(`kernel.sched_autogroup_enabled`): {autogroup()}.",
        f"- Load average (1, 5, 15 min) at the start: {loads[0]}; at the end: {loads[1]}. "
        "Other work on the machine shows up as noise.",
        "- Versions: " + "; ".join(f"{k}: {v}" for k, v in vers.items()) + ".",
        f"- Sizes: a) {human(sizes.big)}; b) {sizes.small_files:,} x {human(sizes.small_size)}; "
        f"c) {sizes.conc_clients} x {human(sizes.conc_size)}; {sizes.runs} timed run(s) each; "
        f"d) {sizes.hs_runs} timed runs after {sizes.hs_warmup} warm-up run(s); "
        f"e) {sizes.idle_sessions} idle sessions and c)'s uploads, {sizes.runs} round(s); "
        f"f) {sizes.users:,} users in Wharf's database, {sizes.login_workers} client "
        f"processes logging in for {sizes.login_seconds:g} s, {sizes.runs} round(s).",
        "",
    ]

    # Issue 8's stated targets that this run can check.
    goals = []
    for proto, test, variant in tests:
        r = index.get(("wharf-ftps-local", test, variant))
        if proto == "ftps" and r and r["median"] is not None and not test.startswith("e-"):
            goals.append(f"| FTPS >= {FTPS_TARGET}x ProFTPD: {heading(test, variant, sizes)} | "
                         f"{ratio(r['vs_reference'])} | {meets_ftps_target(r)} |")
    for name, what, note in [("wharf-local", "SFTP", ""),
                             ("wharf-ftps-local", "FTPS", "; the target is stated for SFTP, "
                              "shown for comparison")]:
        r = next((x for x in rows if x["target"] == name and x["test"] == "e-session"), None)
        if r and r["median"] is not None:
            ok = "met" if r["median"] <= IDLE_SESSION_TARGET_KIB else "**not met**"
            goals.append(f"| idle {what} session <= {IDLE_SESSION_TARGET_KIB} KiB "
                         f"({name}, RSS per session{note}) | {fmt(r['median'], 'KiB')} KiB | "
                         f"{ok} |")
    if goals:
        L += ["## Issue 8 targets checked by this run", "",
              "| target | Wharf (median) | |", "|---|---|---|"] + goals + [""]

    L += ["## Targets", ""]
    sftp_targets = [t for t in targets if t.proto == "sftp"]
    ftps_targets = [t for t in targets if t.proto == "ftps"]
    if sftp_targets:
        L += [
            "SFTP, all on 127.0.0.1, user `bench` (`bench-s3` on wharf-s3); the SFTP "
            "workloads log in with the ed25519 key `$STATE/client/id_ed25519`, f) with a "
            "password (the peers: `benchpass`, stored as a SHA-512-crypt hash; Wharf: the "
            "password its API generated). What the OpenSSH client negotiates with each by "
            "default (`sftp -v`):",
            "",
            "| target | server | store | port | kex | host key | default cipher | MAC |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for t in sftp_targets:
            n = negotiated.get(t.name, {})
            cells = [f"`{n[k]}`" if n.get(k) else "?"
                     for k in ("kex", "host key", "cipher", "mac")]
            L.append(f"| {t.name} | {DESCRIPTIONS.get(t.name, t.server)} | {t.store} | "
                     f"{t.port} | " + " | ".join(cells) + " |")
        L += [
            "",
            "rclone-s3 and wharf-s3 use two buckets of the same s3s-fs server (port "
            f"{PORTS['s3s-fs']}); with `--vfs-cache-mode off` rclone's upload returns when the "
            "object is stored, as Wharf's does.",
            "",
        ]
    if ftps_targets:
        L += [
            "FTPS, all on 127.0.0.1, user `bench` with a password (ProFTPD: `benchpass`, a "
            "SHA-512-crypt hash in its `AuthUserFile`; Wharf: the password its API generated, "
            "an argon2id hash). Both servers present the same self-signed ECDSA P-256 "
            "certificate (`$STATE/etc/tls.crt`), which the clients do not verify. What curl "
            "(OpenSSL) negotiates with each (`curl -v`):",
            "",
            "| target | server | store | control port | passive ports | TLS | cipher suite |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in ftps_targets:
            n = negotiated.get(t.name, {})
            L.append(f"| {t.name} | {DESCRIPTIONS.get(t.name, t.server)} | {t.store} | "
                     f"{t.port} | {t.passive} | {n.get('tls', '?')} | "
                     f"`{n.get('cipher', '?')}` |")
        L += [
            "",
            "ProFTPD runs as root in the foreground (`proftpd -n -c $STATE/etc/proftpd.conf`, "
            "written by `start_proftpd` in bench/bench.py): `TLSEngine on`, `TLSRequired on` "
            "(control and data), `TLSProtocol TLSv1.2 TLSv1.3`, one virtual user "
            "(`AuthUserFile`, `AuthOrder mod_auth_file.c`) jailed with `DefaultRoot ~`, "
            "`UseReverseDNS off`, `IdentLookups off`, `MaxInstances 1000`, pid, scoreboard "
            "and delay table under `$STATE/etc`. Note that ProFTPD 1.3.8's master pauses "
            "about 0.4 s after each session ends before it accepts the next connection "
            f"(peers.md, finding 4): the {sizes.idle:g} s of rest before each timed run "
            + ("covers it." if sizes.idle >= 0.4 else "does not cover it, so its d) and "
               "short transfers include part of that pause."),
            "",
        ]
        if ftps_client:
            L += ["lftp's settings, `$STATE/batch/ftps.lftp` (the same for every target):", "",
                  "```"] + ftps_client.SETTINGS.strip().splitlines() + ["```", ""]

    L += [
        "## Method",
        "",
        f"Before a target is timed, a {sizes.verify:,}-byte file goes up and back down and is "
        "compared by SHA-256; after each upload workload the remote sizes are checked "
        "(SFTP: `ls -ln`; FTPS: lftp `cls --size`). Remote files are deleted in hyperfine's "
        "`--prepare` step before each timed run, followed by `sync` (so that no run pays for "
        f"the writeback of data an earlier run left dirty in the page cache) and {sizes.idle} s "
        "of rest; each "
        "workload leaves the login directory empty. Each timing of a) to d) is",
        "",
        "```",
        f"hyperfine --style none --shell bash --runs N --warmup W --prepare '<delete>; "
        f"sync; sleep {sizes.idle}' --export-json X.json '<timed command>'",
        "```",
        "",
        "e) and f) are measured by bench/bench.py with bench/sessions.py as the client; see "
        "their sections. They run on the local-disk targets only (wharf-s3 is the same "
        "process as wharf-local, and neither depends on the store). f) runs after every "
        "other workload of every target, so that its argon2 work does not show in e).",
        "",
        "Ratios: Wharf's median over the best peer's median for the same protocol, store, test "
        "and variant (SFTP on local disk: the best of openssh-local and rclone-local; SFTP on "
        "S3: rclone-s3; FTPS: proftpd-local), and over the reference peer (openssh-local, "
        "proftpd-local; issue 8's targets are stated against them). Above 1.00x is better "
        "for throughput and logins/s, below 1.00x is better for time (d) and memory (e).",
        "",
        "![throughput per target](benchmarks.png)",
        "",
        "## Summary (medians, Wharf over peer)",
        "",
    ]
    summary_sftp = [k for k in tests if k[0] == "sftp" and k[1] in SUMMARY_TESTS]
    if summary_sftp:
        L += ["SFTP:", "",
              "| test | wharf-local vs best local peer | wharf-local vs openssh-local | "
              "wharf-s3 vs rclone-s3 |",
              "|---|---|---|---|"]
        for _, test, variant in summary_sftp:
            wl = index.get(("wharf-local", test, variant))
            ws = index.get(("wharf-s3", test, variant))
            cell = lambda r, k: ratio(r[k]) if r else ""  # noqa: E731
            best = f"{cell(wl, 'vs_best')} ({wl['best_peer']})" if wl and wl["best_peer"] else ""
            L.append(f"| {heading(test, variant, sizes)} | {best} | "
                     f"{cell(wl, 'vs_reference')} | {cell(ws, 'vs_best')} |")
        L.append("")
    summary_ftps = [k for k in tests if k[0] == "ftps" and k[1] in SUMMARY_TESTS]
    if summary_ftps:
        L += ["FTPS:", "",
              f"| test | wharf-ftps-local vs proftpd-local | issue 8: >= {FTPS_TARGET}x "
              "ProFTPD |",
              "|---|---|---|"]
        for _, test, variant in summary_ftps:
            r = index.get(("wharf-ftps-local", test, variant))
            goal = meets_ftps_target(r) if not test.startswith("e-") else ""
            L.append(f"| {heading(test, variant, sizes)} | "
                     f"{ratio(r['vs_reference']) if r else ''} | {goal} |")
        L.append("")

    for proto in protos:
        sections = [k for k in tests if k[0] == proto and k[1][0] in "abcd"]
        if not sections:
            continue
        L += [f"## {proto.upper()}: a) to d)", ""]
        for _, test, variant in sections:
            unit = next(r["unit"] for r in rows if r["test"] == test)
            ref_name = {"sftp": "OpenSSH", "ftps": "ProFTPD"}[proto]
            L += [f"### {heading(test, variant, sizes)} ({unit})", "",
                  f"| target | median | min | max | runs | Wharf vs best peer | "
                  f"Wharf vs {ref_name} |",
                  "|---|---|---|---|---|---|---|"]
            templates = []
            for t in targets:
                r = index.get((t.name, test, variant))
                if not r:
                    continue
                if r["median"] is None:
                    L.append(f"| {t.name} | **FAILED** (see the failures above) | | | 0 | | |")
                    continue
                vs_best = f"{ratio(r['vs_best'])} ({r['best_peer']})" if r["best_peer"] else ""
                L.append(f"| {t.name} | **{fmt(r['median'], unit)}** | {fmt(r['min'], unit)} | "
                         f"{fmt(r['max'], unit)} | {r['runs']} | {vs_best} | "
                         f"{ratio(r['vs_reference']) if r['reference'] else ''} |")
                if r["template"] not in templates:
                    templates.append(r["template"])
            L += ["", "Timed command (`$PORT`, `$USER`, `$PASSWORD`: the target's; `$STATE`: "
                  f"`{STATE}`):", "", "```"] + templates + ["```", ""]

    memory_targets = [t for t in targets
                      if any(r["target"] == t.name and r["test"].startswith("e-") for r in rows)]
    if memory_targets:
        n = sizes.idle_sessions
        L += [
            "## e) Server memory",
            "",
            "Resident memory of each server: `VmRSS` from `/proc/<pid>/status`, summed over the "
            "server's process and every process descended from it (OpenSSH: the listening "
            "sshd and each session's sshd processes; ProFTPD: the master and "
            "one child per session; rclone and Wharf: one process). Each round reads it with "
            f"no session, then opens {n} authenticated sessions and keeps them idle "
            "(bench/sessions.py `hold`, one Python process: SFTP with paramiko, the ed25519 "
            "key, the `sftp` subsystem open and one REALPATH answered; FTPS with ftplib, "
            "explicit TLS, USER/PASS, `PROT P`, PWD answered), reads it again "
            f"{sizes.settle:g} s after the last one is open, and closes them all. Per session = "
            f"(RSS with {n} sessions - RSS with none) / {n}. Because RSS counts the pages that "
            "forked processes share once per process, the PSS per session (`Pss` of "
            "`/proc/<pid>/smaps_rollup`, shared pages divided among their processes) is "
            f"shown too. The last column is the peak while c)'s {sizes.conc_clients} "
            "uploads run (the same command as c), read every 50 ms).",
            "",
            f"| target | sessions | processes with {n} sessions | RSS, no session (KiB) | "
            f"RSS, {n} idle sessions (KiB) | RSS per idle session (KiB) | PSS per idle session "
            f"(KiB) | RSS peak, {sizes.conc_clients} uploads (KiB) | per session: Wharf vs "
            "best peer |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        commands = []
        for t in memory_targets:
            get = lambda test: next((r for r in rows if r["target"] == t.name  # noqa: E731
                                     and r["test"] == test), None)
            base, idle, per, pss, active = (get(x) for x in ("e-base", "e-idle", "e-session",
                                                           "e-session-pss", "e-active"))
            procs = ""
            if idle and idle.get("processes"):
                procs = str(int(statistics.median(idle["processes"])))
            vs = f"{ratio(per['vs_best'])} ({per['best_peer']})" \
                if per and per.get("best_peer") else ""
            L.append(f"| {t.name} | {t.proto.upper()} | {procs} | {spread(base)} | "
                     f"{spread(idle)} | {spread(per)} | {spread(pss)} | {spread(active)} | "
                     f"{vs} |")
            if idle and idle["template"] and idle["template"] not in commands:
                commands.append(idle["template"])
        wharf_per = next((r for r in rows if r["target"] == "wharf-local"
                          and r["test"] == "e-session" and r["median"] is not None), None)
        L += [""]
        if wharf_per:
            ok = "met" if wharf_per["median"] <= IDLE_SESSION_TARGET_KIB else "**not met**"
            L += [f"Issue 8's target, an idle SFTP session at most {IDLE_SESSION_TARGET_KIB} "
                  f"KiB: wharf-local {fmt(wharf_per['median'], 'KiB')} KiB per session, {ok}.",
                  ""]
        L += [
            f"Limits raised for {n} sessions: Wharf's user `bench` is created through the API "
            "with `maxSessions: 1000` (the default is 10 per user; Wharf accepts at most 1024 "
            "connections per gateway by default); sshd has `MaxStartups 200:30:400` (it limits "
            "only connections not yet authenticated; at most 8 are being opened at once) and "
            "`MaxSessions 100` (channels per connection); ProFTPD has `MaxInstances 1000`; "
            "rclone has no limit. The benchmark raises its open-file limit to the hard limit "
            "before it starts the servers.",
            "",
            "Reading the figures: Wharf's one process serves wharf-local, wharf-s3 and "
            "wharf-ftps-local. It is restarted (same database and buckets) before each round "
            "of its idle-session readings, so each reads a fresh process: in a process that "
            "ran earlier workloads or rounds, the allocator reuses memory they freed and a "
            f"per-session delta undercounts. After each restart, {WARM_SESSIONS} sessions are "
            "opened and closed before the reading with no session, so that one-time "
            "allocations are not counted per session. rclone is not restarted. An FTPS login verifies an argon2id password hash (19 MiB of "
            "memory each, at most one per core at once, in buffers kept and reused).",
            "",
            "Command (`$PORT`, `$USER`, `$PASSWORD`: the target's; `$STATE`: "
            f"`{STATE}`):", "", "```"] + commands + ["```", ""]

    login_rows = [r for r in rows if r["test"] == "f-logins"]
    if login_rows:
        hashes = {"wharf": "argon2id (Rust `argon2` crate defaults: 19 MiB, 2 passes, "
                           "1 lane), in SQLite",
                  "openssh": "SHA-512-crypt in /etc/shadow (`UsePAM no`)",
                  "rclone": "plain comparison with `--pass`"}
        L += [
            "## f) Password logins per second",
            "",
            f"{sizes.login_workers} client processes (bench/sessions.py `logins`, paramiko) "
            "each repeat, for "
            f"{sizes.login_seconds:g} s, TCP connect + key exchange + password "
            "authentication + disconnect (no channel is opened); logins/s = successful "
            "logins / elapsed seconds, one figure per round; any failed login fails the "
            f"target. Wharf's database first gets {sizes.users:,} users: `load-000001`... "
            "inserted straight into its SQLite file in one transaction, each a copy of "
            "`bench`'s row (so the same argon2id hash: the hash is computed once, by the API); "
            "the workers pick one of them at random for each login. The peers check their one "
            "system user.",
            "",
            "| target | users | password check | logins/s, median | min | max | rounds | "
            "logins per round | Wharf vs best peer | Wharf vs OpenSSH | server CPU per login "
            "(ms) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        commands = []
        for r in login_rows:
            t = by_name.get(r["target"])
            server = t.server if t else r["server"]
            if r["median"] is None:
                L.append(f"| {r['target']} | | {hashes.get(server, '')} | **FAILED** | | | 0 "
                         "| | | | |")
                continue
            vs_best = f"{ratio(r['vs_best'])} ({r['best_peer']})" if r["best_peer"] else ""
            cpu = index.get((r["target"], "f-cpu", r["variant"]))
            L.append(f"| {r['target']} | {r.get('users', 0):,} | {hashes.get(server, '')} | "
                     f"**{fmt(r['median'], r['unit'])}** | {fmt(r['min'], r['unit'])} | "
                     f"{fmt(r['max'], r['unit'])} | {r['runs']} | "
                     f"{', '.join(str(x) for x in r.get('logins', []))} | {vs_best} | "
                     f"{ratio(r['vs_reference']) if r['reference'] else ''} | "
                     f"{spread(cpu)} |")
            if r["template"] not in commands:
                commands.append(r["template"])
        L += [
            "",
            "Server CPU per login: the CPU time (user + system) of the server's process, and "
            "of the session processes it has reaped, over the round, divided by the logins.",
            "",
            "What limits it: every Wharf password login is one argon2id verification (the "
            "`argon2` crate's defaults: 19 MiB of memory, 2 passes, 1 lane), run on a blocking "
            "thread with at most one per core at once; finding the user among the others is one "
            "primary-key lookup, and each accepted login also writes `last_connected_at` (one "
            "SQLite UPDATE). Wharf's rate is about (the servers' cores) / (CPU per login), "
            "and the hash is most of that CPU: its cost shows up one for one in SFTP and FTPS password logins (peers.md, "
            "finding 6: pure-ftpd's argon2id default took ~2.7 s per login there). OpenSSH "
            "pays a fork and re-exec per connection plus one SHA-512-crypt (5000 rounds, a "
            "few ms); rclone compares a plain string, so its rate is about what the clients "
            "and the SSH handshake alone allow here.",
            "",
        ]
        cpu = {r["target"]: r for r in rows if r["test"] == "f-cpu" and r["median"] is not None}
        if "wharf-local" in cpu and "rclone-local" in cpu:
            w, rc = cpu["wharf-local"]["median"], cpu["rclone-local"]["median"]
            L += [f"In this run Wharf used {w:.1f} ms of CPU per login and rclone, whose "
                  f"handshake is similar but which checks no hash, {rc:.1f} ms: roughly "
                  f"{w - rc:.1f} ms per login is Wharf's password check (argon2id and the "
                  "database).", ""]
        L += [
            "Command (`$PORT`, `$USER`, `$PASSWORD`: the target's; `$STATE`: "
            f"`{STATE}`):", "", "```"] + commands + ["```", ""]

    L += [
        "## Raw results",
        "",
        "`benchmarks.json` (every row with each run's seconds or each round's value, the exact "
        "command and prepare step) and `benchmarks.csv` next to this file. The SFTP batch "
        "files the commands name (`$STATE/batch/*`) are one line each, e.g. `put "
        "$STATE/src/big.bin big.bin`, `get big.bin /dev/null`, `ls`; b) runs `-mkdir small`, "
        "`cd small`, `lcd $STATE/src/small`, `put *`. The FTPS c) files "
        "(`$STATE/batch/put_par_NN.lftp`) are one `put $STATE/src/conc-NN.bin -o "
        "conc-NN.bin` each.",
        "",
    ]
    (out_dir / "benchmarks.md").write_text("\n".join(L))
    meta = dict(started=started.isoformat(), elapsed_s=round(elapsed, 1), smoke=smoke,
                command=cmdline, machine=mach, versions=vers, load=loads,
                pinning=dict(servers=sorted(PINNING.servers) if PINNING.servers else None,
                             clients=sorted(PINNING.clients) if PINNING.clients else None,
                             autogroup=autogroup()),
                sizes=dataclasses.asdict(sizes), negotiated=negotiated, failures=failures)
    (out_dir / "benchmarks.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    cols = ["target", "server", "proto", "store", "test", "variant", "unit", "min", "median",
            "max", "mean", "runs", "status", "vs_best", "best_peer", "vs_reference", "reference",
            "command"]
    with open(out_dir / "benchmarks.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})
    plot(rows, targets, sizes, out_dir / "benchmarks.png", smoke)


def plot(rows, targets, sizes, path, smoke):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is missing: no plot")
        return
    index = {(r["target"], r["test"], r["variant"]): r for r in rows}
    big, n = human(sizes.big), sizes.conc_clients
    conc = f"{n} x {human(sizes.conc_size)}\nup, aggregate"
    small = f"{sizes.small_files} x {human(sizes.small_size)}\nup"
    # One row of panels per protocol: (title, [(y label, [(test, variant, x label)])]).
    layout = {
        "sftp": ("SFTP (OpenSSH sftp, key)", [
            ("MB/s (median; bars: min-max)", [
                ("a-up", "default cipher", f"{big} up\ndefault cipher"),
                ("a-up", "aes128-gcm", f"{big} up\naes128-gcm"),
                ("a-down", "default cipher", f"{big} down\ndefault cipher"),
                ("a-down", "aes128-gcm", f"{big} down\naes128-gcm"),
                ("c-conc", SftpClient.labels["c"].format(n=n), conc),
            ]),
            ("files/s", [("b-small", SftpClient.labels["b"], small)]),
            ("ms (lower is better)", [("d-login", SftpClient.labels["d"],
                                       "connect +\nauth + ls")]),
        ]),
        "ftps": ("FTPS (lftp, curl; explicit TLS, password)", [
            ("MB/s (median; bars: min-max)", [
                ("a-up", "lftp", f"{big} up\nlftp"),
                ("a-up", "curl", f"{big} up\ncurl"),
                ("a-down", "lftp", f"{big} down\nlftp"),
                ("a-down", "curl", f"{big} down\ncurl"),
                ("c-conc", FtpsClient.labels["c"].format(n=n), conc),
            ]),
            ("files/s", [("b-small", FtpsClient.labels["b"], small)]),
            ("ms (lower is better)", [("d-login", FtpsClient.labels["d"],
                                       "connect +\nauth + cls")]),
        ]),
    }
    colours = {"openssh-local": "#7f7f7f", "rclone-local": "#c7c7c7", "wharf-local": "#1f77b4",
               "rclone-s3": "#e0c090", "wharf-s3": "#ff7f0e", "proftpd-local": "#9467bd",
               "wharf-ftps-local": "#2ca02c"}
    protos = [p for p in layout if any(t.proto == p for t in targets)]
    if not protos:
        return
    fig, axes = plt.subplots(len(protos), 3, figsize=(14, 5 * len(protos)), squeeze=False,
                             gridspec_kw={"width_ratios": [5, 1.4, 1.4]})
    for row_axes, proto in zip(axes, protos):
        title, panels = layout[proto]
        names = [t.name for t in targets if t.proto == proto]
        width = 0.8 / max(1, len(names))
        for ax, (ylabel, tests) in zip(row_axes, panels):
            for i, name in enumerate(names):
                xs, ys, lo, hi = [], [], [], []
                for j, (test, variant, _) in enumerate(tests):
                    r = index.get((name, test, variant))
                    if r and r["median"] is not None:
                        xs.append(j + (i - (len(names) - 1) / 2) * width)
                        ys.append(r["median"])
                        lo.append(r["median"] - r["min"])
                        hi.append(r["max"] - r["median"])
                ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=name,
                       color=colours.get(name, "#999999"), edgecolor="black", linewidth=0.5)
            ax.set_xticks(range(len(tests)))
            ax.set_xticklabels([label for _, _, label in tests], fontsize=8)
            ax.set_ylabel(ylabel)
            ax.grid(axis="y", alpha=0.3)
        row_axes[0].set_title(title, fontsize=10, loc="left")
        row_axes[0].set_ylim(top=row_axes[0].get_ylim()[1] * 1.12)  # room for the legend
        row_axes[0].legend(fontsize=8, ncol=len(names), loc="upper left")
    title = "Wharf and its peers, same machine, same clients, one run"
    fig.suptitle(title + (" - SMOKE RUN, not for reading" if smoke else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one run, results in a temporary directory (CI)")
    parser.add_argument("--targets", help="comma-separated subset of: " + ",".join(TARGET_ORDER))
    parser.add_argument("--workloads", help="subset of the workloads, e.g. ad (default: all: "
                        + "".join(w.key for w in WORKLOADS) + ")")
    parser.add_argument("--out", help="where to write benchmarks.{md,json,csv,png} (default: "
                        "docs/, or a new temporary directory with --smoke, --targets or "
                        "--workloads)")
    parser.add_argument("--unpinned", action="store_true",
                        help="let servers and clients share every core (for comparison; the "
                        "default pins servers and clients to separate cores)")
    parser.add_argument("--server-cpus", help="cores for the servers, e.g. 0 or 0-1 (default: "
                        "the first half of this process's cores)")
    parser.add_argument("--client-cpus", help="cores for the clients (default: the other half)")
    parser.add_argument("--keep-state", action="store_true",
                        help=f"keep {STATE} (logs, batch files, data) after the run")
    args = parser.parse_args()
    argv = sys.argv[1:]
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (sshd's chroot and the `bench` system user)")
    if not WHARF.exists():
        raise SystemExit(f"bench: no Wharf binary at {WHARF}: run bench/run.sh, which builds it")
    wanted = args.targets.split(",") if args.targets else TARGET_ORDER
    unknown = set(wanted) - set(TARGET_ORDER)
    if unknown:
        raise SystemExit(f"bench: unknown target(s) {sorted(unknown)}")
    workloads = [w for w in WORKLOADS if not args.workloads or w.key in args.workloads]
    sizes = SMOKE if args.smoke else FULL
    # docs/ gets only complete full runs; a smoke or partial run goes to a temporary directory.
    partial = args.smoke or args.targets or args.workloads
    out_dir = Path(args.out) if args.out else (
        Path(tempfile.mkdtemp(prefix="wharf-bench-")) if partial else REPO / "docs")
    out_dir.mkdir(parents=True, exist_ok=True)

    # One benchmark at a time on this machine (same ports, same state directory).
    lock = open(f"{STATE}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"bench: another benchmark is running (lock {STATE}.lock)")

    # SIGTERM/SIGHUP end the run like Ctrl-C does: through the finally below, which stops
    # every server and removes the state.
    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    # e) holds hundreds of sessions: every server started from here inherits the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    global PINNING
    PINNING = Pinning.split(args.unpinned, args.server_cpus, args.client_cpus)
    if PINNING.clients:
        # Every client is a child of this process and inherits its cores.
        os.sched_setaffinity(0, PINNING.clients)
    log(f"cores: {PINNING.describe()}; scheduler autogroup {autogroup()}")

    started = datetime.datetime.now(datetime.timezone.utc)
    git_describe()
    t0 = time.time()
    load_start = load()
    servers = Servers()
    rows, failures, negotiated, targets = [], [], {}, []
    try:
        key = prepare_state()
        busy = [f"{n} {p}" for n, p in PORTS.items() if not port_free(p)]
        if busy:
            raise SystemExit(f"bench: port(s) in use on 127.0.0.1: {', '.join(busy)}")
        pubkey_file = STATE / "client" / "id_ed25519.pub"
        pubkey = pubkey_file.read_text()
        log(f"starting servers (state in {STATE})")
        targets = start_servers(servers, pubkey, pubkey_file, wanted)
        ctx = Context(sizes, key, {"sftp": SftpClient(key), "ftps": FtpsClient()})
        ctx.restart_wharf = lambda: restart_wharf(servers, targets)
        for t in targets:
            negotiated[t.name] = ctx.client(t).negotiated(t)
        ctx.make_sources()
        rows, failures = measure(ctx, targets, workloads)
    except BenchError as e:
        failures.append(str(e))
        log(f"FAILED: {e}")
        raise SystemExit(1)
    finally:
        servers.stop()
        if args.keep_state or failures:
            log(f"state (server logs in log/, hyperfine output, data) kept in {STATE}; "
                f"chroot in {CHROOT}")
        else:
            shutil.rmtree(STATE, ignore_errors=True)
            shutil.rmtree(CHROOT, ignore_errors=True)
        for old in SET_ASIDE:
            shutil.rmtree(old, ignore_errors=True)
    elapsed = time.time() - t0
    report(rows, failures, ctx, targets, negotiated, args.smoke, argv, out_dir, started,
           elapsed, (load_start, load()))
    print((out_dir / "benchmarks.md").read_text())
    log(f"done in {elapsed:.0f} s; results in {out_dir}/benchmarks.{{md,json,csv,png}}")
    if failures:
        log(f"{len(failures)} FAILURE(S):")
        for f in failures:
            log(f"  {f}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
