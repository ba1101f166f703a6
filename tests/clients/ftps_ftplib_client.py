"""Drives a Wharf FTPS server with Python's ftplib.FTP_TLS (a real third-party client).

Usage: ftps_ftplib_client.py MODE PORT USERNAME PASSWORD
  MODE full        everything a read-write user does (round trips, listings, resume, rename,
                   delete, directories, escape attempts, refusals)
  MODE read-only   what a read-only user may and may not do (expects /seed.txt to exist)
  MODE write-only  what a write-only user may and may not do
  MODE limit       the user has maxSessions 1: a second session is refused while one is open
Exits non-zero with a message on the first thing that is wrong.
"""
import ftplib
import hashlib
import io
import os
import ssl
import sys


def context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test server's certificate is self-signed
    return ctx


def connect(port: int, user: str, password: str) -> ftplib.FTP_TLS:
    ftp = ftplib.FTP_TLS(context=context(), timeout=60)
    ftp.connect("127.0.0.1", port)
    ftp.login(user, password)  # sends AUTH TLS first
    ftp.prot_p()
    return ftp


def put(ftp, name: str, data: bytes, rest=None, cmd="STOR") -> None:
    """ftplib's storbinary, except that the server's missing TLS close_notify after an upload
    is tolerated: libunftp drops the data connection of a STOR without one, which
    storbinary's conn.unwrap() reports as an error although the upload succeeded (a common
    server behaviour, python/cpython#124850). Our close_notify is still sent, and the
    server's 226 reply is still required."""
    ftp.voidcmd("TYPE I")
    with ftp.transfercmd(f"{cmd} {name}", rest) as conn:
        conn.sendall(data)
        try:
            conn.unwrap()
        except (ssl.SSLError, OSError):
            pass
    resp = ftp.voidresp()
    assert resp.startswith("226"), f"{cmd} {name}: {resp}"


def get(ftp, name: str, rest=None) -> bytes:
    out = io.BytesIO()
    ftp.retrbinary(f"RETR {name}", out.write, rest=rest)
    return out.getvalue()


def refused(what: str, fn, code: str) -> None:
    try:
        fn()
    except ftplib.Error as e:
        assert str(e).startswith(code), f"{what}: expected {code}, got {e}"
        return
    raise AssertionError(f"{what}: expected a {code} refusal, it succeeded")


