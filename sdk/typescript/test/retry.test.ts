// Client-side retries against a tiny local HTTP server that fails on purpose: 503 and 429
// (honoring Retry-After), network errors (idempotent methods only), and giving up.
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { parseRetryAfter, Wharf, WharfProblemError } from "@wharf/sdk";

type Handler = (req: IncomingMessage, res: ServerResponse, attempt: number, body: string) => void;

interface Seen {
  method: string;
  url: string;
  authorization: string | undefined;
  body: string;
  at: number;
}

/** Runs `fn` against a server answering with `handler`; returns what the server saw. */
async function withServer(handler: Handler, fn: (baseUrl: string) => Promise<void>): Promise<Seen[]> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        authorization: req.headers.authorization,
        body,
        at: Date.now(),
      });
      handler(req, res, seen.length, body);
    });
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  try {
    await fn(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    server.closeAllConnections();
    await new Promise((done) => server.close(done));
  }
  return seen;
}

const USER = {
  username: "ALICE001",
  description: "Trading partner Alice",
  homeDirectory: "/alice",
  bucketName: "default",
  endpoint: "localhost",
  permissions: "read-write",
  publicKeys: [],
  disabled: false,
  maxSessions: 10,
  createdAt: "2026-01-01T00:00:00Z",
  updatedAt: "2026-01-01T00:00:00Z",
};

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
}

function problem(res: ServerResponse, status: number, headers: Record<string, string> = {}) {
  res
    .writeHead(status, { "content-type": "application/problem+json", ...headers })
    .end(JSON.stringify({ type: "about:blank", title: "Service Unavailable", status, detail: "try later" }));
}

const fast = { initialDelayMs: 10, maxDelayMs: 50 };

test("503 twice then 200: the GET succeeds on the third attempt", async () => {
  const seen = await withServer(
    (_req, res, attempt) => (attempt <= 2 ? problem(res, 503) : json(res, 200, USER)),
    async (baseUrl) => {
      const wharf = new Wharf({ baseUrl, apiKey: "k1", retry: fast });
      const user = await wharf.users.get("ALICE001");
      assert.equal(user.username, "ALICE001");
    },
  );
  assert.equal(seen.length, 3);
  for (const s of seen) {
    assert.equal(s.url, "/v1/users/ALICE001");
    assert.equal(s.authorization, "Bearer k1");
  }
});

test("503 twice then 201 for a POST, resending the same body, honoring Retry-After", async () => {
  const created = { ...USER, password: "p".repeat(16) };
  const seen = await withServer(
    (_req, res, attempt) =>
      attempt <= 2 ? problem(res, 503, { "retry-after": "1" }) : json(res, 201, created),
    async (baseUrl) => {
      const wharf = new Wharf({ baseUrl, apiKey: "k", retry: fast });
      const user = await wharf.users.create({ description: "Trading partner Alice", homeDirectory: "/alice" });
      assert.equal(user.password, created.password);
    },
  );
  assert.equal(seen.length, 3);
  for (const s of seen) {
    assert.equal(s.method, "POST");
    assert.deepEqual(JSON.parse(s.body), { description: "Trading partner Alice", homeDirectory: "/alice" });
  }
  // Retry-After: 1 means a second between attempts, not the 10-50 ms backoff.
  assert.ok(seen[1]!.at - seen[0]!.at >= 900, `waited ${seen[1]!.at - seen[0]!.at} ms`);
  assert.ok(seen[2]!.at - seen[1]!.at >= 900, `waited ${seen[2]!.at - seen[1]!.at} ms`);
});

test("429 is retried too", async () => {
  const seen = await withServer(
    (_req, res, attempt) =>
      attempt === 1 ? problem(res, 429, { "retry-after": "0" }) : json(res, 200, { items: [USER] }),
    async (baseUrl) => {
      const wharf = new Wharf({ baseUrl, apiKey: "k", retry: fast });
      const page = await wharf.users.listPage({ pageSize: 10 });
      assert.equal(page.items.length, 1);
    },
  );
  assert.equal(seen.length, 2);
  assert.equal(seen[0]!.url, "/v1/users?pageSize=10");
});

test("gives up after maxRetries with the last answer as a WharfProblemError", async () => {
  const seen = await withServer(
    (_req, res) => problem(res, 503),
    async (baseUrl) => {
      const wharf = new Wharf({ baseUrl, apiKey: "k", retry: { ...fast, maxRetries: 2 } });
      await assert.rejects(wharf.users.get("ALICE001"), (e: unknown) => {
        assert.ok(e instanceof WharfProblemError);
        assert.equal(e.status, 503);
        assert.equal(e.detail, "try later");
        return true;
      });
    },
  );
  assert.equal(seen.length, 3);
});

