#!/usr/bin/env python3
"""Client side of Wharf's benchmark workloads (e) and (f), run by bench/bench.py as a child
process so that its threads and CPU stay out of the harness.

  hold    opens N authenticated sessions and keeps them idle: SFTP (paramiko, ed25519 key, the
          `sftp` subsystem open and one REALPATH answered) or FTPS (ftplib, explicit TLS,
          USER/PASS, PBSZ 0 / PROT P, PWD answered). Prints `ready N` once every session is
          open, then waits for a line on stdin (or its end) and exits at once, leaving the
          kernel to close the sockets (closing 500 sessions one by one would take longer than
          opening them).
  logins  W worker processes, each repeating connect + key exchange + password
          authentication + disconnect (no channel opened) for D seconds; prints one JSON
          object {"logins", "failures", "seconds", "first_error"}. Usernames are taken in
          turn from a list (`--users-file`) or are one name.

Every connection goes to 127.0.0.1. Nothing is retried: a failure is counted and reported.
"""

import argparse
import json
import multiprocessing
import os
import random
import socket
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def ftps_session(port, user, password):
    import ftplib
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    ftp = ftplib.FTP_TLS(context=context, timeout=60)
    ftp.connect("127.0.0.1", port)
    ftp.auth()
    ftp.login(user, password)
    ftp.prot_p()
    ftp.pwd()
    return ftp


def sftp_session(port, user, key):
    import paramiko
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.start_client(timeout=60)
    transport.auth_publickey(user, key)
    sftp = paramiko.SFTPClient.from_transport(transport)
    sftp.normalize(".")
    return transport, sftp


def hold(args):
    if args.proto == "sftp":
        import paramiko
        # Each paramiko Transport is a thread that wakes every 0.1 s to look for its stop
        # flag; 500 of them would keep a core busy while the server's memory is read.
        paramiko.Transport._active_check_timeout = 2.0
        key = paramiko.Ed25519Key.from_private_key_file(args.key)
        opener = lambda: sftp_session(args.port, args.user, key)  # noqa: E731
    else:
        opener = lambda: ftps_session(args.port, args.user, args.password)  # noqa: E731
    sessions, errors = [], []
    lock = threading.Lock()

    def open_one(_):
        try:
            s = opener()
            with lock:
                sessions.append(s)
        except Exception as e:  # noqa: BLE001 - reported, never retried
            with lock:
                errors.append(f"{type(e).__name__}: {e}")

    started = time.time()
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        list(pool.map(open_one, range(args.sessions)))
    if errors:
        print(f"failed {len(errors)} of {args.sessions} sessions; first: {errors[0]}",
              flush=True)
        os._exit(1)
    print(f"ready {len(sessions)} {time.time() - started:.1f}", flush=True)
    sys.stdin.readline()
    os._exit(0)


def login_worker(args, users, deadline, queue, seed):
    import paramiko
    rng = random.Random(seed)
    logins = failures = 0
    first_error = None
    while time.time() < deadline:
        user = users[rng.randrange(len(users))]
        transport = None
        try:
            sock = socket.create_connection(("127.0.0.1", args.port), timeout=30)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport = paramiko.Transport(sock)
            transport.start_client(timeout=30)
            transport.auth_password(user, args.password)
            if not transport.is_authenticated():
                raise RuntimeError("not authenticated")
            logins += 1
        except Exception as e:  # noqa: BLE001 - counted, never retried
            failures += 1
            first_error = first_error or f"{user}: {type(e).__name__}: {e}"
        finally:
            if transport is not None:
                transport.close()
    queue.put((logins, failures, first_error))


def logins(args):
    if args.users_file:
        with open(args.users_file) as f:
            users = [line.strip() for line in f if line.strip()]
    else:
        users = [args.user]
    queue = multiprocessing.Queue()
    start = time.time()
    deadline = start + args.seconds
    # A fresh seed per worker and per round: with fixed seeds every round logged in the same
    # users in the same order, and from the second round on Wharf answered them from its
    # cache of verified passwords instead of running argon2.
    workers = [multiprocessing.Process(target=login_worker,
                                       args=(args, users, deadline, queue,
                                             int.from_bytes(os.urandom(8), "little")))
               for _ in range(args.workers)]
    for w in workers:
        w.start()
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    # The last login of each worker may end after the deadline: divide by the real time.
    elapsed = time.time() - start
    print(json.dumps(dict(logins=sum(r[0] for r in results),
                          failures=sum(r[1] for r in results),
                          seconds=round(elapsed, 3),
                          first_error=next((r[2] for r in results if r[2]), None))))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    h = sub.add_parser("hold", help="open N idle sessions and keep them until stdin has a line")
    h.add_argument("--proto", choices=["sftp", "ftps"], required=True)
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--user", required=True)
    h.add_argument("--key", help="SFTP: the ed25519 private key")
    h.add_argument("--password", help="FTPS: the password")
    h.add_argument("--sessions", type=int, required=True)
    h.add_argument("--parallel", type=int, default=8, help="sessions being opened at once")
    g = sub.add_parser("logins", help="SFTP password logins per second")
    g.add_argument("--port", type=int, required=True)
    g.add_argument("--user", help="one username for every login")
    g.add_argument("--users-file", help="usernames, one a line, picked at random")
    g.add_argument("--password", required=True)
    g.add_argument("--workers", type=int, default=8)
    g.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    if args.command == "hold":
        hold(args)
    else:
        logins(args)


if __name__ == "__main__":
    main()