def full(port: int, user: str, password: str) -> None:
    # A plaintext login is refused before the password is sent.
    plain = ftplib.FTP(timeout=30)
    plain.connect("127.0.0.1", port)
    refused("plaintext USER", lambda: plain.login(user, password), "534")
    plain.close()

    # A wrong password is refused.
    bad = ftplib.FTP_TLS(context=context(), timeout=30)
    bad.connect("127.0.0.1", port)
    refused("wrong password", lambda: bad.login(user, password + "x"), "530")
    bad.close()

    ftp = connect(port, user, password)
    assert ftp.sock.version() in ("TLSv1.2", "TLSv1.3"), ftp.sock.version()
    feat = ftp.sendcmd("FEAT")
    for f in ("SIZE", "MDTM", "MLST", "UTF8", "AUTH TLS", "PBSZ", "PROT", "REST STREAM", "EPSV"):
        assert f in feat, f"FEAT lacks {f}: {feat}"
    assert ftp.sendcmd("OPTS UTF8 ON").startswith("200"), "OPTS UTF8"
    assert ftp.sendcmd("NOOP").startswith("200"), "NOOP"
    assert ftp.pwd() == "/", ftp.pwd()

    # Round trips with checksums.
    for name, size in (("small.bin", 1024), ("medium.bin", 3 * 1024 * 1024 + 11)):
        data = os.urandom(size)
        put(ftp, name, data)
        back = get(ftp, name)
        assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest(), name
        assert ftp.size(name) == size, f"SIZE {name}"
        mdtm = ftp.sendcmd(f"MDTM {name}")
        assert mdtm.startswith("213 ") and len(mdtm.split()[1]) >= 14, mdtm

    # Download resume: REST + RETR returns the tail.
    data = get(ftp, "medium.bin")
    assert get(ftp, "medium.bin", rest=1000) == data[1000:], "REST+RETR"

    # Upload resume: REST <current size> + STOR continues the file.
    head, tail = os.urandom(5000), os.urandom(7000)
    put(ftp, "resumed.bin", head)
    put(ftp, "resumed.bin", tail, rest=len(head))
    assert get(ftp, "resumed.bin") == head + tail, "REST+STOR"
    # ... and only at the current size.
    refused("REST into the middle", lambda: put(ftp, "resumed.bin", b"x", rest=10), "5")
    # libunftp keeps a REST offset after a failed transfer (it resets it only on success), so
    # the next RETR would start at 10: clear it as a careful client would.
    ftp.sendcmd("REST 0")
    back = get(ftp, "resumed.bin")
    assert back == head + tail, f"a refused resume changed the file ({len(back)} bytes)"
    # APPE appends (and creates).
    put(ftp, "log.txt", b"line 1\n", cmd="APPE")
    put(ftp, "log.txt", b"line 2\n", cmd="APPE")
    assert get(ftp, "log.txt") == b"line 1\nline 2\n", "APPE"

    # Directories, CWD/CDUP, listings.
    ftp.mkd("dir")
    refused("MKD of an existing directory", lambda: ftp.mkd("dir"), "550")
    ftp.cwd("dir")
    put(ftp, "inner.txt", b"inner")
    ftp.sendcmd("CDUP")
    assert ftp.pwd() == "/", ftp.pwd()
    names = sorted(ftp.nlst())
    assert names == ["dir", "log.txt", "medium.bin", "resumed.bin", "small.bin"], names
    facts = dict(ftp.mlsd())
    assert facts["dir"]["type"] == "dir", facts["dir"]
    assert facts["small.bin"]["type"] == "file" and facts["small.bin"]["size"] == "1024", facts
    lines = []
    ftp.retrlines("LIST", lines.append)
    assert any(l.startswith("d") and l.endswith(" dir") for l in lines), lines
    assert any(" 1024 " in l and l.endswith(" small.bin") for l in lines), lines
    mlst = ftp.sendcmd("MLST small.bin")
    assert "size=1024" in mlst.lower() and "type=file" in mlst.lower(), mlst
    assert ftp.nlst("dir") in (["inner.txt"], ["dir/inner.txt"]), ftp.nlst("dir")

    # Rename (files and directories), delete, rmdir.
    ftp.rename("small.bin", "dir/renamed.bin")
    refused("RETR of the old name", lambda: get(ftp, "small.bin"), "550")
    assert len(get(ftp, "dir/renamed.bin")) == 1024, "renamed file"
    ftp.rename("dir", "dir2")
    refused("RMD of a non-empty directory", lambda: ftp.rmd("dir2"), "550")
    ftp.delete("dir2/renamed.bin")
    ftp.delete("dir2/inner.txt")
    refused("DELE of a missing file", lambda: ftp.delete("dir2/inner.txt"), "550")
    ftp.rmd("dir2")
    assert "dir2" not in ftp.nlst(), "rmdir"

    # Escape attempts: nothing outside the home exists.
    ftp.cwd("..")
    assert ftp.nlst() == ftp.nlst("/"), "CWD .. left the home"
    refused("RETR ../../etc/passwd", lambda: get(ftp, "../../etc/passwd"), "550")
    refused("RETR /etc/passwd", lambda: get(ftp, "/etc/passwd"), "550")
    refused("CWD /etc", lambda: ftp.cwd("/etc"), "550")
    put(ftp, "../../../escaped.txt", b"jailed")
    assert get(ftp, "/escaped.txt") == b"jailed", "an upload above / did not land in the home"
    ftp.delete("/escaped.txt")

    # Data connections must be encrypted: PASV after PROT C is refused.
    ftp.prot_c()
    refused("PASV after PROT C", lambda: ftp.nlst(), "534")
    ftp.prot_p()
    ftp.nlst()

    ftp.quit()
    print("ftplib: ok")


def read_only(port: int, user: str, password: str) -> None:
    ftp = connect(port, user, password)
    assert get(ftp, "seed.txt") == b"seed", "a read-only user reads"
    assert "seed.txt" in ftp.nlst(), "a read-only user lists"
    refused("read-only STOR", lambda: put(ftp, "new.txt", b"x"), "550")
    refused("read-only MKD", lambda: ftp.mkd("d"), "550")
    refused("read-only DELE", lambda: ftp.delete("seed.txt"), "550")
    refused("read-only RNFR/RNTO", lambda: ftp.rename("seed.txt", "other.txt"), "550")
    assert "new.txt" not in ftp.nlst(), "a refused upload left a file"
    ftp.quit()
    print("ftplib read-only: ok")


def write_only(port: int, user: str, password: str) -> None:
    ftp = connect(port, user, password)
    put(ftp, "drop.txt", b"delivered")
    assert "drop.txt" in ftp.nlst(), "a write-only user lists"
    assert ftp.size("drop.txt") == 9, "SIZE for a write-only user"
    refused("write-only RETR", lambda: get(ftp, "drop.txt"), "550")
    refused("write-only DELE", lambda: ftp.delete("drop.txt"), "550")
    ftp.rename("drop.txt", "renamed.txt")
    ftp.quit()
    print("ftplib write-only: ok")


def limit(port: int, user: str, password: str) -> None:
    first = connect(port, user, password)
    second = ftplib.FTP_TLS(context=context(), timeout=30)
    second.connect("127.0.0.1", port)
    refused("a second session over maxSessions 1", lambda: second.login(user, password), "530")
    second.close()
    first.quit()
    # The slot is given back when the first session ends.
    for _ in range(50):
        try:
            connect(port, user, password).quit()
            break
        except ftplib.error_perm:
            import time

            time.sleep(0.1)
    else:
        raise AssertionError("the session slot was not given back")
    print("ftplib limit: ok")


if __name__ == "__main__":
    mode, port, username, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    {"full": full, "read-only": read_only, "write-only": write_only, "limit": limit}[mode](
        port, username, password
    )
