"""What partners' scripts do with paramiko beyond plain transfers: logins that retry, the
keyboard-interactive prompt, key-only users, files opened "r+b", and server-side checksums.

Usage: paramiko_partner.py PORT USERNAME PASSWORD CASE [KEY_FILE]
  logins       a mistyped password, then the right one, on one connection; after three
               failures the password methods are gone; the keyboard-interactive prompt works
  key-only     (a user with passwordEnabled false and the key KEY_FILE) the right password is
               refused and the password methods are no longer offered; the key logs in
  read-write   open(path, "r+b"): read, continue at the end, rewrite the start keeping the
               rest, read around what was written; the middle cannot be written
  checksums    check-file-name and check-file-handle (SFTPFile.check) against hashlib
Exits non-zero with a message on the first thing that is wrong; prints "partner: ok" at the end.
"""
import hashlib
import os
import sys

import paramiko
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY, int64


def transport(port):
    t = paramiko.Transport(("127.0.0.1", port))
    t.start_client(timeout=30)
    return t


def sftp_session(port, username, password):
    t = transport(port)
    t.auth_password(username, password)
    return t, paramiko.SFTPClient.from_transport(t)


def logins(port, username, password, _key):
    t = transport(port)
    try:
        t.auth_password(username, password + "-typo")
        raise AssertionError("a wrong password was accepted")
    except paramiko.BadAuthenticationType as e:
        raise AssertionError(f"password no longer offered after one typo: {e.allowed_types}")
    except paramiko.AuthenticationException:
        pass
    t.auth_password(username, password)
    assert t.is_authenticated(), "the right password after a typo"
    t.close()

    t = transport(port)
    for attempt in range(2):
        try:
            t.auth_password(username, f"wrong-{attempt}")
            raise AssertionError("a wrong password was accepted")
        except paramiko.BadAuthenticationType as e:
            raise AssertionError(f"attempt {attempt + 1}: methods {e.allowed_types}")
        except paramiko.AuthenticationException:
            pass
    # The third failure uses up the password attempts: its reply no longer offers them.
    try:
        t.auth_password(username, "wrong-2")
        raise AssertionError("a wrong password was accepted")
    except paramiko.BadAuthenticationType as e:
        assert "password" not in e.allowed_types, e.allowed_types
    try:
        t.auth_password(username, password)
        raise AssertionError("a fourth password attempt was accepted")
    except paramiko.BadAuthenticationType as e:
        assert "password" not in e.allowed_types, e.allowed_types
        assert "keyboard-interactive" not in e.allowed_types, e.allowed_types
        assert "publickey" in e.allowed_types, e.allowed_types
    t.close()

    prompts = []

    def answer(title, instructions, fields):
        prompts.extend(text for text, _echo in fields)
        return [password for _ in fields]

    t = transport(port)
    t.auth_interactive(username, answer)
    assert t.is_authenticated(), "keyboard-interactive"
    assert prompts == ["Password: "], prompts
    sftp = paramiko.SFTPClient.from_transport(t)
    sftp.listdir("/")
    t.close()


def key_only(port, username, password, key_file):
    t = transport(port)
    try:
        t.auth_password(username, password)
        raise AssertionError("a key-only user logged in with a password")
    except paramiko.BadAuthenticationType as e:
        assert e.allowed_types == ["publickey"], e.allowed_types
    key = paramiko.Ed25519Key.from_private_key_file(key_file)
    t.auth_publickey(username, key)
    assert t.is_authenticated(), "the key"
    t.close()


def read_write(port, username, password, _key):
    t, sftp = sftp_session(port, username, password)
    with sftp.open("/rw.bin", "wb") as f:
        f.write(b"0123456789")

    with sftp.open("/rw.bin", "r+b") as f:
        assert f.read(4) == b"0123", "read the existing bytes"
        f.seek(10)
        f.write(b"AB")
        f.flush()
        f.seek(2)
        assert f.read(3) == b"234", "read around what was written"
    back = sftp.open("/rw.bin", "rb").read()
    assert back == b"0123456789AB", f"continued: {back!r}"

    with sftp.open("/rw.bin", "r+b") as f:
        f.write(b"xy")
        f.flush()
        f.seek(5)
        assert f.read(2) == b"56", "the rest is still the old content"
        f.seek(0)
        try:
            f.read(2)
            raise AssertionError("read back unwritten data")
        except IOError:
            pass
    back = sftp.open("/rw.bin", "rb").read()
    assert back == b"xy23456789AB", f"rewritten start, rest kept: {back!r}"

    f = sftp.open("/rw.bin", "r+b")
    f.seek(5)
    try:
        f.write(b"!")
        f.flush()
        raise AssertionError("a write into the middle was accepted")
    except IOError as e:
        assert "middle" in str(e), str(e)
    f.close()
    back = sftp.open("/rw.bin", "rb").read()
    assert back == b"xy23456789AB", f"a refused write changed the file: {back!r}"

    # Opened and only read: nothing changes, not even the modification time.
    before = sftp.stat("/rw.bin").st_mtime
    with sftp.open("/rw.bin", "r+b") as f:
        assert f.read() == b"xy23456789AB"
    assert sftp.stat("/rw.bin").st_mtime == before

    try:
        sftp.open("/missing.bin", "r+b")
        raise AssertionError("r+b created a file")
    except FileNotFoundError:
        pass
    t.close()


def checksums(port, username, password, _key):
    t, sftp = sftp_session(port, username, password)
    data = os.urandom(3 * 1024 * 1024 + 11)
    with sftp.open("/sum.bin", "wb") as f:
        f.set_pipelined(True)
        f.write(data)

    t_, msg = sftp._request(
        CMD_EXTENDED, "check-file-name", "/sum.bin", "crc32,sha256,md5", int64(0), int64(0), 0
    )
    assert t_ == CMD_EXTENDED_REPLY, t_
    assert msg.get_text() == "check-file"
    assert msg.get_text() == "sha256", "the first algorithm of the list Wharf has"
    assert msg.get_remainder() == hashlib.sha256(data).digest(), "check-file-name sha256"

    with sftp.open("/sum.bin", "rb") as f:
        assert f.check("md5") == hashlib.md5(data).digest(), "check-file-handle md5"
        block = 1024 * 1024
        blocks = f.check("sha1", 0, 0, block)
        expected = b"".join(
            hashlib.sha1(data[i : i + block]).digest() for i in range(0, len(data), block)
        )
        assert blocks == expected, "digests per block"
        assert f.check("sha512", 100, 1000) == hashlib.sha512(data[100:1100]).digest()
    try:
        sftp._request(
            CMD_EXTENDED, "check-file-name", "/nope.bin", "sha256", int64(0), int64(0), 0
        )
        raise AssertionError("a missing file has a checksum")
    except FileNotFoundError:
        pass
    t.close()


def main() -> None:
    port, username, password, case = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    key = sys.argv[5] if len(sys.argv) > 5 else None
    {
        "logins": logins,
        "key-only": key_only,
        "read-write": read_write,
        "checksums": checksums,
    }[case](port, username, password, key)
    print("partner: ok")


if __name__ == "__main__":
    main()
