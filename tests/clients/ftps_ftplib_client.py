"""Drives a Wharf FTPS server with Python's ftplib.FTP_TLS (a real third-party client).

Usage: ftps_ftplib_client.py MODE PORT USERNAME PASSWORD
  MODE full        everything a read-write user does (round trips, listings, resume, rename,
                   delete, directories, escape attempts, refusals)
  MODE read-only   what a read-only user may and may not do (expects /seed.txt to exist)
  MODE write-only  what a write-only user may and may not do
  MODE limit       the user has maxSessions 1: a second session is refused while one is open
  MODE implicit    implicit TLS (PORT is the implicit port): TLS from the first byte
  MODE prot-c      after PROT C, PASV, EPSV and every transfer are refused; active mode is
                   refused; EPSV ALL; REST is reset by a failed transfer
  MODE garbage     plaintext and garbage on a passive port fail that transfer only
  MODE proxy       PROXY protocol (extra arguments: VERSION 1|2, CLIENT_IP): control and data
                   connections carry a header; a connection without one is dropped
Exits non-zero with a message on the first thing that is wrong.
"""
import ftplib
import hashlib
import io
import os
import socket
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


class ImplicitFTP_TLS(ftplib.FTP_TLS):
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


class ProxiedFTP_TLS(ftplib.FTP_TLS):
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
        return self.context.wrap_socket(conn, server_hostname=self.host), None


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


if __name__ == "__main__":
    mode, port, username, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    extra = sys.argv[5:]
    {
        "full": full,
        "read-only": read_only,
        "write-only": write_only,
        "limit": limit,
        "implicit": implicit,
        "prot-c": prot_c,
        "garbage": garbage,
        "proxy": proxy,
    }[mode](port, username, password, *extra)
