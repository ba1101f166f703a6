"""Drives a Wharf FTPS server with Python's ftplib.FTP_TLS (a real third-party client).

Usage: ftps_ftplib_client.py MODE PORT USERNAME PASSWORD
  MODE full        everything a read-write user does (round trips, listings, resume, rename,
                   delete, directories, escape attempts, refusals)
  MODE read-only   what a read-only user may and may not do (expects /seed.txt to exist)
  MODE write-only  what a write-only user may and may not do
  MODE limit       the user has maxSessions 1: a second session is refused while one is open
  MODE implicit    implicit TLS (PORT is the implicit port): TLS from the first byte
  MODE implicit-protected
                   implicit TLS without PBSZ/PROT: data is protected from the start; PROT C
                   refuses transfers as on explicit sessions
  MODE prot-c      after PROT C, PASV, EPSV and every transfer are refused; active mode is
                   refused; EPSV ALL; REST is reset by a failed transfer
  MODE garbage     plaintext and garbage on a passive port fail that transfer only
  MODE hash        HASH, OPTS HASH, RANG and the XSHA256/XSHA512/XSHA1/XMD5 aliases
  MODE hash-read-only / hash-write-only
                   HASH for a read-only user (expects /theirs.txt) and for a write-only one
                   (only files it uploaded in the session)
  MODE mfmt        MFMT is accepted and answers the file's real modification time
  MODE stat        STAT <path> lists over the control connection (expects /big with 2500
                   files), STAT during a transfer still answers
  MODE mlst-opts   OPTS MLST selects the facts of MLST and MLSD
  MODE proxy       PROXY protocol (extra arguments: VERSION 1|2, CLIENT_IP): control and data
                   connections carry a header; a connection without one is dropped
  MODE theft       another program on the client's address connects to the passive port
                   first (with a TLS session of its own) and gets nothing of a RETR; the
                   client is told (522) and its next transfer works
  MODE held        logs in and stays (NOOP every half second) until the server ends the session
                   with 421, which it prints; fails after 30 s
  MODE no-reuse    ftplib as it comes, whose data connections do not resume the control
                   connection's TLS session (extra argument: refused|accepted, what the server
                   must do with them)

Every other mode resumes the control connection's TLS session on data connections
(ReusingFTP_TLS), as servers that require it (vsftpd's require_ssl_reuse, Wharf by default)
need; it is the usual fix for ftplib.
Exits non-zero with a message on the first thing that is wrong.
"""
import ftplib
import hashlib
import io
import os
import socket
import ssl
import sys


class ReusingFTP_TLS(ftplib.FTP_TLS):
    """ftplib.FTP_TLS whose data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(
                conn, server_hostname=self.host, session=self.sock.session
            )
        return conn, size


def context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test server's certificate is self-signed
    return ctx


def connect(port: int, user: str, password: str) -> ftplib.FTP_TLS:
    ftp = ReusingFTP_TLS(context=context(), timeout=60)
    ftp.connect("127.0.0.1", port)
    ftp.login(user, password)  # sends AUTH TLS first
    ftp.prot_p()
    return ftp


def put(ftp, name: str, data: bytes, rest=None, cmd="STOR") -> None:
    """ftplib's storbinary (with APPE as well): the data connection is closed with a TLS
    close_notify both ways (conn.unwrap() fails if the server does not answer with its own),
    and the server's 226 is required."""
    ftp.voidcmd("TYPE I")
    with ftp.transfercmd(f"{cmd} {name}", rest) as conn:
        conn.sendall(data)
        conn.unwrap()
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
    bad = ReusingFTP_TLS(context=context(), timeout=30)
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
    refused("REST into the middle", lambda: put(ftp, "resumed.bin", b"x", rest=10), "554")
    try:
        put(ftp, "resumed.bin", b"x", rest=10)
    except ftplib.error_perm as e:
        assert "12000 bytes" in str(e), f"the refusal does not name the current size: {e}"
    # The refused transfer used up the REST offset: a plain RETR starts at 0 again.
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
    second = ReusingFTP_TLS(context=context(), timeout=30)
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