test("a Retry-After beyond maxRetryAfterMs is not waited for", async () => {
  const seen = await withServer(
    (_req, res) => problem(res, 503, { "retry-after": "3600" }),
    async (baseUrl) => {
      const wharf = new Wharf({ baseUrl, apiKey: "k", retry: { ...fast, maxRetryAfterMs: 5000 } });
      await assert.rejects(wharf.users.get("ALICE001"), (e: unknown) => e instanceof WharfProblemError && e.status === 503);
    },
  );
  assert.equal(seen.length, 1);
});

test("other errors are not retried; retry: false turns retrying off", async () => {
  let seen = await withServer(
    (_req, res) => problem(res, 500),
    async (baseUrl) => {
      const wharf = new Wharf({ baseUrl, apiKey: "k", retry: fast });
      await assert.rejects(wharf.users.get("ALICE001"), (e: unknown) => e instanceof WharfProblemError && e.status === 500);
    },
  );
  assert.equal(seen.length, 1);
  seen = await withServer(
    (_req, res) => problem(res, 503),
    async (baseUrl) => {
      const wharf = new Wharf({ baseUrl, apiKey: "k", retry: false });
      await assert.rejects(wharf.users.get("ALICE001"), (e: unknown) => e instanceof WharfProblemError && e.status === 503);
    },
  );
  assert.equal(seen.length, 1);
});

test("network errors are retried for GET and DELETE but not for POST", async () => {
  // The first connection of each request is cut before any answer.
  const dropFirst: Handler = (req, res, attempt) => {
    if (attempt % 2 === 1) {
      req.socket.destroy();
      return;
    }
    if (req.method === "DELETE") res.writeHead(204).end();
    else json(res, 200, USER);
  };
  let seen = await withServer(dropFirst, async (baseUrl) => {
    const wharf = new Wharf({ baseUrl, apiKey: "k", retry: fast });
    assert.equal((await wharf.users.get("ALICE001")).username, "ALICE001");
    await wharf.users.delete("ALICE001");
  });
  assert.deepEqual(
    seen.map((s) => s.method),
    ["GET", "GET", "DELETE", "DELETE"],
  );

  seen = await withServer(dropFirst, async (baseUrl) => {
    const wharf = new Wharf({ baseUrl, apiKey: "k", retry: fast });
    await assert.rejects(wharf.users.resetPassword("ALICE001"), TypeError);
  });
  assert.equal(seen.length, 1, "a POST that may have arrived is not sent twice");
});

test("a non-problem error body still becomes a WharfProblemError", async () => {
  await withServer(
    (_req, res) => res.writeHead(502, { "content-type": "text/html" }).end("<h1>Bad gateway</h1>"),
    async (baseUrl) => {
      const wharf = new Wharf({ baseUrl, apiKey: "k", retry: fast });
      await assert.rejects(wharf.users.get("x"), (e: unknown) => {
        assert.ok(e instanceof WharfProblemError);
        assert.equal(e.status, 502);
        assert.equal(e.type, "about:blank");
        assert.deepEqual(e.errors, []);
        assert.match(e.detail ?? "", /Bad gateway/);
        return true;
      });
    },
  );
});

test("parseRetryAfter reads seconds and HTTP dates", () => {
  assert.equal(parseRetryAfter("2"), 2000);
  assert.equal(parseRetryAfter(null), undefined);
  assert.equal(parseRetryAfter("soon"), undefined);
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(parseRetryAfter("Thu, 01 Jan 2026 00:00:05 GMT", now), 5000);
  assert.equal(parseRetryAfter("Wed, 31 Dec 2025 23:59:00 GMT", now), 0);
});

const STORED = { key: "alice/in/x.bin", name: "x.bin", kind: "file", size: 5, sha256: "0".repeat(64) };

/** A body that can be read once: a ReadableStream of these strings. */
function streamOf(...parts: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const part of parts) controller.enqueue(encoder.encode(part));
      controller.close();
    },
  });
}

