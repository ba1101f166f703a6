#!/usr/bin/env python3
"""Wharf's benchmark: Wharf and its peers, side by side, in one run, with the same clients.

Started by `bench/run.sh` (which installs the peers and builds Wharf); see docs/benchmarks.md
for the method and the last results. Every peer listens on 127.0.0.1 (ports 24000-24999):

  openssh-local  OpenSSH sshd, `internal-sftp` in a chroot (/srv/wharf-bench), user `bench`
  rclone-local   `rclone serve sftp` on a local directory
  wharf-local    `wharf serve`, the default (local-disk) bucket
  rclone-s3      `rclone serve sftp` on a bucket of an s3s-fs server
  wharf-s3       `wharf serve`, a bucket on the same s3s-fs server

Workloads (OpenSSH's `sftp` client, key authentication, batch mode), timed by hyperfine:
  a) one big file up and down, MB/s, with the default cipher and with aes128-gcm
  b) many 4 KiB files up in one session, files/s
  c) concurrent clients each uploading one file, aggregate MB/s
  d) connect + authenticate + `ls`, ms

No figure here is asserted anywhere: the numbers are for reading, as ratios between servers
measured on the same machine in the same run.
"""

import argparse
import datetime
import json
import os
import platform
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
CHROOT = Path("/srv/wharf-bench")
USER, PASSWORD = "bench", "benchpass"
ADMIN_KEY = "wharf_bench_admin_key_0123456789abcdef0123"
S3_KEY, S3_SECRET = "bench-access-key", "bench-secret-key-0123456789"

PORTS = {
    "openssh-local": 24201,
    "rclone-local": 24203,
    "rclone-s3": 24204,
    "wharf": 24022,
    "wharf-api": 24080,
    "wharf-ftps": 24021,
    "s3s-fs": 24900,
}
GCM = "aes128-gcm@openssh.com"

FULL = dict(big=1 << 30, small_files=2000, small_size=4096, conc_clients=20,
            conc_size=50 << 20, runs=3, hs_runs=20, hs_warmup=2)
SMOKE = dict(big=8 << 20, small_files=50, small_size=4096, conc_clients=3,
             conc_size=2 << 20, runs=1, hs_runs=2, hs_warmup=0)


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(cmd, check=True, **kwargs):
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kwargs)


def wait_port(port, what, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")


class Peers:
    """Starts every server; stops them all on exit."""

    def __init__(self):
        self.processes = []

    def spawn(self, name, cmd, env=None):
        logf = open(STATE / "log" / f"{name}.log", "w")
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        self.processes.append((name, proc))
        return proc

    def stop(self):
        for name, proc in reversed(self.processes):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    proc.kill()


def prepare_state():
    if STATE.exists():
        shutil.rmtree(STATE)
    for d in ["log", "client", "etc", "rclone", "s3/bench-rclone", "s3/bench-wharf", "wharf",
              "src", "batch"]:
        (STATE / d).mkdir(parents=True, exist_ok=True)
    key = STATE / "client" / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(STATE / "etc" / "host_ed25519")])
    return key


def start_openssh(peers, pubkey):
    if run(["id", USER], check=False).returncode != 0:
        run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER])
    hashed = run(["openssl", "passwd", "-6", PASSWORD]).stdout.strip()
    run(["chpasswd", "-e"], input=f"{USER}:{hashed}\n")
    # sshd chroots only into root-owned directories that nobody else may write (not /tmp).
    if CHROOT.exists():
        shutil.rmtree(CHROOT)
    (CHROOT / "data").mkdir(parents=True)
    os.chmod(CHROOT, 0o755)
    shutil.chown(CHROOT / "data", USER, USER)
    keys = STATE / "etc" / "authorized_keys"
    keys.write_text(pubkey)
    os.chmod(keys, 0o644)
    Path("/run/sshd").mkdir(exist_ok=True)
    config = STATE / "etc" / "sshd_config"
    config.write_text(f"""Port {PORTS['openssh-local']}
ListenAddress 127.0.0.1
HostKey {STATE}/etc/host_ed25519
PidFile {STATE}/etc/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication yes
PubkeyAuthentication yes
AuthorizedKeysFile {keys}
MaxStartups 200:30:400
MaxSessions 100
Subsystem sftp internal-sftp
Match User {USER}
    ChrootDirectory {CHROOT}
    ForceCommand internal-sftp -d /data
""")
    peers.spawn("openssh", ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)])
    wait_port(PORTS["openssh-local"], "sshd")


