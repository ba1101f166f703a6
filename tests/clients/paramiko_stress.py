"""Pushes a Wharf SFTP server the way lazy pipelining clients do, with paramiko's own request
machinery (default window and packet sizes).

Usage: paramiko_stress.py PORT USERNAME PASSWORD CASE
  burst-writes  5,000 WRITEs of 32 KiB on one handle before reading any reply
  burst-reads   5,000 READs of 32 KiB before reading any reply
  every-n       WRITEs and READs, reading the replies only after every 700 requests
Exits non-zero with a message on the first thing that is wrong; prints "stress: ok" at the end.
"""
import hashlib
import os
import sys

import paramiko
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_DATA,
    CMD_OPEN,
    CMD_READ,
    CMD_STATUS,
    CMD_WRITE,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes

CHUNK = 32 * 1024
REQUESTS = 5000
# SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_TRUNC, and SSH_FXF_READ.
WRITE_FLAGS = 0x02 | 0x08 | 0x10
READ_FLAGS = 0x01


def open_handle(sftp, path, flags):
    t, msg = sftp._request(CMD_OPEN, path, flags, SFTPAttributes())
    return msg.get_binary()


def close_handle(sftp, handle):
    sftp._request(CMD_CLOSE, handle)


def expect_status_ok(sftp, num):
    t, msg = sftp._read_response(num)
    assert t == CMD_STATUS, f"request {num}: reply type {t}"


def send_writes(sftp, handle, data, first, count):
    """Sends `count` WRITEs of CHUNK bytes from chunk `first` on; returns their request ids."""
    nums = []
    for i in range(first, first + count):
        block = data[i * CHUNK:(i + 1) * CHUNK]
        nums.append(sftp._async_request(type(None), CMD_WRITE, handle, int64(i * CHUNK), block))
    return nums


def send_reads(sftp, handle, first, count, total):
    nums = []
    for i in range(first, first + count):
        offset = (i * CHUNK) % total
        nums.append(sftp._async_request(type(None), CMD_READ, handle, int64(offset), CHUNK))
    return nums


def read_data(sftp, num):
    t, msg = sftp._read_response(num)
    assert t == CMD_DATA, f"request {num}: reply type {t}"
    return msg.get_string()


def burst_writes(sftp):
    data = os.urandom(REQUESTS * CHUNK)
    handle = open_handle(sftp, "/burst.bin", WRITE_FLAGS)
    nums = send_writes(sftp, handle, data, 0, REQUESTS)
    for num in nums:
        expect_status_ok(sftp, num)
    close_handle(sftp, handle)
    check_file(sftp, "/burst.bin", data)


def burst_reads(sftp):
    data = os.urandom(64 * CHUNK)
    with sftp.open("/source.bin", "wb") as f:
        f.write(data)
    handle = open_handle(sftp, "/source.bin", READ_FLAGS)
    nums = send_reads(sftp, handle, 0, REQUESTS, len(data))
    for i, num in enumerate(nums):
        offset = (i * CHUNK) % len(data)
        got = read_data(sftp, num)
        assert got == data[offset:offset + CHUNK], f"read {i} returned other bytes"
    close_handle(sftp, handle)


def every_n(sftp):
    n = 700
    data = os.urandom(REQUESTS * CHUNK)
    handle = open_handle(sftp, "/every.bin", WRITE_FLAGS)
    for first in range(0, REQUESTS, n):
        for num in send_writes(sftp, handle, data, first, min(n, REQUESTS - first)):
            expect_status_ok(sftp, num)
    close_handle(sftp, handle)
    check_file(sftp, "/every.bin", data)
    handle = open_handle(sftp, "/every.bin", READ_FLAGS)
    for first in range(0, REQUESTS, n):
        count = min(n, REQUESTS - first)
        nums = send_reads(sftp, handle, first, count, len(data))
        for i, num in zip(range(first, first + count), nums):
            got = read_data(sftp, num)
            assert got == data[i * CHUNK:(i + 1) * CHUNK], f"read {i} returned other bytes"
    close_handle(sftp, handle)


def check_file(sftp, path, data):
    assert sftp.stat(path).st_size == len(data), f"{path}: size"
    with sftp.open(path, "rb") as f:
        f.prefetch()
        back = f.read()
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest(), f"{path} differs"


def main() -> None:
    port, username, password, case = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    transport = paramiko.Transport(("127.0.0.1", port))
    transport.connect(username=username, password=password)
    sftp = paramiko.SFTPClient.from_transport(transport)
    {"burst-writes": burst_writes, "burst-reads": burst_reads, "every-n": every_n}[case](sftp)
    sftp.close()
    transport.close()
    print("stress: ok")


if __name__ == "__main__":
    main()
