"""Drives a Wharf SFTP server with asyncssh (Python's asyncio SSH client, which keeps up to
128 requests in flight): upload, listing parse, download, resume, rename, delete.

Usage: asyncssh_client.py PORT USERNAME PASSWORD FILE...
Each FILE goes to /<its name> and comes back as FILE.back with the same SHA-256; the second
file is also uploaded in part and resumed (open "r+b" at the end) as /resumed.bin, renamed to
/renamed.bin and deleted. Exits non-zero with a message on the first thing that is wrong;
prints "asyncssh: ok" at the end.
"""
import asyncio
import hashlib
import os
import sys

import asyncssh


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def listed(names):
    """Name -> size from the `ls -l` lines (9 fields, the name last, the size fifth)."""
    sizes = {}
    for entry in names:
        fields = entry.longname.split(None, 8)
        assert len(fields) == 9, f"ls -l line with {len(fields)} fields: {entry.longname!r}"
        assert fields[8] == entry.filename, entry.longname
        sizes[fields[8]] = int(fields[4])
    return sizes


async def run(port, username, password, files):
    async with asyncssh.connect(
        "127.0.0.1",
        port=port,
        username=username,
        password=password,
        known_hosts=None,
        client_keys=None,
        agent_path=None,
        preferred_auth="password",
    ) as conn:
        async with conn.start_sftp_client() as sftp:
            for local in files:
                # The large file is a link to the suite's copy: send what it points to.
                await sftp.put(local, "/" + os.path.basename(local), follow_symlinks=True)
            sizes = listed(await sftp.readdir("/"))
            for local in files:
                name = os.path.basename(local)
                assert sizes.get(name) == os.path.getsize(local), f"{name}: listed {sizes.get(name)}"
                await sftp.get("/" + name, local + ".back")
                assert sha256(local + ".back") == sha256(local), f"{name} came back different"

            # Resume: a partial upload, continued from where the server has it.
            source = files[min(1, len(files) - 1)]
            with open(source, "rb") as f:
                data = f.read()
            part = len(data) // 3 + 17
            async with sftp.open("/resumed.bin", "wb") as f:
                await f.write(data[:part])
            async with sftp.open("/resumed.bin", "r+b") as f:
                have = (await f.stat()).size
                assert have == part, f"the partial upload has {have} bytes"
                for offset in range(have, len(data), 256 * 1024):
                    await f.write(data[offset : offset + 256 * 1024], offset)
            async with sftp.open("/resumed.bin", "rb") as f:
                back = await f.read()
            assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest(), "resume"

            await sftp.rename("/resumed.bin", "/renamed.bin")
            assert await sftp.exists("/renamed.bin") and not await sftp.exists("/resumed.bin")
            await sftp.remove("/renamed.bin")
            assert "renamed.bin" not in await sftp.listdir("/"), "delete"


def main() -> None:
    port, username, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    asyncio.run(run(port, username, password, sys.argv[4:]))
    print("asyncssh: ok")


if __name__ == "__main__":
    main()