def rclone_env():
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)  # breaks rclone's S3 backend at start (peers.md finding 8)
    env.update({
        "RCLONE_CONFIG_BENCHS3_TYPE": "s3",
        "RCLONE_CONFIG_BENCHS3_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCHS3_ENDPOINT": f"http://127.0.0.1:{PORTS['s3s-fs']}",
        "RCLONE_CONFIG_BENCHS3_ACCESS_KEY_ID": S3_KEY,
        "RCLONE_CONFIG_BENCHS3_SECRET_ACCESS_KEY": S3_SECRET,
        "RCLONE_CONFIG_BENCHS3_FORCE_PATH_STYLE": "true",
    })
    return env


def start_rclone(peers, name, remote, pubkey_file):
    peers.spawn(name, [
        "rclone", "serve", "sftp", remote, "--addr", f"127.0.0.1:{PORTS[name]}",
        "--user", USER, "--pass", PASSWORD, "--authorized-keys", str(pubkey_file),
        "--key", str(STATE / "etc" / "host_ed25519"), "--vfs-cache-mode", "off",
        "--config", "/dev/null",
    ], env=rclone_env())
    wait_port(PORTS[name], name)


def start_s3(peers):
    peers.spawn("s3s-fs", [
        "s3s-fs", "--host", "127.0.0.1", "--port", str(PORTS["s3s-fs"]),
        "--access-key", S3_KEY, "--secret-key", S3_SECRET, str(STATE / "s3"),
    ], env={**os.environ, "RUST_LOG": "warn"})
    wait_port(PORTS["s3s-fs"], "s3s-fs")


