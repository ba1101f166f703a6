// Objects against a real `wharf serve`: streamed uploads and downloads, ranges, paging, errors.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Wharf, WharfProblemError } from "@wharf/sdk";
import { startWharf, type WharfServer } from "./helpers/wharf-server.js";

let server: WharfServer;
let wharf: Wharf;

before(async () => {
  server = await startWharf();
  wharf = new Wharf({ baseUrl: server.baseUrl, apiKey: server.apiKey });
});

after(async () => {
  await server?.stop();
});

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

/** A check for `assert.rejects`: a WharfProblemError with this status (naming `field`). */
function problem(status: number, field?: string) {
  return (error: unknown) => {
    assert.ok(error instanceof WharfProblemError, String(error));
    assert.equal(error.status, status, error.message);
    if (field !== undefined) {
      assert.ok(error.fieldError(field), `${field} not named: ${JSON.stringify(error.errors)}`);
    }
    return true;
  };
}

/** A stream of `chunks`, handed out one at a time as the consumer pulls. */
function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let next = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const chunk = chunks[next++];
      if (chunk) controller.enqueue(chunk);
      else controller.close();
    },
  });
}

describe("objects", () => {
  test("put and get 3 MiB of random bytes; the download streams", async () => {
    const data = new Uint8Array(randomBytes(3 * 1024 * 1024 + 7));
    const stored = await wharf.objects.put("default", "alice/in/big file.bin", data);
    assert.equal(stored.key, "alice/in/big file.bin");
    assert.equal(stored.name, "big file.bin");
    assert.equal(stored.kind, "file");
    assert.equal(stored.size, data.length);
    assert.equal(stored.sha256, sha256(data));

    assert.equal(sha256(await wharf.objects.getBytes("default", "alice/in/big file.bin")), sha256(data));

    // get() hands back the response unread: its body is a web ReadableStream, read here
    // chunk by chunk and hashed as it comes.
    const response = await wharf.objects.get("default", "alice/in/big file.bin");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("content-length"), String(data.length));
    assert.ok(response.headers.get("etag"), "an ETag");
    assert.ok(response.body instanceof ReadableStream);
    const hash = createHash("sha256");
    let chunks = 0;
    const reader = response.body.getReader();
    for (let read = await reader.read(); !read.done; read = await reader.read()) {
      hash.update(read.value);
      chunks++;
    }
    assert.equal(hash.digest("hex"), sha256(data));
    assert.ok(chunks > 1, `${chunks} chunk(s)`);

    // Replacing it: the new content wins.
    const replaced = await wharf.objects.put("default", "alice/in/big file.bin", "small now");
    assert.equal(replaced.size, 9);
    assert.equal(new TextDecoder().decode(await wharf.objects.getBytes("default", "alice/in/big file.bin")), "small now");
  });

  test("a ReadableStream body is streamed", async () => {
    const chunks = [randomBytes(256 * 1024), randomBytes(1000), randomBytes(512 * 1024)].map((b) => new Uint8Array(b));
    const whole = new Uint8Array(Buffer.concat(chunks));
    const stored = await wharf.objects.put("default", "alice/streamed.bin", streamOf(chunks));
    assert.equal(stored.size, whole.length);
    assert.equal(stored.sha256, sha256(whole));
    assert.equal(sha256(await wharf.objects.getBytes("default", "alice/streamed.bin")), sha256(whole));
  });

  test("Blob and string bodies, and keys with characters URLs reserve", async () => {
    const key = "alice/in/ünïcode & spaces #1?%.txt";
    await wharf.objects.put("default", key, new Blob(["from ", "a blob"]));
    assert.equal(new TextDecoder().decode(await wharf.objects.getBytes("default", key)), "from a blob");
    const names: string[] = [];
    for await (const entry of wharf.objects.list("default", { prefix: "alice/in" })) names.push(entry.name);
    assert.ok(names.includes("ünïcode & spaces #1?%.txt"), JSON.stringify(names));
  });

  test("range gets: first-last, first-, -suffix; outside the object is 416", async () => {
    const data = new Uint8Array(randomBytes(100_000));
    await wharf.objects.put("default", "alice/ranged.bin", data);

    const middle = await wharf.objects.get("default", "alice/ranged.bin", { range: "bytes=1000-1999" });
    assert.equal(middle.status, 206);
    assert.equal(middle.headers.get("content-range"), `bytes 1000-1999/${data.length}`);
    assert.deepEqual(new Uint8Array(await middle.arrayBuffer()), data.slice(1000, 2000));

    const from = await wharf.objects.get("default", "alice/ranged.bin", { range: "bytes=99000-" });
    assert.equal(from.status, 206);
    assert.deepEqual(new Uint8Array(await from.arrayBuffer()), data.slice(99_000));

    const tail = await wharf.objects.get("default", "alice/ranged.bin", { range: "bytes=-100" });
    assert.equal(tail.status, 206);
    assert.deepEqual(new Uint8Array(await tail.arrayBuffer()), data.slice(-100));

    await assert.rejects(
      wharf.objects.get("default", "alice/ranged.bin", { range: "bytes=200000-" }),
      problem(416),
    );
  });

  test("list a directory across pages: 25 files at pageSize 10, each seen once", async () => {
    const expected = new Set<string>();
    for (let i = 0; i < 25; i++) {
      const key = `bob/out/f${String(i).padStart(2, "0")}.txt`;
      await wharf.objects.put("default", key, `file ${i}`);
      expected.add(key);
    }

    const first = await wharf.objects.listPage("default", { prefix: "bob/out", pageSize: 10 });
    assert.equal(first.items.length, 10);
    assert.ok(first.nextPageToken);
    const second = await wharf.objects.listPage("default", {
      prefix: "bob/out",
      pageSize: 10,
      pageToken: first.nextPageToken,
    });
    assert.equal(second.items.length, 10);
    assert.notDeepEqual(second.items.map((e) => e.key), first.items.map((e) => e.key));

    const seen: string[] = [];
    for await (const entry of wharf.objects.list("default", { prefix: "bob/out", pageSize: 10 })) {
      assert.equal(entry.kind, "file");
      assert.equal(entry.key, `bob/out/${entry.name}`);
      seen.push(entry.key);
    }
    assert.equal(seen.length, 25);
    assert.deepEqual(new Set(seen), expected);

    // One level only: bob/ holds the directory out, not its files.
    const bob = (await wharf.objects.listPage("default", { prefix: "bob" })).items;
    assert.deepEqual(bob.map((e) => [e.name, e.kind]), [["out", "directory"]]);
  });

  test("mkdir: the directory is listed, empty", async () => {
    const made = await wharf.objects.mkdir("default", "carol/archive/2026");
    assert.equal(made.kind, "directory");
    assert.equal(made.key, "carol/archive/2026");
    // Again (and with a trailing /): fine.
    assert.equal((await wharf.objects.mkdir("default", "carol/archive/2026/")).kind, "directory");

    const carol: [string, string][] = [];
    for await (const entry of wharf.objects.list("default", { prefix: "carol/archive" })) {
      carol.push([entry.name, entry.kind]);
    }
    assert.deepEqual(carol, [["2026", "directory"]]);
    assert.deepEqual((await wharf.objects.listPage("default", { prefix: "carol/archive/2026" })).items, []);
  });

  test("delete: then a 404 problem; a directory with content needs recursive", async () => {
    await wharf.objects.put("default", "dave/in/a.txt", "a");
    await wharf.objects.put("default", "dave/in/sub/b.txt", "b");

    await wharf.objects.delete("default", "dave/in/a.txt");
    await assert.rejects(wharf.objects.getBytes("default", "dave/in/a.txt"), problem(404));
    await assert.rejects(wharf.objects.get("default", "dave/in/a.txt"), (error: unknown) => {
      assert.ok(error instanceof WharfProblemError);
      assert.equal(error.status, 404);
      assert.equal(error.response.headers.get("content-type"), "application/problem+json");
      assert.ok(error.title);
      return true;
    });
    await assert.rejects(wharf.objects.delete("default", "dave/in/a.txt"), problem(404));

    // Not empty: 409 without recursive.
    await assert.rejects(wharf.objects.delete("default", "dave/in"), problem(409));
    await wharf.objects.delete("default", "dave/in", { recursive: true });
    await assert.rejects(wharf.objects.getBytes("default", "dave/in/sub/b.txt"), problem(404));
    const dave = (await wharf.objects.listPage("default", { prefix: "dave" })).items;
    assert.ok(!dave.some((e) => e.name === "in"), JSON.stringify(dave));
  });

  test("an unknown bucket is a 404 problem", async () => {
    await assert.rejects(wharf.objects.put("default-nope", "x.txt", "x"), problem(404));
    await assert.rejects(wharf.objects.listPage("default-nope"), problem(404));
  });

  test("a hostile key (../x) is a 400 problem naming key, exactly the server's", async () => {
    // What the server answers for the key `../x` when it arrives intact (its `/` encoded, so
    // that no URL resolution folds it away first).
    const raw = await fetch(`${server.baseUrl}/v1/buckets/default/objects/..%2Fx`, {
      method: "PUT",
      body: "x",
      headers: { Authorization: `Bearer ${server.apiKey}` },
    });
    assert.equal(raw.status, 400);
    const expected = (await raw.json()) as Record<string, unknown>;

    for (const call of [
      () => wharf.objects.put("default", "../x", "x"),
      () => wharf.objects.put("default", "../x", streamOf([new Uint8Array(3)])),
      () => wharf.objects.get("default", "../x"),
      () => wharf.objects.getBytes("default", "a/../../x"),
      () => wharf.objects.delete("default", "..", { recursive: true }),
      () => wharf.objects.mkdir("default", "a/./b"),
    ]) {
      await assert.rejects(call(), (error: unknown) => {
        assert.ok(error instanceof WharfProblemError, String(error));
        assert.equal(error.status, 400);
        assert.equal(error.type, expected.type);
        assert.equal(error.title, expected.title);
        assert.deepEqual(error.errors, expected.errors);
        assert.equal(error.fieldError("key"), "must not contain '.' or '..' segments");
        return true;
      });
    }
    // Nothing escaped the bucket: the root holds only what the tests put there.
    const root = (await wharf.objects.listPage("default", { pageSize: 1000 })).items;
    assert.ok(!root.some((e) => e.name === "x"), JSON.stringify(root));

    // The server refuses the other bad keys itself, the same way.
    for (const key of ["a//b.txt", "/abs.txt", "a/.wharf-dir"]) {
      await assert.rejects(wharf.objects.put("default", key, "x"), problem(400, "key"));
    }
    await assert.rejects(wharf.objects.put("default", "", "x"), problem(400, "key"));
    await assert.rejects(wharf.objects.listPage("default", { prefix: "../x" }), problem(400, "prefix"));
  });
});