class ImplicitFTP_TLS(ReusingFTP_TLS):
    """FTP_TLS for implicit FTPS: the control socket is TLS from the first byte (ftplib then
    skips AUTH TLS at login, as the socket is already an SSLSocket)."""

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        self.host, self.port = host, port
        if timeout != -999:
            self.timeout = timeout
        sock = socket.create_connection((host, port), self.timeout)
        self.af = sock.family
        self.sock = self.context.wrap_socket(sock, server_hostname=host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


def implicit(port: int, user: str, password: str) -> None:
    ftp = ImplicitFTP_TLS(context=context(), timeout=60)
    welcome = ftp.connect("127.0.0.1", port)
    assert welcome.startswith("220"), welcome
    assert isinstance(ftp.sock, ssl.SSLSocket)
    refused("AUTH TLS on the implicit port", lambda: ftp.sendcmd("AUTH TLS"), "503")
    ftp.login(user, password)
    ftp.prot_p()
    data = os.urandom(300_000)
    put(ftp, "implicit.bin", data)
    assert get(ftp, "implicit.bin") == data, "implicit round trip"
    assert get(ftp, "implicit.bin", rest=1000) == data[1000:], "implicit REST+RETR"
    assert "implicit.bin" in ftp.nlst(), "implicit NLST"
    ftp.quit()
    print("ftplib implicit: ok")


def prot_c(port: int, user: str, password: str) -> None:
    ftp = connect(port, user, password)
    put(ftp, "p.txt", b"protected")
    ftp.prot_c()
    refused("PASV after PROT C", lambda: ftp.sendcmd("PASV"), "534")
    refused("EPSV after PROT C", lambda: ftp.sendcmd("EPSV"), "534")
    # A passive port opened under PROT P cannot carry a transfer after PROT C either.
    for setup in ("PASV", "EPSV"):
        for cmd in ("LIST", "RETR p.txt", "STOR q.txt", "NLST", "MLSD"):
            ftp.prot_p()
            ftp.sendcmd(setup)
            ftp.prot_c()
            refused(f"{setup} + {cmd} after PROT C", lambda: ftp.sendcmd(cmd), "534")
    ftp.prot_p()
    assert get(ftp, "p.txt") == b"protected", "PROT P again"
    assert "q.txt" not in ftp.nlst(), "a refused STOR left a file"

    # Active mode is refused with a clear message.
    refused("PORT", lambda: ftp.sendcmd("PORT 127,0,0,1,4,1"), "502")
    refused("EPRT", lambda: ftp.sendcmd("EPRT |1|127.0.0.1|1025|"), "502")

    # REST is reset by every transfer command, also a failed one.
    ftp.sendcmd("REST 3")
    refused("RETR of a missing file", lambda: get(ftp, "missing.txt"), "550")
    assert get(ftp, "p.txt") == b"protected", "REST survived a failed RETR"
    ftp.sendcmd("REST 4")
    ftp.sendcmd("PASV")
    refused("STOR of a bad path", lambda: ftp.sendcmd("STOR /a\\b"), "553")
    assert get(ftp, "p.txt") == b"protected", "REST survived a failed STOR"

    # EPSV ALL: PASV is refused from then on, EPSV transfers work.
    assert ftp.sendcmd("EPSV ALL").startswith("200")
    refused("PASV after EPSV ALL", lambda: ftp.sendcmd("PASV"), "503")
    ftp.af = socket.AF_INET6  # makes ftplib use EPSV
    put(ftp, "e.txt", b"over epsv")
    assert get(ftp, "e.txt") == b"over epsv", "EPSV round trip"
    ftp.quit()
    print("ftplib prot-c: ok")


def garbage(port: int, user: str, password: str) -> None:
    ftp = connect(port, user, password)
    put(ftp, "g.txt", b"hello")
    ftp.voidcmd("TYPE I")
    # Plaintext instead of a TLS handshake, a connection that closes at once, and random
    # bytes: each fails its own transfer with 425 and the session goes on.
    for junk in (b"USER root\r\nPASS x\r\n" * 4, b"", os.urandom(4096)):
        host, pport = ftp.makepasv()
        s = socket.create_connection((host, pport), 30)
        if junk:
            s.sendall(junk)
        else:
            s.close()
        resp = ftp.sendcmd("RETR g.txt")
        assert resp.startswith("150"), resp
        try:
            resp = ftp.voidresp()
            raise AssertionError(f"a transfer over a garbage data connection succeeded: {resp}")
        except ftplib.error_temp as e:
            assert str(e).startswith("425"), e
        s.close()
        # The next transfers work.
        assert get(ftp, "g.txt") == b"hello", "RETR after garbage"
        put(ftp, "h.txt", b"after")
    # A TLS handshake that succeeds, then a cut without close_notify during an upload: the
    # upload is aborted (426) and nothing is stored.
    ftp.voidcmd("TYPE I")
    conn = ftp.transfercmd("STOR cut.txt")
    conn.sendall(b"partial data")
    conn.close()  # an SSLSocket closes without close_notify unless unwrap() is called
    try:
        resp = ftp.voidresp()
        raise AssertionError(f"an upload cut without TLS close was committed: {resp}")
    except ftplib.error_temp as e:
        assert str(e).startswith("426"), e
    assert "cut.txt" not in ftp.nlst(), "a cut upload left a file"
    assert get(ftp, "g.txt") == b"hello", "RETR after a cut upload"
    ftp.quit()
    print("ftplib garbage: ok")


def implicit_protected(port: int, user: str, password: str) -> None:
    ftp = ImplicitFTP_TLS(context=context(), timeout=60)
    ftp.connect("127.0.0.1", port)
    ftp.login(user, password)
    # Like clients that take implicit TLS to mean protected data: neither PBSZ nor PROT is
    # sent, and data connections are TLS anyway (ftplib wraps them when _prot_p is set).
    ftp._prot_p = True
    assert "encrypted (PROT P)" in ftp.sendcmd("STAT"), "STAT of a fresh implicit session"
    assert ftp.sendcmd("PASV").startswith("227"), "PASV without PROT P"
    assert ftp.sendcmd("EPSV").startswith("229"), "EPSV without PROT P"
    data = os.urandom(200_000)
    put(ftp, "protected.bin", data)
    assert get(ftp, "protected.bin") == data, "round trip without PROT P"
    assert "protected.bin" in ftp.nlst(), "NLST without PROT P"
    ftp.af = socket.AF_INET6  # makes ftplib use EPSV
    assert get(ftp, "protected.bin", rest=7) == data[7:], "EPSV + REST + RETR without PROT P"
    ftp.af = socket.AF_INET

    # PROT C never allows clear data: refused as on explicit sessions.
    assert ftp.sendcmd("PROT C").startswith("200")
    ftp._prot_p = False
    refused("implicit PASV after PROT C", lambda: ftp.sendcmd("PASV"), "534")
    refused("implicit EPSV after PROT C", lambda: ftp.sendcmd("EPSV"), "534")
    refused("implicit NLST after PROT C", lambda: ftp.nlst(), "534")
    for cmd in ("RETR protected.bin", "STOR clear.bin", "LIST"):
        ftp.sendcmd("PROT P")
        ftp.sendcmd("PASV")
        ftp.sendcmd("PROT C")
        refused(f"implicit PASV + {cmd} after PROT C", lambda: ftp.sendcmd(cmd), "534")
    ftp.prot_p()
    assert get(ftp, "protected.bin") == data, "PROT P again"
    assert "clear.bin" not in ftp.nlst(), "a refused STOR left a file"
    ftp.quit()
    print("ftplib implicit-protected: ok")


# The algorithms HASH offers, as FEAT names them, with Python's implementation.
HASHES = (
    ("SHA-256", hashlib.sha256),
    ("SHA-512", hashlib.sha512),
    ("SHA-1", hashlib.sha1),
    ("MD5", hashlib.md5),
)


def feat_line(ftp, name: str) -> str:
    lines = [l for l in ftp.sendcmd("FEAT").split("\n") if l.startswith(f" {name} ")]
    assert len(lines) == 1, f"FEAT has no single {name} line: {lines}"
    return lines[0]


def hash_mode(port: int, user: str, password: str) -> None:
    plain = ReusingFTP_TLS(context=context(), timeout=30)
    plain.connect("127.0.0.1", port)
    plain.auth()
    refused("HASH before login", lambda: plain.sendcmd("HASH x"), "530")
    plain.close()

    ftp = connect(port, user, password)
    assert feat_line(ftp, "HASH") == " HASH SHA-256*;SHA-512;SHA-1;MD5", feat_line(ftp, "HASH")
    assert ftp.sendcmd("OPTS HASH") == "200 SHA-256", "the default algorithm"
    data = os.urandom(3 * 1024 * 1024 + 7)
    n = len(data)
    put(ftp, "h.bin", data)

    for name, algo in HASHES:
        assert ftp.sendcmd(f"OPTS HASH {name.lower()}") == f"200 {name}", f"OPTS HASH {name}"
        expected = f"213 {name} 0-{n - 1} {algo(data).hexdigest()} h.bin"
        got = ftp.sendcmd("HASH h.bin")
        assert got == expected, f"HASH with {name}: {got} != {expected}"
        starred = ";".join(f"{m}*" if m == name else m for m, _ in HASHES)
        assert feat_line(ftp, "HASH") == f" HASH {starred}", feat_line(ftp, "HASH")
    refused("OPTS HASH of an unknown algorithm", lambda: ftp.sendcmd("OPTS HASH CRC32"), "504")
    refused("OPTS HASH of SHA-384 (not offered)", lambda: ftp.sendcmd("OPTS HASH SHA-384"), "504")
    assert ftp.sendcmd("OPTS HASH") == "200 MD5", "a refused OPTS HASH changed the selection"
    assert ftp.sendcmd("OPTS HASH SHA-256") == "200 SHA-256"
    sha = lambda b: hashlib.sha256(b).hexdigest()

    # RANG selects an inclusive byte range for the next HASH only.
    assert ftp.sendcmd("RANG 10 109").startswith("350")
    got = ftp.sendcmd("HASH h.bin")
    assert got == f"213 SHA-256 10-109 {sha(data[10:110])} h.bin", got
    got = ftp.sendcmd("HASH h.bin")
    assert got == f"213 SHA-256 0-{n - 1} {sha(data)} h.bin", f"RANG applied twice: {got}"
    ftp.sendcmd(f"RANG 100 {n + 1000}")
    got = ftp.sendcmd("HASH h.bin")
    assert got == f"213 SHA-256 100-{n - 1} {sha(data[100:])} h.bin", f"clipped range: {got}"
    ftp.sendcmd("RANG 5 9")
    assert ftp.sendcmd("RANG 1 0").startswith("350"), "RANG 1 0 resets"
    got = ftp.sendcmd("HASH h.bin")
    assert got == f"213 SHA-256 0-{n - 1} {sha(data)} h.bin", f"after RANG 1 0: {got}"
    ftp.sendcmd("RANG 5 9")
    ftp.sendcmd("NOOP")
    got = ftp.sendcmd("HASH h.bin")
    assert got == f"213 SHA-256 0-{n - 1} {sha(data)} h.bin", f"RANG outlived NOOP: {got}"
    refused("RANG with start after end", lambda: ftp.sendcmd("RANG 9 5"), "501")
    refused("RANG without numbers", lambda: ftp.sendcmd("RANG x y"), "501")
    refused("RANG with one number", lambda: ftp.sendcmd("RANG 5"), "501")
    ftp.sendcmd(f"RANG {n + 10} {n + 20}")
    refused("HASH of a range beyond the end", lambda: ftp.sendcmd("HASH h.bin"), "554")
    # RANG is for HASH only: a transfer right after it is refused, not sent whole.
    ftp.voidcmd("TYPE I")
    ftp.sendcmd("PASV")
    ftp.sendcmd("RANG 0 9")
    refused("RETR after RANG", lambda: ftp.sendcmd("RETR h.bin"), "504")
    assert get(ftp, "h.bin") == data, "RETR after a refused ranged RETR"

    # The common aliases answer 250 and the hex digest.
    for verb, algo in (
        ("XSHA256", hashlib.sha256),
        ("XSHA512", hashlib.sha512),
        ("XSHA1", hashlib.sha1),
        ("XMD5", hashlib.md5),
    ):
        got = ftp.sendcmd(f"{verb} h.bin")
        assert got == f"250 {algo(data).hexdigest()}", f"{verb}: {got}"
    assert ftp.sendcmd("xsha1 h.bin") == f"250 {hashlib.sha1(data).hexdigest()}", "xsha1"
    assert ftp.sendcmd("OPTS HASH") == "200 SHA-256", "an alias changed the HASH selection"

    # Names with spaces, empty files, directories and missing files.
    put(ftp, "a b.txt", b"spaced")
    got = ftp.sendcmd("HASH a b.txt")
    assert got == f"213 SHA-256 0-5 {sha(b'spaced')} a b.txt", got
    put(ftp, "empty.txt", b"")
    got = ftp.sendcmd("HASH empty.txt")
    assert got == f"213 SHA-256 0-0 {sha(b'')} empty.txt", got
    ftp.mkd("dir")
    put(ftp, "dir/in.txt", b"inside")
    got = ftp.sendcmd("HASH /dir/../dir/in.txt")
    assert got == f"213 SHA-256 0-5 {sha(b'inside')} /dir/../dir/in.txt", got
    refused("HASH of a directory", lambda: ftp.sendcmd("HASH dir"), "553")
    refused("HASH of a missing file", lambda: ftp.sendcmd("HASH missing.bin"), "550")
    refused("XSHA256 of a missing file", lambda: ftp.sendcmd("XSHA256 missing.bin"), "550")
    refused("HASH without a path", lambda: ftp.sendcmd("HASH"), "501")
    refused("XMD5 without a path", lambda: ftp.sendcmd("XMD5"), "501")
    refused("HASH of a bad path", lambda: ftp.sendcmd("HASH a\\b"), "553")
    ftp.quit()
    print("ftplib hash: ok")


def hash_read_only(port: int, user: str, password: str) -> None:
    ftp = connect(port, user, password)
    data = get(ftp, "theirs.txt")
    got = ftp.sendcmd("HASH theirs.txt")
    expected = f"213 SHA-256 0-{len(data) - 1} {hashlib.sha256(data).hexdigest()} theirs.txt"
    assert got == expected, f"read-only HASH: {got}"
    ftp.quit()
    print("ftplib hash-read-only: ok")


def hash_write_only(port: int, user: str, password: str) -> None:
    ftp = connect(port, user, password)
    # A file it cannot read: its digest would tell what it holds.
    refused("write-only HASH of another's file", lambda: ftp.sendcmd("HASH theirs.txt"), "550")
    refused("write-only XSHA256 of another's file", lambda: ftp.sendcmd("XSHA256 theirs.txt"), "550")
    # A file it has just delivered: checking the delivery is what HASH is for.
    data = os.urandom(70_000)
    put(ftp, "mine.bin", data)
    got = ftp.sendcmd("HASH mine.bin")
    expected = f"213 SHA-256 0-{len(data) - 1} {hashlib.sha256(data).hexdigest()} mine.bin"
    assert got == expected, f"write-only HASH of its upload: {got}"
    assert ftp.sendcmd("XMD5 mine.bin") == f"250 {hashlib.md5(data).hexdigest()}"
    ftp.quit()
    print("ftplib hash-write-only: ok")


def mfmt(port: int, user: str, password: str) -> None:
    ftp = connect(port, user, password)
    assert " MFMT" in ftp.sendcmd("FEAT").split("\n"), "FEAT lacks MFMT"
    put(ftp, "m.txt", b"modified")
    mdtm = ftp.sendcmd("MDTM m.txt")
    assert mdtm.startswith("213 "), mdtm
    actual = mdtm[4:]
    # Accepted, and the reply tells the time the file really has (the store keeps its own).
    for stamp in ("20200102030405", "20200102030405.123", "19991231235959.5"):
        got = ftp.sendcmd(f"MFMT {stamp} m.txt")
        assert got == f"213 Modify={actual}; m.txt", f"MFMT {stamp}: {got}"
    assert ftp.sendcmd("MDTM m.txt") == mdtm, "MFMT changed what MDTM shows"
    put(ftp, "a b.txt", b"x")
    got = ftp.sendcmd("MFMT 20200102030405 a b.txt")
    assert got.startswith("213 Modify=") and got.endswith("; a b.txt"), got
    refused("MFMT of a missing file", lambda: ftp.sendcmd("MFMT 20200102030405 none.txt"), "550")
    for bad in (
        "MFMT 2020010203 m.txt",  # too short
        "MFMT 20201302030405 m.txt",  # month 13
        "MFMT 20200230030405 m.txt",  # 30 February
        "MFMT 2020010203040x m.txt",
        "MFMT 20200102030405. m.txt",
        "MFMT 20200102030405",  # no path
        "MFMT",
    ):
        refused(bad, lambda: ftp.sendcmd(bad), "501")
    ftp.quit()
    print("ftplib mfmt: ok")


def stat_lines(reply: str, path: str) -> list:
    lines = reply.split("\n")
    assert lines[0] == f"213-Status of {path}:", f"STAT header: {lines[0]}"
    assert lines[-1] == "213 End of status", f"STAT end: {lines[-1]}"
    return lines[1:-1]


def stat(port: int, user: str, password: str) -> None:
    ftp = connect(port, user, password)
    assert ftp.sendcmd("STAT").startswith("211-"), "STAT without a path"
    put(ftp, "s.txt", b"12345")
    ftp.mkd("empty")
    lines = stat_lines(ftp.sendcmd("STAT s.txt"), "/s.txt")
    assert len(lines) == 1 and lines[0].startswith("-") and lines[0].endswith(" s.txt"), lines
    assert " 5 " in lines[0], lines
    assert stat_lines(ftp.sendcmd("STAT empty"), "/empty") == [], "STAT of an empty directory"
    # A directory larger than one store page: every entry, as LIST shows it.
    lines = stat_lines(ftp.sendcmd("STAT big"), "/big")
    listed = []
    ftp.retrlines("LIST big", listed.append)
    assert len(lines) == 2500, f"STAT big: {len(lines)} lines"
    assert sorted(lines) == sorted(listed), "STAT and LIST disagree"
    assert sorted(l.split()[-1] for l in lines) == sorted(ftp.nlst("big")), "STAT names"
    ftp.cwd("big")
    lines = stat_lines(ftp.sendcmd("STAT -la ."), "/big")
    assert len(lines) == 2500, f"STAT -la .: {len(lines)} lines"
    ftp.cwd("/")
    refused("STAT of a missing path", lambda: ftp.sendcmd("STAT missing"), "550")

    # During a transfer STAT reports it (and does not list anything).
    data = os.urandom(32 * 1024 * 1024)
    put(ftp, "large.bin", data)
    ftp.voidcmd("TYPE I")
    with ftp.transfercmd("RETR large.bin") as conn:
        head = conn.recv(65536)
        assert head, "no data"
        got = ftp.sendcmd("STAT big")
        assert got.startswith("213 ") and "transfer" in got, f"STAT during a transfer: {got}"
        rest = bytearray(head)
        while True:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            rest += chunk
        conn.unwrap()
    assert ftp.voidresp().startswith("226")
    assert bytes(rest) == data, "the download after STAT"
    assert stat_lines(ftp.sendcmd("STAT s.txt"), "/s.txt"), "STAT after the transfer"
    ftp.quit()
    print("ftplib stat: ok")


def mlst_fact_names(entry_facts: str) -> list:
    return [f.split("=")[0] for f in entry_facts.split(";") if f]


def mlsd_raw(ftp) -> list:
    lines = []
    ftp.retrlines("MLSD", lines.append)
    return lines


def mlst_opts(port: int, user: str, password: str) -> None:
    ftp = connect(port, user, password)
    put(ftp, "o.txt", b"abc")
    ftp.mkd("od")
    assert feat_line(ftp, "MLST") == " MLST type*;size*;modify*;perm*;", feat_line(ftp, "MLST")
    assert "perm=" in ftp.sendcmd("MLST o.txt"), "perm is shown by default"

    got = ftp.sendcmd("OPTS MLST type;size;modify;")
    assert got == "200 MLST OPTS type;size;modify;", got
    assert feat_line(ftp, "MLST") == " MLST type*;size*;modify*;perm;", feat_line(ftp, "MLST")
    entry = ftp.sendcmd("MLST o.txt").split("\n")[1]
    facts, _, name = entry[1:].partition(" ")
    assert name == "/o.txt", entry
    assert mlst_fact_names(facts) == ["type", "size", "modify"], entry
    for line in mlsd_raw(ftp):
        facts, _, name = line.partition(" ")
        assert "perm=" not in facts, f"MLSD still shows perm: {line}"
        assert "type=" in facts, line
    assert dict(ftp.mlsd())["o.txt"]["size"] == "3"

    # Any case and order, unknown facts ignored; the reply names what is selected.
    assert ftp.sendcmd("OPTS MLST Size;TYPE;") == "200 MLST OPTS type;size;"
    assert ftp.sendcmd("OPTS MLST unique;perm;lang;") == "200 MLST OPTS perm;"
    entry = ftp.sendcmd("MLST o.txt").split("\n")[1]
    assert mlst_fact_names(entry[1:].partition(" ")[0]) == ["perm"], entry

    # An empty list selects nothing: entries are a space and the name.
    assert ftp.sendcmd("OPTS MLST") == "200 MLST OPTS"
    assert feat_line(ftp, "MLST") == " MLST type;size;modify;perm;", feat_line(ftp, "MLST")
    assert ftp.sendcmd("MLST o.txt").split("\n")[1] == "  /o.txt", ftp.sendcmd("MLST o.txt")
    assert sorted(mlsd_raw(ftp)) == [" o.txt", " od"], mlsd_raw(ftp)

    assert ftp.sendcmd("OPTS MLST type;size;modify;perm;") == "200 MLST OPTS type;size;modify;perm;"
    entry = ftp.sendcmd("MLST o.txt").split("\n")[1]
    assert mlst_fact_names(entry[1:].partition(" ")[0]) == ["type", "size", "modify", "perm"]
    ftp.quit()
    print("ftplib mlst-opts: ok")


V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_header(version: str, client_ip: str, dst_port: int, src_port: int = 40000) -> bytes:
    if version == "1":
        return f"PROXY TCP4 {client_ip} 127.0.0.1 {src_port} {dst_port}\r\n".encode()
    body = (
        socket.inet_aton(client_ip)
        + socket.inet_aton("127.0.0.1")
        + src_port.to_bytes(2, "big")
        + dst_port.to_bytes(2, "big")
    )
    return V2_SIGNATURE + bytes([0x21, 0x11]) + len(body).to_bytes(2, "big") + body


class ProxiedFTP_TLS(ReusingFTP_TLS):
    """FTP_TLS behind a pretend load balancer: a PROXY header first on the control connection
    and (while `header_on_data`) on every data connection."""

    version = "1"
    client_ip = "203.0.113.7"
    header_on_data = True

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        self.host, self.port = host, port
        if timeout != -999:
            self.timeout = timeout
        self.sock = socket.create_connection((host, port), self.timeout)
        self.af = self.sock.family
        self.sock.sendall(proxy_header(self.version, self.client_ip, port))
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(self, cmd, rest=None):
        if not self.header_on_data:
            return super().ntransfercmd(cmd, rest)
        host, port = self.makepasv()
        conn = socket.create_connection((host, port), self.timeout)
        conn.sendall(proxy_header(self.version, self.client_ip, port, 40001))
        if rest is not None:
            self.sendcmd(f"REST {rest}")
        resp = self.sendcmd(cmd)
        if resp[0] == "2":
            resp = self.getresp()
        if resp[0] != "1":
            raise ftplib.error_reply(resp)
        conn = self.context.wrap_socket(
            conn, server_hostname=self.host, session=self.sock.session
        )
        return conn, None


def proxy(port: int, user: str, password: str, version: str, client_ip: str) -> None:
    ftp = ProxiedFTP_TLS(context=context(), timeout=60)
    ftp.version, ftp.client_ip = version, client_ip
    ftp.connect("127.0.0.1", port)
    ftp.login(user, password)
    ftp.prot_p()
    assert client_ip in ftp.sendcmd("STAT"), "STAT does not show the client from the header"
    data = os.urandom(100_000)
    put(ftp, f"proxied-v{version}.bin", data)
    assert get(ftp, f"proxied-v{version}.bin") == data, "round trip with PROXY headers"
    # A data connection without a header, straight from the load balancer's address (the
    # control connection's peer), is accepted too.
    ftp.header_on_data = False
    assert get(ftp, f"proxied-v{version}.bin") == data, "data connection without a header"
    ftp.quit()

    # A control connection without a PROXY header is dropped without a greeting.
    s = socket.create_connection(("127.0.0.1", port), 30)
    s.sendall(b"USER anonymous\r\nPASS x\r\n")
    s.settimeout(30)
    try:
        # Closed with unread data, so usually a reset.
        assert s.recv(100) == b"", "a connection without a PROXY header was served"
    except ConnectionResetError:
        pass
    s.close()
    print("ftplib proxy: ok")


def theft(port: int, user: str, password: str) -> None:
    ftp = connect(port, user, password)
    secret = b"the victim's invoice " * 1000
    put(ftp, "secret.txt", secret)
    host, data_port = ftp.makepasv()
    # The thief: same address, connects first, a full TLS handshake of its own.
    thief = socket.create_connection((host, data_port), 30)
    # The server takes the data connection (and its handshake) once the command arrives.
    ftp.putcmd("RETR secret.txt")
    stolen = b""
    try:
        thief = context().wrap_socket(thief, server_hostname=host)
        thief.settimeout(30)
        while True:
            chunk = thief.recv(65536)
            if not chunk:
                break
            stolen += chunk
    except OSError:
        pass
    finally:
        thief.close()
    assert stolen == b"", f"the thief read {len(stolen)} bytes of the victim's file"
    # The victim hears why (preliminary 150 first if the server sent one).
    reply = ""
    try:
        reply = ftp.getresp()
        if reply.startswith("150"):
            reply = ftp.getresp()
    except (ftplib.error_perm, ftplib.error_temp) as e:
        reply = str(e)
    assert reply.startswith("522") or reply.startswith("425"), f"the victim was told: {reply}"
    # The victim's next transfer works.
    assert get(ftp, "secret.txt") == secret, "the victim's retry"
    ftp.quit()
    print("ftplib theft: ok")


def held(port: int, user: str, password: str) -> None:
    import time
    ftp = connect(port, user, password)
    print("logged in", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ftp.voidcmd("NOOP")
        except ftplib.error_temp as e:
            print(f"ended: {e}")
            return
        except (EOFError, OSError) as e:
            raise AssertionError(f"closed without a 421: {e!r}")
        time.sleep(0.5)
    raise AssertionError("the session was not ended within 30 s")


def no_reuse(port: int, user: str, password: str, expected: str) -> None:
    ftp = ftplib.FTP_TLS(context=context(), timeout=60)
    ftp.connect("127.0.0.1", port)
    ftp.login(user, password)
    ftp.prot_p()
    data = b"no session reuse\n"
    if expected == "accepted":
        put(ftp, "no-reuse.txt", data)
        assert get(ftp, "no-reuse.txt") == data, "round trip without session reuse"
    else:
        reply = None
        try:
            put(ftp, "no-reuse.txt", data)
        except (ftplib.error_perm, ftplib.error_temp) as e:
            reply = str(e)
        except OSError:
            # The server closed the data connection after the handshake: the transfer's
            # reply is still to be read on the control connection.
            try:
                ftp.voidresp()
            except (ftplib.error_perm, ftplib.error_temp) as e:
                reply = str(e)
        assert reply is not None, "a data connection without session reuse was accepted"
        assert reply.startswith("522"), f"refused, but not with 522: {reply}"
        assert "resume" in reply, f"the refusal does not say why: {reply}"
        # The session goes on: a client that reuses its session is served.
        ftp.quit()
        ftp = connect(port, user, password)
        put(ftp, "no-reuse.txt", data)
        assert get(ftp, "no-reuse.txt") == data, "round trip with session reuse"
    ftp.quit()
    print(f"ftplib no-reuse ({expected}): ok")


if __name__ == "__main__":
    mode, port, username, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    extra = sys.argv[5:]
    {
        "full": full,
        "read-only": read_only,
        "write-only": write_only,
        "limit": limit,
        "implicit": implicit,
        "implicit-protected": implicit_protected,
        "hash": hash_mode,
        "hash-read-only": hash_read_only,
        "hash-write-only": hash_write_only,
        "mfmt": mfmt,
        "stat": stat,
        "mlst-opts": mlst_opts,
        "prot-c": prot_c,
        "garbage": garbage,
        "proxy": proxy,
        "no-reuse": no_reuse,
        "theft": theft,
        "held": held,
    }[mode](port, username, password, *extra)