test("object uploads: bytes, strings and Blobs are retried with the same body; streams are not", async () => {
  const failFirst: Handler = (_req, res, attempt) =>
    attempt === 1 ? problem(res, 503, { "retry-after": "0" }) : json(res, 201, STORED);
  for (const body of [new TextEncoder().encode("hello"), "hello", new Blob(["hel", "lo"])]) {
    const seen = await withServer(failFirst, async (baseUrl) => {
      const wharf = new Wharf({ baseUrl, apiKey: "k", retry: fast });
      assert.equal((await wharf.objects.put("default", "alice/in/x.bin", body)).size, 5);
    });
    assert.deepEqual(
      seen.map((s) => [s.method, s.url, s.body, s.authorization]),
      [
        ["PUT", "/v1/buckets/default/objects/alice/in/x.bin", "hello", "Bearer k"],
        ["PUT", "/v1/buckets/default/objects/alice/in/x.bin", "hello", "Bearer k"],
      ],
    );
  }

  // A stream is read by the first attempt: its 503 is thrown, not retried.
  let seen = await withServer(failFirst, async (baseUrl) => {
    const wharf = new Wharf({ baseUrl, apiKey: "k", retry: fast });
    await assert.rejects(wharf.objects.put("default", "alice/in/x.bin", streamOf("hel", "lo")), (e: unknown) => {
      assert.ok(e instanceof WharfProblemError);
      assert.equal(e.status, 503);
      return true;
    });
  });
  assert.deepEqual(seen.map((s) => s.body), ["hello"]);

  // Nor after a network error.
  seen = await withServer(
    (req, res, attempt) => (attempt === 1 ? req.socket.destroy() : json(res, 201, STORED)),
    async (baseUrl) => {
      const wharf = new Wharf({ baseUrl, apiKey: "k", retry: fast });
      await assert.rejects(wharf.objects.put("default", "alice/in/x.bin", streamOf("hello")), TypeError);
    },
  );
  assert.equal(seen.length, 1);
});

test("object downloads and deletes are retried; keys keep their / and encode the rest", async () => {
  const seen = await withServer(
    (req, res, attempt) => {
      if (attempt % 2 === 1) return problem(res, 503, { "retry-after": "0" });
      if (req.method === "DELETE") return res.writeHead(204).end();
      res.writeHead(206, { "content-type": "application/octet-stream", "content-range": "bytes 0-1/5" }).end("he");
    },
    async (baseUrl) => {
      const wharf = new Wharf({ baseUrl, apiKey: "k", retry: fast });
      const response = await wharf.objects.get("default", "alice/in/a b#1?.txt", { range: "bytes=0-1" });
      assert.equal(response.status, 206);
      assert.equal(await response.text(), "he");
      await wharf.objects.delete("default", "alice/in/%.txt", { recursive: true });
    },
  );
  assert.deepEqual(
    seen.map((s) => [s.method, s.url]),
    [
      ["GET", "/v1/buckets/default/objects/alice/in/a%20b%231%3F.txt"],
      ["GET", "/v1/buckets/default/objects/alice/in/a%20b%231%3F.txt"],
      ["DELETE", "/v1/buckets/default/objects/alice/in/%25.txt?recursive=true"],
      ["DELETE", "/v1/buckets/default/objects/alice/in/%25.txt?recursive=true"],
    ],
  );
});

test("keys with . or .. segments are refused before anything is sent", async () => {
  const seen = await withServer(
    (_req, res) => json(res, 201, STORED),
    async (baseUrl) => {
      const wharf = new Wharf({ baseUrl, apiKey: "k", retry: fast });
      // Sent as is, these would reach /v1/buckets/default (and delete the bucket's registration)
      // or another key: a URL resolves dot segments, even percent-encoded ones.
      for (const call of [
        () => wharf.objects.delete("default", ".."),
        () => wharf.objects.delete("default", "../../default"),
        () => wharf.objects.put("default", "a/%2e%2e/../b", "x"),
        () => wharf.objects.get("default", "./x"),
        () => wharf.objects.mkdir("default", "a/.."),
      ]) {
        await assert.rejects(call(), (e: unknown) => {
          assert.ok(e instanceof WharfProblemError, String(e));
          assert.equal(e.status, 400);
          assert.equal(e.fieldError("key"), "must not contain '.' or '..' segments");
          return true;
        });
      }
      await assert.rejects(wharf.objects.put("default", "", "x"), (e: unknown) => {
        assert.ok(e instanceof WharfProblemError);
        assert.equal(e.fieldError("key"), "must not be empty");
        return true;
      });
    },
  );
  assert.equal(seen.length, 0);
});
