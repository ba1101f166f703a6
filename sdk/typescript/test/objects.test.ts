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

describe("objects", () => {
  test("put and get 3 MiB, whole and by range", async () => {
    const data = new Uint8Array(randomBytes(3 * 1024 * 1024 + 7));
    const stored = await wharf.objects.put("default", "alice/in/big file.bin", data);
    assert.equal(stored.size, data.length);
    assert.equal(stored.sha256, sha256(data));
    assert.equal(sha256(await wharf.objects.getBytes("default", "alice/in/big file.bin")), sha256(data));
    const tail = await wharf.objects.get("default", "alice/in/big file.bin", { range: "bytes=-100" });
    assert.equal(tail.status, 206);
    assert.deepEqual(new Uint8Array(await tail.arrayBuffer()), data.slice(-100));
  });

  test("a ReadableStream body is streamed", async () => {
    const chunks = [new Uint8Array(64 * 1024).fill(1), new Uint8Array(1000).fill(2)];
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(chunk);
        controller.close();
      },
    });
    const stored = await wharf.objects.put("default", "alice/streamed.bin", stream);
    assert.equal(stored.size, 64 * 1024 + 1000);
  });

  test("list a directory across pages; mkdir; delete", async () => {
    for (let i = 0; i < 25; i++) {
      await wharf.objects.put("default", `bob/out/f${String(i).padStart(2, "0")}.txt`, `file ${i}`);
    }
    await wharf.objects.mkdir("default", "bob/out/archive");
    const firstPage = await wharf.objects.listPage("default", { prefix: "bob/out", pageSize: 10 });
    assert.equal(firstPage.items.length, 10);
    assert.ok(firstPage.nextPageToken);
    const names: string[] = [];
    for await (const entry of wharf.objects.list("default", { prefix: "bob/out", pageSize: 10 })) {
      names.push(entry.name);
    }
    assert.equal(names.length, 26);
    assert.equal(new Set(names).size, 26);
    const archive = (await wharf.objects.listPage("default", { prefix: "bob/out", pageSize: 1000 })).items.find(
      (e) => e.name === "archive",
    );
    assert.equal(archive?.kind, "directory");

    await wharf.objects.delete("default", "bob/out/f00.txt");
    await assert.rejects(wharf.objects.getBytes("default", "bob/out/f00.txt"), (error: unknown) => {
      assert.ok(error instanceof WharfProblemError);
      assert.equal(error.status, 404);
      return true;
    });
  });

  test("hostile keys are refused", async () => {
    // Never sent: a URL would resolve the `..` into another key.
    await assert.rejects(wharf.objects.put("default", "../escape.txt", "x"), TypeError);
    await assert.rejects(wharf.objects.getBytes("default", "a/./b"), TypeError);
    // The server refuses the rest, naming the key.
    await assert.rejects(wharf.objects.put("default", "a//b.txt", "x"), (error: unknown) => {
      assert.ok(error instanceof WharfProblemError, String(error));
      assert.equal(error.status, 400);
      assert.ok(error.errors.some((e) => e.field === "key"), JSON.stringify(error.errors));
      return true;
    });
  });
});
