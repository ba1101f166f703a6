#!/usr/bin/env python3
"""Wharf's benchmark: Wharf and its peers side by side, in one run, with the same clients.

Started by `bench/run.sh` (`just bench`), which installs the peers and builds Wharf; run as
root (sshd chroots, a `bench` system user). Every server listens on 127.0.0.1, ports
24000-24099:

  openssh-local  OpenSSH sshd, `internal-sftp` in a root-owned chroot under /srv, user `bench`
  rclone-local   `rclone serve sftp` on a local directory
  wharf-local    `wharf serve`, user `bench` in the default (local-disk) bucket
  rclone-s3      `rclone serve sftp` on a bucket of an s3s-fs server (--vfs-cache-mode off)
  wharf-s3       the same `wharf serve`, user `bench-s3` in a bucket on the same s3s-fs server

Workloads (OpenSSH `sftp`, key authentication, batch mode), timed by hyperfine; every timed
run is a whole client process (start-up, connect, key exchange, authentication, transfer):

  a) one big file up and down, MB/s, with the default cipher and with aes128-gcm
  b) many 4 KiB files up in one session, files/s
  c) concurrent clients each uploading one file, aggregate MB/s
  d) connect + authenticate + `ls`, ms

Before a target is timed, a round trip through it is compared by SHA-256; after every upload
workload the remote sizes are checked. A broken target fails loudly: its remaining figures are
marked FAILED and the run exits non-zero.

Hooks for later (issue 8): workloads (e) server memory and (f) logins per second go into
WORKLOADS; FTPS targets (Wharf's FTPS gateway, ProFTPD) need a `start_*` function in
`start_servers`, a Target with proto "ftps" and the FtpsClient (lftp/curl) filled in. Each
workload names the protocols it runs on, and every client offers the same small interface.

No figure is asserted anywhere: the numbers are for reading, as ratios between servers measured
on the same machine in the same run.
"""

import argparse
import csv
import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import socket
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
# peers (ProFTPD's control port and passive range).
PORTS = {
    "openssh-local": 24001,
    "rclone-local": 24003,
    "rclone-s3": 24004,
    "s3s-fs": 24009,
    "wharf-ftps": 24021,
    "wharf-sftp": 24022,
    "wharf-ftps-implicit": 24023,
    "wharf-api": 24080,
}
WHARF_PASSIVE_PORTS = "24040-24059"
GCM = "aes128-gcm@openssh.com"

MiB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Sizes:
    big: int            # a) bytes of the one big file
    small_files: int    # b) how many files
    small_size: int     # b) bytes each
    conc_clients: int   # c) client processes at once
    conc_size: int      # c) bytes each client uploads
    runs: int           # timed runs of a)-c)
    hs_runs: int        # timed runs of d)
    hs_warmup: int      # untimed runs of d) first
    idle: float         # seconds of rest before every timed run
    verify: int         # bytes of the checked round trip (odd, spans several S3 parts)


FULL = Sizes(big=1024 * MiB, small_files=2000, small_size=4096, conc_clients=20,
             conc_size=50 * MiB, runs=3, hs_runs=20, hs_warmup=2, idle=0.5,
             verify=20 * MiB + 12345)
SMOKE = Sizes(big=8 * MiB, small_files=50, small_size=4096, conc_clients=3,
              conc_size=2 * MiB, runs=1, hs_runs=1, hs_warmup=0, idle=0.2,
              verify=9 * MiB + 12345)


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


class Servers:
    """Every server process the benchmark starts; all of them are stopped on exit. Their pids
    are recorded in the state directory so a run that was killed outright (SIGKILL) has its
    leftovers stopped by the next run, and nothing else."""

    def __init__(self):
        self.processes = []

    def spawn(self, name, cmd, env=None):
        logf = open(STATE / "log" / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes.append((name, proc))
        pids = {str(p.pid): " ".join(p.args) for _, p in self.processes}
        (STATE / "pids.json").write_text(json.dumps(pids))
        return proc

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


def prepare_state():
    stop_leftovers()
    if STATE.exists():
        shutil.rmtree(STATE)
    for d in ["log", "client", "etc", "rclone", f"s3/{S3_BUCKET_RCLONE}",
              f"s3/{S3_BUCKET_WHARF}", "wharf", "src", "batch", "hyperfine", "verify"]:
        (STATE / d).mkdir(parents=True, exist_ok=True)
    key = STATE / "client" / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wharf-bench", "-f", str(key)])
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wharf-bench-host",
         "-f", str(STATE / "etc" / "host_ed25519")])
    return key


