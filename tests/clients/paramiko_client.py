"""Drives a Wharf SFTP server with paramiko (a real third-party client).

Usage: paramiko_client.py PORT USERNAME PASSWORD
Exits non-zero with a message on the first thing that is wrong.
"""
import hashlib
import os
import sys

import paramiko


def main() -> None:
    port, username, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.connect(username=username, password=password)
    sftp = paramiko.SFTPClient.from_transport(transport)

    # Round trip with checksums.
    data = os.urandom(1024 * 1024 + 7)
    with sftp.open("/paramiko.bin", "wb") as f:
        f.set_pipelined(True)
        f.write(data)
    with sftp.open("/paramiko.bin", "rb") as f:
        f.prefetch()
        back = f.read()
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest(), "round trip differs"
    assert sftp.stat("/paramiko.bin").st_size == len(data), "stat size"

    # Append mode, twice: each open continues the file.
    with sftp.open("/log.txt", "a") as f:
        f.write(b"line 1\n")
    with sftp.open("/log.txt", "a") as f:
        f.write(b"line 2\n")
    with sftp.open("/log.txt", "r") as f:
        got = f.read()
    assert got == b"line 1\nline 2\n", f"append gave {got!r}"

    # Directories, rename, listing, remove.
    sftp.mkdir("/dir")
    sftp.rename("/paramiko.bin", "/dir/moved.bin")
    names = sorted(sftp.listdir("/dir"))
    assert names == ["moved.bin"], names
    sftp.remove("/dir/moved.bin")
    sftp.rmdir("/dir")
    assert "dir" not in sftp.listdir("/"), "rmdir"
    try:
        sftp.stat("/../../etc/passwd")
        raise AssertionError("escaped the home directory")
    except FileNotFoundError:
        pass

    sftp.close()
    transport.close()
    print("paramiko: ok")


if __name__ == "__main__":
    main()
