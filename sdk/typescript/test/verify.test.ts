// verifyWebhook on its own: the Standard Webhooks reference vector and the ways a delivery
// must be refused. (webhooks.test.ts verifies real deliveries from `wharf serve`.)
import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { test } from "node:test";
import { verifyWebhook, WebhookVerificationError } from "@wharf/sdk";

// The example of the Standard Webhooks specification and its reference libraries.
const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ID = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TIMESTAMP = 1614265330;
const BODY = '{"test": 2432232314}';
const SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const AT = TIMESTAMP * 1000;

function headers(signature = SIGNATURE, timestamp = TIMESTAMP, id = ID) {
  return {
    "webhook-id": id,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signature,
  };
}

function sign(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  return `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}

async function refused(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof WebhookVerificationError, `got ${String(error)}`);
    assert.match(error.message, pattern);
    return true;
  });
}

test("the reference vector verifies (string, bytes, Headers, several signatures)", async () => {
  assert.deepEqual(await verifyWebhook(SECRET, headers(), BODY, { now: AT }), { test: 2432232314 });
  assert.deepEqual(
    await verifyWebhook(SECRET, headers(), new TextEncoder().encode(BODY), { now: AT }),
    { test: 2432232314 },
  );
  assert.deepEqual(
    await verifyWebhook(SECRET, new Headers(headers()), Buffer.from(BODY), { now: AT }),
    { test: 2432232314 },
  );
  // Secret rotation: several space-separated signatures, one of them right.
  const several = `v1,${randomBytes(32).toString("base64")} v2,abc ${SIGNATURE}`;
  assert.ok(await verifyWebhook(SECRET, headers(several), BODY, { now: AT }));
  // Repeated header lines, joined with ", " by Node and by fetch's Headers.
  const joined = new Headers(headers(`v1,${randomBytes(32).toString("base64")}`));
  joined.append("webhook-signature", SIGNATURE);
  assert.ok(await verifyWebhook(SECRET, joined, BODY, { now: AT }));
  // Header names are case-insensitive in a plain object too; the secret may lack its prefix.
  const upper = { "Webhook-Id": ID, "Webhook-Timestamp": String(TIMESTAMP), "Webhook-Signature": SIGNATURE };
  assert.ok(await verifyWebhook(SECRET.slice("whsec_".length), upper, BODY, { now: AT }));
});

test("a tampered body, id or timestamp is refused", async () => {
  await refused(verifyWebhook(SECRET, headers(), '{"test": 2432232315}', { now: AT }), /signature/);
  await refused(verifyWebhook(SECRET, headers(SIGNATURE, TIMESTAMP, "msg_other"), BODY, { now: AT }), /signature/);
  await refused(verifyWebhook(SECRET, headers(SIGNATURE, TIMESTAMP + 1), BODY, { now: AT }), /signature/);
});

test("a wrong secret is refused", async () => {
  const other = `whsec_${randomBytes(32).toString("base64")}`;
  await refused(verifyWebhook(other, headers(), BODY, { now: AT }), /signature/);
});

test("an old or future timestamp is refused even with a valid signature", async () => {
  const secret = `whsec_${randomBytes(32).toString("base64")}`;
  const body = JSON.stringify({ id: "evt_1", type: "file.created" });
  const now = Math.floor(Date.now() / 1000);

  const fresh = now - 60;
  assert.ok(await verifyWebhook(secret, headers(sign(secret, ID, fresh, body), fresh), body));

  const old = now - 6 * 60;
  await refused(verifyWebhook(secret, headers(sign(secret, ID, old, body), old), body), /too old/);
  const future = now + 6 * 60;
  await refused(verifyWebhook(secret, headers(sign(secret, ID, future, body), future), body), /too new/);
  // The reference vector is from 2021: refused at the real current time.
  await refused(verifyWebhook(SECRET, headers(), BODY), /too old/);
  // A custom tolerance.
  assert.ok(await verifyWebhook(secret, headers(sign(secret, ID, old, body), old), body, { toleranceSeconds: 600 }));
});

test("missing headers and malformed values are refused", async () => {
  await refused(verifyWebhook(SECRET, { "webhook-id": ID }, BODY, { now: AT }), /missing/);
  await refused(verifyWebhook(SECRET, headers(SIGNATURE, Number.NaN), BODY, { now: AT }), /timestamp/);
  await refused(verifyWebhook(SECRET, headers("v1,not base64!"), BODY, { now: AT }), /signature/);
  await refused(verifyWebhook(SECRET, headers("g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), BODY, { now: AT }), /signature/);
  await refused(verifyWebhook("whsec_!!!", headers(), BODY, { now: AT }), /secret/);
});
