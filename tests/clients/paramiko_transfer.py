"""Uploads and downloads files with paramiko's own put() and get(), as Airflow's SFTP hook and
countless scripts do: default window and packet sizes, pipelined writes, prefetched reads.

Usage: paramiko_transfer.py PORT USERNAME PASSWORD FILE...
Each FILE goes to /<its name> and comes back as FILE.back; sizes and SHA-256 must match.
Exits non-zero with a message on the first thing that is wrong; prints "transfer: ok" at the end.
"""
import hashlib
import os
import sys
import time

import paramiko


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    port, username, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.connect(username=username, password=password)
    sftp = paramiko.SFTPClient.from_transport(transport)
    for local in sys.argv[4:]:
        remote = "/" + os.path.basename(local)
        size = os.path.getsize(local)
        started = time.monotonic()
        attrs = sftp.put(local, remote)
        assert attrs.st_size == size, f"{remote}: stat after put says {attrs.st_size}"
        uploaded = time.monotonic()
        sftp.get(remote, local + ".back")
        downloaded = time.monotonic()
        assert os.path.getsize(local + ".back") == size, f"{remote}: downloaded size"
        assert sha256(local + ".back") == sha256(local), f"{remote}: came back different"
        print(
            f"{remote}: {size} bytes up in {uploaded - started:.1f} s, "
            f"down in {downloaded - uploaded:.1f} s"
        )
    sftp.close()
    transport.close()
    print("transfer: ok")


if __name__ == "__main__":
    main()