def start_openssh(servers, pubkey):
    if run(["id", USER], check=False).returncode != 0:
        run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER])
    # SHA-512-crypt, as for every peer (peers.md, finding 6): logins compare on protocol work.
    hashed = run(["openssl", "passwd", "-6", PASSWORD]).stdout.strip()
    run(["chpasswd", "-e"], input=f"{USER}:{hashed}\n")
    if CHROOT.exists():
        shutil.rmtree(CHROOT)
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
    workloads log in with the key everywhere). maxSessions is raised from its default of 10
    to the most allowed, so c) runs 20 clients at once as on the peers."""
    env = {**os.environ, "WHARF_ADMIN_API_KEY": ADMIN_KEY, "WHARF_LOG": "warn"}
    for var in ["WHARF_DATABASE_URL", "WHARF_BUCKET_URL", "WHARF_DATA_DIR"]:
        env.pop(var, None)
    # A copy, so a build finishing elsewhere during the run cannot swap the binary under it.
    binary = STATE / "bin" / "wharf"
    binary.parent.mkdir(exist_ok=True)
    shutil.copy2(WHARF, binary)
    proc = servers.spawn("wharf", [
        str(binary), "serve", "--data-dir", str(STATE / "wharf"),
        "--sftp-addr", f"127.0.0.1:{PORTS['wharf-sftp']}",
        "--api-addr", f"127.0.0.1:{PORTS['wharf-api']}",
        "--ftps-addr", f"127.0.0.1:{PORTS['wharf-ftps']}",
        "--ftps-implicit-addr", f"127.0.0.1:{PORTS['wharf-ftps-implicit']}",
        "--ftps-passive-ports", WHARF_PASSIVE_PORTS,
    ], env=env)
    wait_port(PORTS["wharf-api"], "wharf API", proc)
    wait_port(PORTS["wharf-sftp"], "wharf SFTP", proc)
    if with_s3:
        api("POST", "/v1/buckets", {
            "bucketName": "bench-s3", "storageUrl": f"s3://{S3_BUCKET_WHARF}",
            "options": {"aws_endpoint": f"http://127.0.0.1:{PORTS['s3s-fs']}",
                        "aws_access_key_id": S3_KEY, "aws_secret_access_key": S3_SECRET,
                        "aws_region": "us-east-1"}})
    for username, bucket in [(USER, None)] + ([(USER + "-s3", "bench-s3")] if with_s3 else []):
        body = {"username": username, "description": "benchmark", "homeDirectory": f"/{username}",
                "publicKeys": [pubkey.strip()], "maxSessions": 1000}
        if bucket:
            body["bucketName"] = bucket
        api("POST", "/v1/users", body)
    return proc


# --------------------------------------------------------------------------------------------
# Targets and clients


@dataclasses.dataclass
class Target:
    name: str       # as in the tables: <server>-<store>
    server: str     # openssh, rclone, wharf (later: proftpd, wharf-ftps, ...)
    proto: str      # sftp (later: ftps)
    store: str      # local or s3
    port: int
    user: str
    pid: int = 0    # the serving process, for the memory workload (e) to come

    @property
    def is_wharf(self):
        return self.server.startswith("wharf")


# The reference peer that issue 8 states Wharf's targets against, per (proto, store). The
# ratio to the best peer of the same (proto, store) is always shown as well.
REFERENCE = {("sftp", "local"): "openssh-local", ("sftp", "s3"): "rclone-s3"}
# Later: ("ftps", "local"): "proftpd-local".

TARGET_ORDER = ["openssh-local", "rclone-local", "wharf-local", "rclone-s3", "wharf-s3"]


def start_servers(servers, pubkey, pubkey_file, wanted):
    """Starts the servers behind the wanted targets and returns the targets. An FTPS peer is
    one more `start_*` function and Target here (proto "ftps")."""
    targets = []
    need = lambda *names: any(n in wanted for n in names)  # noqa: E731
    if need("openssh-local"):
        p = start_openssh(servers, pubkey)
        targets.append(Target("openssh-local", "openssh", "sftp", "local",
                              PORTS["openssh-local"], USER, p.pid))
    if need("rclone-s3", "wharf-s3"):
        start_s3(servers)
    if need("rclone-local"):
        p = start_rclone(servers, "rclone-local", str(STATE / "rclone"), pubkey_file)
        targets.append(Target("rclone-local", "rclone", "sftp", "local",
                              PORTS["rclone-local"], USER, p.pid))
    if need("wharf-local", "wharf-s3"):
        p = start_wharf(servers, pubkey, with_s3=need("wharf-s3"))
        targets.append(Target("wharf-local", "wharf", "sftp", "local", PORTS["wharf-sftp"],
                              USER, p.pid))
        targets.append(Target("wharf-s3", "wharf", "sftp", "s3", PORTS["wharf-sftp"],
                              USER + "-s3", p.pid))
    if need("rclone-s3"):
        p = start_rclone(servers, "rclone-s3", f"benchs3:{S3_BUCKET_RCLONE}", pubkey_file)
        targets.append(Target("rclone-s3", "rclone", "sftp", "s3", PORTS["rclone-s3"], USER,
                              p.pid))
    targets = [t for t in targets if t.name in wanted]
    return sorted(targets, key=lambda t: TARGET_ORDER.index(t.name))


class SftpClient:
    """OpenSSH's `sftp` in batch mode (`-b`), key authentication, no config file, no
    multiplexing. Every method returns the shell command of one client process; batch files
    are written under $STATE/batch and are the same for every target (paths are relative to
    the login directory)."""

    proto = "sftp"

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
    """Hook for the FTPS targets (issue 8): the same interface as SftpClient, with curl and
    lftp as the variants (peers.md, method: `curl --ssl-reqd -T` / `-o /dev/null`, `lftp put`
    / `get -o /dev/null`, `lftp mirror -R` for b), `curl -T` x N for c), `lftp cls` and
    `curl -l` for d)). Not implemented yet."""

    proto = "ftps"

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("FTPS targets are not benchmarked yet")


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
        `idle` seconds of rest. Returns one result row; to_value turns seconds into the
        figure."""
        runs = runs or self.sizes.runs
        slug = f"{target.name}-{test}-{variant}".replace(" ", "_").replace("*", "x")
        out = STATE / "hyperfine" / f"{slug}.json"
        full_prepare = (f"{prepare} >/dev/null 2>&1; " if prepare else "") + \
            f"sleep {self.sizes.idle}"
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
    """The command with this target's port, user and the state directory as variables."""
    return (command.replace(f"-P {target.port} ", "-P $PORT ")
            .replace(f"{target.user}@127.0.0.1", "$USER@127.0.0.1")
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


def wl_small(ctx, target):
    """b) every small file up in one session."""
    c, n = ctx.client(target), ctx.sizes.small_files
    rm = c.remove(target, ["small/*"], ["small"])
    ctx.time(target, "b-small", "sftp put *", "files/s",
             c.put_dir(target, ctx.small_dir, "small"), lambda s: n / s, prepare=rm,
             budget=60 + n / 5)
    ctx.expect_sizes(target, "small", {f"f{i:05}.bin": ctx.sizes.small_size for i in range(n)})
    ctx.untimed(target, rm, "cleaning up", timeout=60 + n / 2)


def wl_concurrent(ctx, target):
    """c) N client processes at once, each uploading its own file; aggregate MB/s."""
    c, s = ctx.client(target), ctx.sizes
    files = [(p, p.name) for p in ctx.conc]
    rm = c.remove(target, [name for _, name in files])
    total = s.conc_size * s.conc_clients
    ctx.time(target, "c-conc", f"{s.conc_clients} x sftp put", "MB/s",
             c.put_parallel(target, files), lambda sec: total / sec / 1e6, prepare=rm,
             budget=60 + total / 2e6)
    ctx.expect_sizes(target, ".", {name: s.conc_size for _, name in files})
    ctx.untimed(target, rm, "cleaning up")


def wl_handshake(ctx, target):
    """d) connect + key exchange + authenticate + list the (empty) login directory."""
    c = ctx.client(target)
    ctx.time(target, "d-login", "sftp ls", "ms", c.listing(target), lambda s: s * 1000,
             runs=ctx.sizes.hs_runs, warmup=ctx.sizes.hs_warmup, budget=60)


@dataclasses.dataclass(frozen=True)
class Workload:
    key: str
    title: str
    protos: frozenset
    run: object


WORKLOADS = [
    Workload("a", "one big file up and down", frozenset({"sftp"}), wl_big),
    Workload("b", "small files up, one session", frozenset({"sftp"}), wl_small),
    Workload("c", "concurrent uploads", frozenset({"sftp"}), wl_concurrent),
    Workload("d", "connect + authenticate + ls", frozenset({"sftp"}), wl_handshake),
    # To come (issue 8), same shape:
    # Workload("e", "resident memory, 500 idle sessions / 20 active uploads",
    #          frozenset({"sftp", "ftps"}), wl_memory),   # reads /proc/<target.pid>/status
    # Workload("f", "password logins/s, 100,000 users", frozenset({"sftp", "ftps"}), wl_logins),
]

# How each test is titled and which way is better.
TESTS = {
    "a-up": ("a) {big} upload", True),
    "a-down": ("a) {big} download", True),
    "b-small": ("b) {small_files} files of {small_size} up, one session", True),
    "c-conc": ("c) {conc_clients} clients each uploading {conc_size}, aggregate", True),
    "d-login": ("d) connect + authenticate + ls", False),
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
                                 conc_size=human(sizes.conc_size))


def heading(test, variant, sizes):
    """A test's title, with the variant where a test has several (the ciphers of a)."""
    title = test_title(test, sizes)
    return f"{title}, {variant}" if test.startswith("a-") else title


def fmt(value, unit):
    if value is None:
        return "—"
    return f"{value:.1f}" if unit == "ms" else f"{value:.0f}"


def measure(ctx, targets, workloads):
    """Every workload on every target, target after target. A failure ends that target's
    run (its remaining figures are marked FAILED); the other targets still run."""
    failures = []
    for target in targets:
        plan = [w for w in workloads if target.proto in w.protos]
        try:
            verify(ctx, target)
        except BenchError as e:
            failures.append(str(e))
            log(f"FAILED: {e}")
            ctx.rows += failed_rows(target, plan, ctx, "round trip failed", ctx.rows)
            continue
        for i, w in enumerate(plan):
            try:
                w.run(ctx, target)
            except BenchError as e:
                failures.append(str(e))
                log(f"FAILED: {e}")
                ctx.rows += failed_rows(target, plan[i:], ctx, str(e)[:200], ctx.rows)
                break
    return ctx.rows, failures


def failed_rows(target, workloads, ctx, why, done):
    """FAILED rows for every test of the given workloads that has no result yet."""
    have = {(r["target"], r["test"], r["variant"]) for r in done}
    c = ctx.client(target)
    s = ctx.sizes
    tests = {
        "a": [(t, label, "MB/s") for label, _ in c.variants() for t in ("a-up", "a-down")],
        "b": [("b-small", "sftp put *", "files/s")],
        "c": [("c-conc", f"{s.conc_clients} x sftp put", "MB/s")],
        "d": [("d-login", "sftp ls", "ms")],
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


def versions():
    def dpkg(pkg):
        return first_line(["dpkg-query", "-W", "-f", "${Version}", pkg])
    git = first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"])
    profile = "debug build" if "/debug/" in str(WHARF) else "release build"
    try:
        import matplotlib
        mpl = matplotlib.__version__
    except ImportError:
        mpl = "not installed"
    return {
        "wharf": f"{first_line([str(WHARF), '--version'])} (commit {git}, {profile}, {WHARF})",
        "OpenSSH sshd (openssh-server)": dpkg("openssh-server"),
        "OpenSSH sftp client (openssh-client)": f"{dpkg('openssh-client')}; "
                                                f"{first_line(['ssh', '-V'])}",
        "rclone": f"{first_line(['rclone', 'version'])} (Debian {dpkg('rclone')})",
        "s3s-fs": first_line(["s3s-fs", "--version"]),
        "hyperfine": first_line(["hyperfine", "--version"]),
        "python": platform.python_version(),
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
                 and p["median"]]
        if peers:
            best = (max if higher else min)(peers, key=lambda p: p["median"])
            r["vs_best"], r["best_peer"] = r["median"] / best["median"], best["target"]
        ref = REFERENCE.get((r["proto"], r["store"]))
        ref_row = index.get((ref, r["test"], r["variant"]))
        if ref_row and ref_row["median"]:
            r["vs_reference"], r["reference"] = r["median"] / ref_row["median"], ref


def ratio(x):
    return "" if x is None else f"{x:.2f}x"


def report(rows, failures, ctx, targets, negotiated, smoke, argv, out_dir, started, elapsed,
           loads):
    sizes = ctx.sizes
    compare(rows)
    mach = machine()
    vers = versions()
    tests = []
    for r in rows:
        if (r["test"], r["variant"]) not in tests:
            tests.append((r["test"], r["variant"]))
    tests.sort(key=lambda tv: list(TESTS).index(tv[0]))
    cmdline = "just bench" + (" " + " ".join(argv) if argv else "")
    L = [
        "# Benchmarks",
        "",
        "Wharf and its peers measured side by side in one run on one machine, with the same "
        "client (OpenSSH `sftp`, key authentication, batch mode). Each figure is the median "
        "of the timed runs, with the minimum and maximum; every timed run is a whole client "
        "process (start-up, TCP connect, key exchange, authentication and the transfer). "
        "MB/s = 10^6 bytes per second. Client and servers share the machine's cores, so the "
        "figures rank servers against each other; they are not capacity figures.",
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
        f"- Load average (1, 5, 15 min) at the start: {loads[0]}; at the end: {loads[1]}. "
        "Other work on the machine shows up as noise.",
        "- Versions: " + "; ".join(f"{k}: {v}" for k, v in vers.items()) + ".",
        f"- Sizes: a) {human(sizes.big)}; b) {sizes.small_files:,} x {human(sizes.small_size)}; "
        f"c) {sizes.conc_clients} x {human(sizes.conc_size)}; {sizes.runs} timed run(s) each; "
        f"d) {sizes.hs_runs} timed runs after {sizes.hs_warmup} warm-up run(s).",
        "",
        "## Targets",
        "",
        "All on 127.0.0.1, user `bench` (`bench-s3` on wharf-s3); every workload logs in with "
        "the ed25519 key `$STATE/client/id_ed25519` (the peers also take the password "
        "`benchpass`, stored as a SHA-512-crypt hash). What the OpenSSH client negotiates with "
        "each by default (`sftp -v`):",
        "",
        "| target | server | store | port | kex | host key | default cipher | MAC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    descr = {
        "openssh-local": "sshd, `internal-sftp` in a chroot (`/srv/wharf-bench`)",
        "rclone-local": "`rclone serve sftp` on a directory",
        "wharf-local": "`wharf serve`, default bucket (`file://`)",
        "rclone-s3": "`rclone serve sftp` on s3s-fs, `--vfs-cache-mode off`",
        "wharf-s3": "`wharf serve`, bucket `s3://bench-wharf` on s3s-fs",
    }
    for t in targets:
        n = negotiated.get(t.name, {})
        cells = [f"`{n[k]}`" if n.get(k) else "?" for k in ("kex", "host key", "cipher", "mac")]
        L.append(f"| {t.name} | {descr.get(t.name, t.server)} | {t.store} | {t.port} | "
                 + " | ".join(cells) + " |")
    L += [
        "",
        "rclone-s3 and wharf-s3 use two buckets of the same s3s-fs server (port "
        f"{PORTS['s3s-fs']}); with `--vfs-cache-mode off` rclone's upload returns when the "
        "object is stored, as Wharf's does.",
        "",
        "## Method",
        "",
        f"Before a target is timed, a {sizes.verify:,}-byte file goes up and back down and is "
        "compared by SHA-256; after each upload workload the remote sizes are checked "
        "(`ls -ln`). Remote files are deleted in hyperfine's `--prepare` step before each "
        f"timed run, followed by {sizes.idle} s of rest; each workload leaves the login "
        "directory empty. Each timing is",
        "",
        "```",
        f"hyperfine --style none --shell bash --runs N --warmup W --prepare '<delete>; "
        f"sleep {sizes.idle}' --export-json X.json '<timed command>'",
        "```",
        "",
        "Ratios: Wharf's median over the best peer's median for the same protocol, store, test "
        "and cipher (local disk: the best of openssh-local and rclone-local; S3: rclone-s3), "
        "and on local disk also over openssh-local (issue 8's targets are stated against it). "
        "Above 1.00x is better for throughput, below 1.00x is better for time (d).",
        "",
        "![throughput per target](benchmarks.png)",
        "",
        "## Summary (medians, Wharf over peer)",
        "",
        "| test | wharf-local vs best local peer | wharf-local vs openssh-local | "
        "wharf-s3 vs rclone-s3 |",
        "|---|---|---|---|",
    ]
    index = {(r["target"], r["test"], r["variant"]): r for r in rows}
    for test, variant in tests:
        wl, ws = index.get(("wharf-local", test, variant)), index.get(("wharf-s3", test, variant))
        cell = lambda r, k: ratio(r[k]) if r else ""  # noqa: E731
        best = f"{cell(wl, 'vs_best')} ({wl['best_peer']})" if wl and wl["best_peer"] else ""
        L.append(f"| {heading(test, variant, sizes)} | {best} | "
                 f"{cell(wl, 'vs_reference')} | {cell(ws, 'vs_best')} |")
    L.append("")
    for test, variant in tests:
        unit = next(r["unit"] for r in rows if r["test"] == test)
        L += [f"## {heading(test, variant, sizes)} ({unit})", "",
              "| target | median | min | max | runs | Wharf vs best peer | Wharf vs OpenSSH |",
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
                     f"{ratio(r['vs_reference']) if r['reference'] == 'openssh-local' else ''} |")
            if r["template"] not in templates:
                templates.append(r["template"])
        L += ["", "Timed command (`$PORT`, `$USER`: the target's; `$STATE`: "
              f"`{STATE}`):", "", "```"] + templates + ["```", ""]
    L += [
        "## Raw results",
        "",
        "`benchmarks.json` (every row with each run's seconds, the exact command and prepare "
        "step) and `benchmarks.csv` next to this file. The batch files the commands name "
        "(`$STATE/batch/*`) are one line each, e.g. `put $STATE/src/big.bin big.bin`, "
        "`get big.bin /dev/null`, `ls`; b) runs `-mkdir small`, `cd small`, `lcd "
        "$STATE/src/small`, `put *`.",
        "",
    ]
    (out_dir / "benchmarks.md").write_text("\n".join(L))
    meta = dict(started=started.isoformat(), elapsed_s=round(elapsed, 1), smoke=smoke,
                command=cmdline, machine=mach, versions=vers, load=loads,
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
    panels = [
        ("MB/s (median; bars: min-max)", [
            ("a-up", "default cipher", f"{human(sizes.big)} up\ndefault cipher"),
            ("a-up", "aes128-gcm", f"{human(sizes.big)} up\naes128-gcm"),
            ("a-down", "default cipher", f"{human(sizes.big)} down\ndefault cipher"),
            ("a-down", "aes128-gcm", f"{human(sizes.big)} down\naes128-gcm"),
            ("c-conc", f"{sizes.conc_clients} x sftp put",
             f"{sizes.conc_clients} x {human(sizes.conc_size)}\nup, aggregate"),
        ]),
        ("files/s", [("b-small", "sftp put *",
                      f"{sizes.small_files} x {human(sizes.small_size)}\nup")]),
        ("ms (lower is better)", [("d-login", "sftp ls", "connect +\nauth + ls")]),
    ]
    colours = {"openssh-local": "#7f7f7f", "rclone-local": "#c7c7c7", "wharf-local": "#1f77b4",
               "rclone-s3": "#e0c090", "wharf-s3": "#ff7f0e"}
    fig, axes = plt.subplots(1, 3, figsize=(14, 5), gridspec_kw={"width_ratios": [5, 1.4, 1.4]})
    names = [t.name for t in targets]
    width = 0.8 / max(1, len(names))
    for ax, (ylabel, tests) in zip(axes, panels):
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
    axes[0].set_ylim(top=axes[0].get_ylim()[1] * 1.12)  # room for the legend
    axes[0].legend(fontsize=8, ncol=len(names), loc="upper left")
    title = "SFTP, same machine, same client (OpenSSH sftp), one run"
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

    started = datetime.datetime.now(datetime.timezone.utc)
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
        ctx = Context(sizes, key, {"sftp": SftpClient(key)})
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
