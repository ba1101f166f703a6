// Webhooks against a real `wharf serve`: a local receiver gets real signed deliveries
// (POST /v1/webhooks/{id}/test), which verifyWebhook accepts, and refuses once tampered with.
import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import {
  verifyWebhook,
  Wharf,
  WharfProblemError,
  WebhookVerificationError,
  type WebhookPayload,
} from "@wharf/sdk";
import { startWharf, type WharfServer } from "./helpers/wharf-server.js";

interface Received {
  headers: IncomingHttpHeaders;
  body: Buffer;
}

let server: WharfServer;
let wharf: Wharf;
let receiver: Server;
let receiverUrl: string;
const received: Received[] = [];

before(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((done) => receiver.listen(0, "127.0.0.1", done));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/wharf`;
  server = await startWharf();
  wharf = new Wharf({ baseUrl: server.baseUrl, apiKey: server.apiKey });
});

after(async () => {
  await server?.stop();
  await new Promise((done) => receiver?.close(done));
});

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${server.output().slice(-4000)}`);
    await new Promise((done) => setTimeout(done, 100));
  }
}

test("a real test delivery verifies; tampered, wrong-secret and stale ones do not", async () => {
  const created = await wharf.webhooks.create({
    url: receiverUrl,
    events: ["file.created"],
    description: "SDK test receiver",
  });
  assert.match(created.secret, /^whsec_/);
  assert.match(created.id, /^wh_/);
  assert.deepEqual(created.events, ["file.created"]);

  const delivery = await wharf.webhooks.test(created.id);
  assert.equal(delivery.webhookId, created.id);
  assert.equal(delivery.eventType, "webhook.test");

  const request = await waitFor("the test delivery", () =>
    received.find((r) => r.headers["webhook-id"] === delivery.eventId),
  );
  assert.match(String(request.headers["webhook-signature"]), /^v1,/);

  // Node's req.headers and the raw body bytes, as a receiver has them.
  const payload = await verifyWebhook<WebhookPayload>(created.secret, request.headers, request.body);
  assert.equal(payload.id, delivery.eventId);
  assert.equal(payload.type, "webhook.test");
  assert.equal((payload.data as { webhookId?: string }).webhookId, created.id);
  // The same as a fetch Headers object and a string body.
  const asHeaders = new Headers();
  for (const [name, value] of Object.entries(request.headers)) {
    if (typeof value === "string") asHeaders.set(name, value);
  }
  assert.deepEqual(await verifyWebhook(created.secret, asHeaders, request.body.toString("utf8")), payload);

  // Tampered body.
  const tampered = request.body.toString("utf8").replace("webhook.test", "file.created");
  assert.notEqual(tampered, request.body.toString("utf8"));
  await assert.rejects(verifyWebhook(created.secret, request.headers, tampered), WebhookVerificationError);
  // One extra byte.
  await assert.rejects(
    verifyWebhook(created.secret, request.headers, Buffer.concat([request.body, Buffer.from(" ")])),
    WebhookVerificationError,
  );
  // Wrong secret: another webhook's.
  const other = await wharf.webhooks.create({ url: receiverUrl, events: ["file.deleted"] });
  assert.notEqual(other.secret, created.secret);
  await assert.rejects(verifyWebhook(other.secret, request.headers, request.body), /signature/);
  // Replayed more than 5 minutes later.
  const sentAt = Number(request.headers["webhook-timestamp"]) * 1000;
  await assert.rejects(
    verifyWebhook(created.secret, request.headers, request.body, { now: sentAt + 6 * 60 * 1000 }),
    /too old/,
  );
  assert.ok(
    await verifyWebhook(created.secret, request.headers, request.body, { now: sentAt + 4 * 60 * 1000 }),
  );

  // The delivery log shows the receiver's answer.
  const succeeded = await waitFor("the delivery to be recorded as succeeded", async () => {
    for await (const d of wharf.webhooks.deliveries(created.id)) {
      if (d.id === delivery.id && d.status === "succeeded") return d;
    }
    return undefined;
  });
  assert.ok(succeeded.attempts.some((a) => a.statusCode === 204), JSON.stringify(succeeded.attempts));

  // Only dead deliveries can be sent again: retrying a succeeded one is a typed 409.
  await assert.rejects(wharf.webhooks.retryDelivery(created.id, delivery.id), (e: unknown) => {
    assert.ok(e instanceof WharfProblemError, String(e));
    assert.equal(e.status, 409);
    assert.match(e.detail ?? "", /dead/);
    return true;
  });
});

test("webhooks: list, get, update, delete, deliveries paging and errors", async () => {
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const hook = await wharf.webhooks.create({
      url: `${receiverUrl}?n=${i}`,
      events: ["file.created", "file.deleted"],
      filter: { prefix: `partner-${i}/` },
    });
    ids.push(hook.id);
  }
  const listed: string[] = [];
  for await (const hook of wharf.webhooks.list({ pageSize: 2 })) listed.push(hook.id);
  for (const id of ids) assert.equal(listed.filter((x) => x === id).length, 1);

  const fetched = await wharf.webhooks.get(ids[0]!);
  assert.equal(fetched.filter.prefix, "partner-0/");
  assert.equal((fetched as Record<string, unknown>).secret, undefined, "no secret after create");

  const updated = await wharf.webhooks.update(ids[0]!, { enabled: false, description: "paused by test" });
  assert.equal(updated.enabled, false);
  assert.equal(updated.description, "paused by test");
  await assert.rejects(wharf.webhooks.test(ids[0]!), (e: unknown) => {
    assert.ok(e instanceof WharfProblemError);
    assert.equal(e.status, 409);
    return true;
  });

  // Several test deliveries, listed across pages.
  const hook = ids[1]!;
  const sent = [];
  for (let i = 0; i < 3; i++) sent.push((await wharf.webhooks.test(hook)).id);
  const page = await wharf.webhooks.deliveriesPage(hook, { pageSize: 2 });
  assert.equal(page.items.length, 2);
  assert.ok(page.nextPageToken);
  const all: string[] = [];
  for await (const d of wharf.webhooks.deliveries(hook, { pageSize: 2 })) all.push(d.id);
  assert.deepEqual([...all].sort(), [...sent].sort());

  await assert.rejects(
    wharf.webhooks.create({ url: "ftp://example.invalid/", events: ["file.created"] }),
    (e: unknown) => {
      assert.ok(e instanceof WharfProblemError);
      assert.equal(e.status, 400);
      assert.ok(e.errors.some((f) => f.field === "url"), JSON.stringify(e.errors));
      return true;
    },
  );

  await wharf.webhooks.delete(ids[2]!);
  await assert.rejects(wharf.webhooks.get(ids[2]!), (e: unknown) => e instanceof WharfProblemError && e.status === 404);
  await assert.rejects(
    wharf.webhooks.retryDelivery(hook, "dlv_nosuchdelivery"),
    (e: unknown) => e instanceof WharfProblemError && e.status === 404,
  );
});