def api(method, path, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{PORTS['wharf-api']}{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Key {ADMIN_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def start_wharf(peers, pubkey):
    env = {**os.environ, "WHARF_ADMIN_API_KEY": ADMIN_KEY, "WHARF_LOG": "warn"}
    peers.spawn("wharf", [
        str(WHARF), "serve", "--data-dir", str(STATE / "wharf"),
        "--sftp-addr", f"127.0.0.1:{PORTS['wharf']}",
        "--api-addr", f"127.0.0.1:{PORTS['wharf-api']}",
        "--ftps-addr", f"127.0.0.1:{PORTS['wharf-ftps']}",
        "--ftps-passive-ports", "24500-24599",
    ], env=env)
    wait_port(PORTS["wharf-api"], "wharf API")
    wait_port(PORTS["wharf"], "wharf SFTP")
    api("POST", "/v1/buckets", {
        "bucketName": "bench-s3", "storageUrl": "s3://bench-wharf",
        "options": {"aws_endpoint": f"http://127.0.0.1:{PORTS['s3s-fs']}",
                    "aws_access_key_id": S3_KEY, "aws_secret_access_key": S3_SECRET,
                    "aws_region": "us-east-1"}})
    for username, bucket in [(USER, None), (USER + "-s3", "bench-s3")]:
        body = {"username": username, "description": "benchmark", "homeDirectory": f"/{username}",
                "publicKeys": [pubkey.strip()]}
        if bucket:
            body["bucketName"] = bucket
        api("POST", "/v1/users", body)


class Target:
    def __init__(self, name, port, user, store):
        self.name, self.port, self.user, self.store = name, port, user, store

    def sftp(self, key, batch, cipher=None):
        cmd = ["sftp", "-q", "-F", "/dev/null", "-i", str(key), "-P", str(self.port),
               "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
               "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "ControlMaster=no", "-o", "ControlPath=none"]
        if cipher:
            cmd += ["-c", cipher]
        return cmd + ["-b", str(batch), f"{self.user}@127.0.0.1"]


def shell(cmd):
    return " ".join(f"'{c}'" if any(ch in c for ch in " *;&|") else c for c in cmd)


def batch(name, text):
    path = STATE / "batch" / name
    path.write_text(text)
    return path


def random_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            f.write(chunk)
            left -= len(chunk)


def hyperfine(name, command, prepare, runs, warmup=0):
    out = STATE / "log" / f"{name}.json"
    cmd = ["hyperfine", "--style", "none", "--runs", str(runs), "--warmup", str(warmup),
           "--export-json", str(out), "--shell", "bash"]
    if prepare:
        cmd += ["--prepare", prepare + "; sleep 0.5"]
    cmd.append(command)
    result = run(cmd, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed: {result.stderr.strip()[-2000:]}")
    times = json.loads(out.read_text())["results"][0]["times"]
    return times


def verify(target, key):
    """A round trip compared byte for byte, so a broken target cannot produce figures."""
    src = STATE / "src" / "verify.bin"
    random_file(src, 16 << 20)
    back = STATE / "src" / f"verify-{target.name}.bin"
    b = batch(f"verify-{target.name}",
              f"put {src} verify.bin\nget verify.bin {back}\nrm verify.bin\n")
    result = run(target.sftp(key, b), check=False)
    if result.returncode != 0 or back.read_bytes() != src.read_bytes():
        raise SystemExit(f"{target.name}: the 16 MiB round trip failed: {result.stderr}")
    back.unlink()


def measure(targets, key, sizes, log_commands):
    src = STATE / "src"
    big = src / "big.bin"
    random_file(big, sizes["big"])
    small_dir = src / "small"
    small_dir.mkdir()
    for i in range(sizes["small_files"]):
        random_file(small_dir / f"f{i:05}.bin", sizes["small_size"])
    conc = []
    for i in range(sizes["conc_clients"]):
        path = src / f"conc-{i:02}.bin"
        random_file(path, sizes["conc_size"])
        conc.append(path)

    rows = []

    def record(target, test, variant, unit, values, runs):
        rows.append(dict(target=target.name, test=test, variant=variant, unit=unit,
                         min=min(values), median=statistics.median(values), max=max(values),
                         runs=runs))

    put_big = batch("put_big", f"put {big} big.bin\n")
    get_big = batch("get_big", "get big.bin /dev/null\n")
    rm_big = batch("rm_big", "-rm big.bin\n")
    put_small = batch("put_small", f"-mkdir small\ncd small\nlcd {small_dir}\nput *\n")
    rm_small = batch("rm_small", "-rm small/*\n-rmdir small\n")
    ls = batch("ls", "ls\n")
    rm_conc = batch("rm_conc", "".join(f"-rm conc-{i:02}.bin\n" for i in range(len(conc))))
    put_conc = [batch(f"put_conc_{i}", f"put {p} {p.name}\n") for i, p in enumerate(conc)]

    for target in targets:
        log(f"{target.name}: verifying a round trip")
        verify(target, key)
        for cipher, label in [(None, "default cipher"), (GCM, "aes128-gcm")]:
            log(f"{target.name}: a) {sizes['big'] >> 20} MiB up/down, {label}")
            up = shell(target.sftp(key, put_big, cipher))
            log_commands.append(up)
            times = hyperfine(f"{target.name}-a-up-{label}", up,
                              shell(target.sftp(key, rm_big)), sizes["runs"])
            record(target, "a-up", label, "MB/s", [sizes["big"] / t / 1e6 for t in times],
                   len(times))
            down = shell(target.sftp(key, get_big, cipher))
            log_commands.append(down)
            times = hyperfine(f"{target.name}-a-down-{label}", down, None, sizes["runs"])
            record(target, "a-down", label, "MB/s", [sizes["big"] / t / 1e6 for t in times],
                   len(times))
        log(f"{target.name}: b) {sizes['small_files']} x 4 KiB up")
        cmd = shell(target.sftp(key, put_small))
        log_commands.append(cmd)
        times = hyperfine(f"{target.name}-b", cmd, shell(target.sftp(key, rm_small)),
                          sizes["runs"])
        record(target, "b-small", "sftp put *", "files/s",
               [sizes["small_files"] / t for t in times], len(times))
        log(f"{target.name}: c) {len(conc)} concurrent uploads")
        cmd = " & ".join(shell(target.sftp(key, b)) + " >/dev/null" for b in put_conc) + " & wait"
        log_commands.append(cmd)
        times = hyperfine(f"{target.name}-c", cmd, shell(target.sftp(key, rm_conc)),
                          sizes["runs"])
        total = sizes["conc_size"] * len(conc)
        record(target, "c-conc", f"{len(conc)}x sftp put", "MB/s",
               [total / t / 1e6 for t in times], len(times))
        log(f"{target.name}: d) connect + auth + ls")
        cmd = shell(target.sftp(key, ls))
        log_commands.append(cmd)
        times = hyperfine(f"{target.name}-d", cmd, None, sizes["hs_runs"], sizes["hs_warmup"])
        record(target, "d-hs", "sftp ls", "ms", [t * 1000 for t in times], len(times))
    return rows


def generic_command(cmd):
    """A timed command with the target's port and user as variables, and a concurrent run as
    its first client plus `& … & wait`."""
    for port in PORTS.values():
        cmd = cmd.replace(f"-P {port} ", "-P $PORT ")
    cmd = cmd.replace(f"{USER}-s3@", "$USER@").replace(f"{USER}@", "$USER@")
    cmd = cmd.replace(str(STATE), "$STATE")
    if " & wait" in cmd:
        cmd = cmd.split(" & ")[0] + " & … (one per client) & wait"
    return cmd


def versions():
    def first_line(cmd):
        try:
            r = run(cmd, check=False)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "not found"
    return {
        "wharf": first_line([str(WHARF), "--version"]),
        "openssh-server": first_line(["dpkg-query", "-W", "-f", "${Version}", "openssh-server"]),
        "openssh client": first_line(["ssh", "-V"]),
        "rclone": first_line(["rclone", "version"]),
        "s3s-fs": first_line(["s3s-fs", "--version"]),
        "hyperfine": first_line(["hyperfine", "--version"]),
    }


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return (f"{os.cpu_count()} cores ({cpu}), {int(mem) // 1024 // 1024} GiB memory, "
            f"Linux {platform.release()}")


HIGHER_IS_BETTER = {"MB/s": True, "files/s": True, "ms": False}


def ratio(row, peer, unit):
    if not peer or not peer["median"]:
        return ""
    r = row["median"] / peer["median"]
    return f"{r:.2f}x"


def report(rows, sizes, smoke, log_commands, out_dir, started, elapsed):
    by = {(r["target"], r["test"], r["variant"]): r for r in rows}
    tests = []
    for r in rows:
        if (r["test"], r["variant"]) not in tests:
            tests.append((r["test"], r["variant"]))
    names = {"a-up": f"a) {sizes['big'] >> 20} MiB upload",
             "a-down": f"a) {sizes['big'] >> 20} MiB download",
             "b-small": f"b) {sizes['small_files']} files of 4 KiB, one session",
             "c-conc": f"c) {sizes['conc_clients']} clients x {sizes['conc_size'] >> 20} MiB "
                       "uploads, aggregate",
             "d-hs": "d) connect + authenticate + ls"}
    lines = [
        "# Benchmarks",
        "",
        "Wharf and its peers measured side by side in one run on one machine, with the same "
        "client (OpenSSH `sftp`, key authentication, batch mode). Each figure is the median of "
        "the runs, with the minimum and maximum in brackets; every timed run is a whole client "
        "process (start-up, connect, key exchange, authentication and the transfer). "
        "MB/s = 10^6 bytes per second. Client and servers share the machine's cores, so the "
        "figures rank servers against each other; they are not capacity figures.",
        "",
        f"- Produced by: `just bench` (`bench/run.sh{' --smoke' if smoke else ''}`), "
        f"{started:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.0f} minutes" +
        (" (SMOKE MODE: tiny sizes, one run; not for reading)" if smoke else ""),
        f"- Machine: {machine()}",
        "- Versions: " + "; ".join(f"{k} {v}" for k, v in versions().items()),
        "- Targets: `openssh-local` (sshd, internal-sftp in a chroot), `rclone-local` "
        "(`rclone serve sftp` on a directory), `wharf-local` (`wharf serve`, local-disk "
        "bucket); `rclone-s3` and `wharf-s3` on buckets of the same s3s-fs server "
        "(rclone with `--vfs-cache-mode off`, so an upload returns when the object is stored, "
        "as Wharf's does).",
        "- Ratios: Wharf's median over the best peer's median on the same store (local: the "
        "best of openssh-local and rclone-local; S3: rclone-s3), and on local disk also over "
        "openssh-local. Above 1.00x is better for throughput, below 1.00x for time (d).",
        "",
        "![throughput per target](benchmarks.png)",
        "",
    ]
    for test, variant in tests:
        unit = next(r["unit"] for r in rows if r["test"] == test)
        lines += [f"## {names[test]}, {variant} ({unit})", "",
                  "| target | median | min | max | runs | Wharf vs best peer | Wharf vs OpenSSH |",
                  "|---|---|---|---|---|---|---|"]
        higher = HIGHER_IS_BETTER[unit]
        for target in ["openssh-local", "rclone-local", "wharf-local", "rclone-s3", "wharf-s3"]:
            row = by.get((target, test, variant))
            if not row:
                continue
            vs_best = vs_ssh = ""
            if target.startswith("wharf"):
                store = target.split("-", 1)[1]
                peers = [by.get((p, test, variant)) for p in
                         (["openssh-local", "rclone-local"] if store == "local" else ["rclone-s3"])]
                peers = [p for p in peers if p]
                if peers:
                    best = (max if higher else min)(peers, key=lambda p: p["median"])
                    vs_best = f"{ratio(row, best, unit)} ({best['target']})"
                if store == "local":
                    vs_ssh = ratio(row, by.get(("openssh-local", test, variant)), unit)
            fmt = (lambda v: f"{v:.0f}") if unit != "ms" else (lambda v: f"{v:.1f}")
            lines.append(f"| {target} | **{fmt(row['median'])}** | {fmt(row['min'])} | "
                         f"{fmt(row['max'])} | {row['runs']} | {vs_best} | {vs_ssh} |")
        lines.append("")
    lines += ["## Exact commands", "",
              "Remote files are deleted in hyperfine's `--prepare` step before each timed run "
              "(followed by 0.5 s of rest). The timed commands:", "", "```"]
    seen = []
    for c in log_commands:
        c = generic_command(c)
        if c not in seen:
            seen.append(c)
    lines += seen
    lines += ["```", "", "Raw results: `benchmarks.json` next to this file.", ""]
    (out_dir / "benchmarks.md").write_text("\n".join(lines))
    (out_dir / "benchmarks.json").write_text(json.dumps(rows, indent=1))
    plot(rows, out_dir / "benchmarks.png")


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is missing: no plot")
        return
    tests = [("a-up", "aes128-gcm"), ("a-down", "aes128-gcm"), ("c-conc", None)]
    targets = ["openssh-local", "rclone-local", "wharf-local", "rclone-s3", "wharf-s3"]
    colours = ["#888888", "#bbbbbb", "#1f77b4", "#dddddd", "#4fa3e0"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.16
    for i, target in enumerate(targets):
        values = []
        for test, variant in tests:
            match = [r for r in rows if r["target"] == target and r["test"] == test and
                     (variant is None or r["variant"] == variant)]
            values.append(match[0]["median"] if match else 0)
        xs = [j + (i - 2) * width for j in range(len(tests))]
        ax.bar(xs, values, width, label=target, color=colours[i], edgecolor="black")
    ax.set_xticks(range(len(tests)))
    ax.set_xticklabels(["upload (aes128-gcm)", "download (aes128-gcm)",
                        "concurrent uploads (aggregate)"])
    ax.set_ylabel("MB/s (median)")
    ax.set_title("SFTP throughput, same machine, same client")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run (CI)")
    parser.add_argument("--targets", help="comma-separated subset of the targets to measure "
                        "(all peers are started anyway)")
    parser.add_argument("--out", help="where to write benchmarks.md/.json/.png "
                        "(default: docs/, or a temporary directory with --smoke)")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    out_dir = Path(args.out) if args.out else (
        Path(tempfile.mkdtemp(prefix="wharf-bench-")) if args.smoke else REPO / "docs")
    out_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise SystemExit("the benchmark starts sshd with a chroot: run it as root")
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.time()
    key = prepare_state()
    pubkey = (STATE / "client" / "id_ed25519.pub").read_text()
    pubkey_file = STATE / "client" / "id_ed25519.pub"
    peers = Peers()
    try:
        log("starting peers")
        start_openssh(peers, pubkey)
        start_s3(peers)
        start_rclone(peers, "rclone-local", str(STATE / "rclone"), pubkey_file)
        start_rclone(peers, "rclone-s3", "benchs3:bench-rclone", pubkey_file)
        start_wharf(peers, pubkey)
        targets = [
            Target("openssh-local", PORTS["openssh-local"], USER, "local"),
            Target("rclone-local", PORTS["rclone-local"], USER, "local"),
            Target("wharf-local", PORTS["wharf"], USER, "local"),
            Target("rclone-s3", PORTS["rclone-s3"], USER, "s3"),
            Target("wharf-s3", PORTS["wharf"], USER + "-s3", "s3"),
        ]
        if args.targets:
            wanted = args.targets.split(",")
            targets = [t for t in targets if t.name in wanted]
        commands = []
        rows = measure(targets, key, sizes, commands)
    finally:
        peers.stop()
    report(rows, sizes, args.smoke, commands, out_dir, started, time.time() - t0)
    log(f"results in {out_dir / 'benchmarks.md'}")
    print((out_dir / "benchmarks.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
