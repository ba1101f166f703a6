import type { components } from "./schema.js";

/** The test payload `POST /v1/webhooks/{id}/test` delivers. */
export interface WebhookTestPayload {
  id: string;
  type: "webhook.test";
  time: string;
  data: { webhookId: string; message: string; [key: string]: unknown };
}

/** What a Wharf webhook delivers: an event (`file.created`, …) or a test message. */
export type WebhookPayload = components["schemas"]["Event"] | WebhookTestPayload;

/**
 * The request headers of a delivery: a `Headers` object (fetch, Deno, Bun, edge runtimes) or a
 * plain object such as Node's `req.headers` (names are matched case-insensitively).
 */
export type WebhookHeaders =
  | Headers
  | Record<string, string | readonly string[] | undefined | null>;

export interface VerifyWebhookOptions {
  /** Largest accepted difference between `webhook-timestamp` and now (default 300 s). */
  toleranceSeconds?: number;
  /** The current time, for tests (default `Date.now()`). */
  now?: Date | number;
}

/** Thrown by `verifyWebhook` when a delivery is not authentic or not fresh. */
export class WebhookVerificationError extends Error {
  override readonly name = "WebhookVerificationError";
}

const PREFIX = "whsec_";
const encoder = new TextEncoder();

/**
 * Verifies a webhook delivery by the Standard Webhooks specification and returns its parsed
 * JSON payload; throws `WebhookVerificationError` if the delivery is not authentic or too old.
 *
 * The signature is the base64 HMAC-SHA256, keyed with the base64-decoded part of the
 * `whsec_…` secret, of `${webhook-id}.${webhook-timestamp}.${body}`. The `webhook-signature`
 * header holds one or more space-separated `v1,<base64>` entries (several during a secret
 * rotation); one match is enough. The timestamp must be within `toleranceSeconds` (5 minutes)
 * of now, either way. Signatures are compared in constant time.
 *
 * Pass the raw body exactly as received (string or bytes), not a re-serialized object.
 * Uses WebCrypto (`globalThis.crypto.subtle`): Node.js 20+, browsers, Deno, Bun and edge runtimes.
 */
export async function verifyWebhook<T = WebhookPayload>(
  secret: string,
  headers: WebhookHeaders,
  body: string | Uint8Array | ArrayBuffer,
  options: VerifyWebhookOptions = {},
): Promise<T> {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !timestamp || !signatures) {
    throw new WebhookVerificationError(
      "missing webhook-id, webhook-timestamp or webhook-signature header",
    );
  }

  if (!/^\d+$/.test(timestamp.trim())) {
    throw new WebhookVerificationError("webhook-timestamp is not a number of seconds");
  }
  const sentAt = Number(timestamp.trim());
  const now = options.now === undefined ? Date.now() : Number(options.now);
  const tolerance = options.toleranceSeconds ?? 300;
  const skew = Math.floor(now / 1000) - sentAt;
  if (skew > tolerance) throw new WebhookVerificationError("webhook-timestamp is too old");
  if (skew < -tolerance) throw new WebhookVerificationError("webhook-timestamp is too new");

  const bodyBytes = toBytes(body);
  const signedPrefix = encoder.encode(`${id}.${timestamp}.`);
  const signed = new Uint8Array(signedPrefix.length + bodyBytes.length);
  signed.set(signedPrefix, 0);
  signed.set(bodyBytes, signedPrefix.length);

  const subtle = globalThis.crypto?.subtle;
  if (!subtle) {
    throw new Error("verifyWebhook needs WebCrypto (globalThis.crypto.subtle): Node.js 20+ or a browser");
  }
  const key = await subtle.importKey(
    "raw",
    secretBytes(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const expected = new Uint8Array(await subtle.sign("HMAC", key, signed));

  let matched = false;
  for (const raw of signatures.split(/\s+/)) {
    // Repeated headers arrive joined with ", ": base64 has no commas, so drop trailing ones.
    const entry = raw.replace(/,+$/, "");
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue;
    const candidate = decodeBase64(entry.slice(comma + 1));
    // No early exit: every candidate is compared in full.
    if (candidate && constantTimeEqual(candidate, expected)) matched = true;
  }
  if (!matched) throw new WebhookVerificationError("no matching v1 signature");

  const text = typeof body === "string" ? body : new TextDecoder().decode(bodyBytes);
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new WebhookVerificationError("the payload is not JSON");
  }
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function") {
    // A fetch `Headers` (or look-alike): repeated headers come joined with ", ".
    return (headers as Headers).get(name) ?? undefined;
  }
  const record = headers as Record<string, string | readonly string[] | undefined | null>;
  for (const [key, value] of Object.entries(record)) {
    if (key.toLowerCase() !== name || value === undefined || value === null) continue;
    return typeof value === "string" ? value : value.join(" ");
  }
  return undefined;
}

function secretBytes(secret: string): Uint8Array<ArrayBuffer> {
  const encoded = secret.startsWith(PREFIX) ? secret.slice(PREFIX.length) : secret;
  const bytes = decodeBase64(encoded);
  if (!bytes || bytes.length === 0) {
    throw new WebhookVerificationError("the secret is not `whsec_` followed by base64");
  }
  return bytes;
}

function toBytes(body: string | Uint8Array | ArrayBuffer): Uint8Array {
  if (typeof body === "string") return encoder.encode(body);
  if (body instanceof Uint8Array) return body;
  return new Uint8Array(body);
}

function decodeBase64(text: string): Uint8Array<ArrayBuffer> | undefined {
  const clean = text.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean)) return undefined;
  let binary: string;
  try {
    binary = atob(clean);
  } catch {
    return undefined;
  }
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Compares two byte arrays in time that depends only on their lengths. */
function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
