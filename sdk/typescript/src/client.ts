import createClient, { type Client } from "openapi-fetch";
import { WharfProblemError } from "./errors.js";
import { retryingFetch, type RetryOptions } from "./retry.js";
import type { components, operations, paths } from "./schema.js";

type Schemas = components["schemas"];

export type User = Schemas["User"];
export type CreatedUser = Schemas["CreatedUser"];
export type CreateUserRequest = Schemas["CreateUserRequest"];
export type UpdateUserRequest = Schemas["UpdateUserRequest"];
export type ResetPasswordRequest = Schemas["ResetPasswordRequest"];
export type NewPassword = Schemas["NewPassword"];
export type UserList = Schemas["UserList"];
export type Permissions = Schemas["Permissions"];
export type Bucket = Schemas["Bucket"];
export type BucketList = Schemas["BucketList"];
export type CreateBucketRequest = Schemas["CreateBucketRequest"];
export type Event = Schemas["Event"];
export type EventData = Schemas["EventData"];
export type EventType = Schemas["EventType"];
export type EventList = Schemas["EventList"];
export type Webhook = Schemas["Webhook"];
export type CreatedWebhook = Schemas["CreatedWebhook"];
export type CreateWebhookRequest = Schemas["CreateWebhookRequest"];
export type UpdateWebhookRequest = Schemas["UpdateWebhookRequest"];
export type WebhookFilter = Schemas["WebhookFilter"];
export type WebhookList = Schemas["WebhookList"];
export type Delivery = Schemas["Delivery"];
export type DeliveryAttempt = Schemas["DeliveryAttempt"];
export type DeliveryList = Schemas["DeliveryList"];
export type ServerInfo = Schemas["ServerInfo"];
export type BucketObject = Schemas["BucketObject"];
export type ObjectList = Schemas["ObjectList"];
export type ObjectKind = Schemas["ObjectKind"];
export type Ban = Schemas["Ban"];
export type BanKind = Schemas["BanKind"];
export type BanList = Schemas["BanList"];

/** The query parameters of an operation (`pageSize`, `pageToken`, filters, …). */
type Query<Op extends keyof operations> = NonNullable<operations[Op]["parameters"]["query"]>;

export type ListUsersParams = Query<"listUsers">;
export type ListEventsParams = Query<"listEvents">;
export type ListWebhooksParams = Query<"listWebhooks">;
export type ListDeliveriesParams = Query<"listDeliveries">;
export type ListObjectsParams = Query<"listObjects">;
export type ListBansParams = Query<"listBans">;

/** The raw, fully typed openapi-fetch client over every path of `openapi/openapi.json`. */
export type WharfApiClient = Client<paths>;

export interface WharfOptions {
  /** Where the API is, without `/v1` (e.g. `http://127.0.0.1:8080`). */
  baseUrl: string;
  /** An API key, sent as `Authorization: Bearer <apiKey>`. */
  apiKey: string;
  /**
   * Retries on 429 and 503 (every method) and on network errors (idempotent methods), with
   * exponential backoff and jitter, honoring `Retry-After`. `false` turns them off.
   */
  retry?: RetryOptions | false;
  /** A `fetch` to use instead of `globalThis.fetch` (it receives a `Request`). */
  fetch?: (input: Request) => Promise<Response>;
  /** Extra headers sent with every request. */
  headers?: Record<string, string>;
}

/**
 * A client of the Wharf REST API.
 *
 * ```ts
 * const wharf = new Wharf({ baseUrl: "http://127.0.0.1:8080", apiKey: process.env.WHARF_API_KEY! });
 * const alice = await wharf.users.create({ description: "Trading partner Alice", homeDirectory: "/alice" });
 * ```
 *
 * Every method resolves to the response body and throws `WharfProblemError` for a non-2xx
 * answer. `list()` methods are async iterators over every item of every page.
 */
export class Wharf {
  /** The typed openapi-fetch client underneath, for anything not wrapped here. */
  readonly api: WharfApiClient;
  readonly users: UsersApi;
  readonly buckets: BucketsApi;
  readonly events: EventsApi;
  readonly webhooks: WebhooksApi;
  readonly server: ServerApi;
  readonly objects: ObjectsApi;
  readonly bans: BansApi;

  constructor(options: WharfOptions) {
    if (!options || typeof options.baseUrl !== "string" || options.baseUrl === "") {
      throw new TypeError("Wharf: baseUrl is required (e.g. http://127.0.0.1:8080)");
    }
    if (typeof options.apiKey !== "string" || options.apiKey === "") {
      throw new TypeError("Wharf: apiKey is required");
    }
    const baseFetch = options.fetch ?? ((request: Request) => globalThis.fetch(request));
    const fetch = options.retry === false ? baseFetch : retryingFetch(baseFetch, options.retry);
    const baseUrl = options.baseUrl.replace(/\/+$/, "");
    const headers = {
      Accept: "application/json, application/problem+json",
      ...options.headers,
      Authorization: `Bearer ${options.apiKey}`,
    };
    this.api = createClient<paths>({ baseUrl, fetch, headers });
    // Object transfers build their own requests (keys keep their `/`, bodies stream); a
    // streamed body cannot be sent twice, so only replayable requests are retried.
    const send = (request: Request, replayable: boolean): Promise<Response> => {
      for (const [name, value] of Object.entries(headers)) {
        if (!request.headers.has(name)) request.headers.set(name, value);
      }
      return replayable ? fetch(request) : baseFetch(request);
    };
    this.objects = new ObjectsApi(this.api, send, baseUrl);
    this.users = new UsersApi(this.api);
    this.buckets = new BucketsApi(this.api);
    this.events = new EventsApi(this.api);
    this.webhooks = new WebhooksApi(this.api);
    this.server = new ServerApi(this.api);
    this.bans = new BansApi(this.api);
  }
}

/** Bans after failed logins: client addresses and user names, held on every gateway. */
export class BansApi {
  constructor(private readonly api: WharfApiClient) {}

  listPage(params: ListBansParams = {}): Promise<BanList> {
    return unwrap(this.api.GET("/v1/bans", { params: { query: params } }));
  }

  /** Every ban in force, page after page. */
  list(params: Omit<ListBansParams, "pageToken"> = {}): AsyncIterableIterator<Ban> {
    return paginate((pageToken) => this.listPage({ ...params, ...token(pageToken) }));
  }

  /** Lifts the ban of a client address (for an IPv6 /64, any address in it). */
  async liftAddress(address: string): Promise<void> {
    await unwrap(
      this.api.DELETE("/v1/bans/addresses/{address}", {
        params: { path: { address: id("address", address) } },
      }),
    );
  }

  /** Lifts the ban of a user name: its password logins work again. */
  async liftUser(username: string): Promise<void> {
    await unwrap(
      this.api.DELETE("/v1/bans/users/{username}", {
        params: { path: { username: id("username", username) } },
      }),
    );
  }
}

/** Users: partners' logins, each with a home directory in a bucket. */
export class UsersApi {
  constructor(private readonly api: WharfApiClient) {}

  /** Creates a user; the reply holds its generated password, shown this once only. */
  create(user: CreateUserRequest): Promise<CreatedUser> {
    return unwrap(this.api.POST("/v1/users", { body: user }));
  }

  /** One user (with `lastConnectedAt`). */
  get(username: string): Promise<User> {
    return unwrap(
      this.api.GET("/v1/users/{username}", { params: { path: { username: id("username", username) } } }),
    );
  }

  /** Changes the fields given (description, homeDirectory, permissions, publicKeys, disabled, …). */
  update(username: string, changes: UpdateUserRequest): Promise<User> {
    return unwrap(
      this.api.PATCH("/v1/users/{username}", {
        params: { path: { username: id("username", username) } },
        body: changes,
      }),
    );
  }

  /** Deletes a user (its files stay in the bucket). */
  async delete(username: string): Promise<void> {
    await unwrap(
      this.api.DELETE("/v1/users/{username}", { params: { path: { username: id("username", username) } } }),
    );
  }

  /** Generates a new password (the old one stops working) and returns it, shown this once only. */
  resetPassword(username: string, options?: ResetPasswordRequest): Promise<NewPassword> {
    return unwrap(
      this.api.POST("/v1/users/{username}/password", {
        params: { path: { username: id("username", username) } },
        ...(options === undefined ? {} : { body: options }),
      }),
    );
  }

  /** One page of users; pass its `nextPageToken` as `pageToken` for the next. */
  listPage(params: ListUsersParams = {}): Promise<UserList> {
    return unwrap(this.api.GET("/v1/users", { params: { query: params } }));
  }

  /** Every user, page after page (`for await (const user of wharf.users.list()) …`). */
  list(params: Omit<ListUsersParams, "pageToken"> = {}): AsyncIterableIterator<User> {
    return paginate((pageToken) => this.listPage({ ...params, ...token(pageToken) }));
  }
}

/** Buckets: where home directories live (local disk, S3, GCS, Azure). */
export class BucketsApi {
  constructor(private readonly api: WharfApiClient) {}

  /** Registers a bucket that already exists in its object store. */
  create(bucket: CreateBucketRequest): Promise<Bucket> {
    return unwrap(this.api.POST("/v1/buckets", { body: bucket }));
  }

  get(bucketName: string): Promise<Bucket> {
    return unwrap(
      this.api.GET("/v1/buckets/{bucketName}", {
        params: { path: { bucketName: id("bucketName", bucketName) } },
      }),
    );
  }

  /** Removes a bucket from Wharf (its objects stay in the store); 409 while users are in it. */
  async delete(bucketName: string): Promise<void> {
    await unwrap(
      this.api.DELETE("/v1/buckets/{bucketName}", {
        params: { path: { bucketName: id("bucketName", bucketName) } },
      }),
    );
  }

  /** The list of buckets as one page. */
  listPage(): Promise<BucketList> {
    return unwrap(this.api.GET("/v1/buckets"));
  }

  /** Every bucket (`for await (const bucket of wharf.buckets.list()) …`). */
  async *list(): AsyncIterableIterator<Bucket> {
    yield* (await this.listPage()).items;
  }
}

/** Events: every completed upload, delete and rename, newest first. */
export class EventsApi {
  constructor(private readonly api: WharfApiClient) {}

  get(eventId: string): Promise<Event> {
    return unwrap(
      this.api.GET("/v1/events/{eventId}", { params: { path: { eventId: id("eventId", eventId) } } }),
    );
  }

  /** One page of events, filtered by `type`, `username`, `bucketName`, `prefix`. */
  listPage(params: ListEventsParams = {}): Promise<EventList> {
    return unwrap(this.api.GET("/v1/events", { params: { query: params } }));
  }

  /** Every matching event, newest first, page after page. */
  list(params: Omit<ListEventsParams, "pageToken"> = {}): AsyncIterableIterator<Event> {
    return paginate((pageToken) => this.listPage({ ...params, ...token(pageToken) }));
  }
}

/** Webhooks: signed deliveries of events (Standard Webhooks). */
export class WebhooksApi {
  constructor(private readonly api: WharfApiClient) {}

  /** Creates a webhook; the reply holds its signing `secret` (`whsec_…`), shown this once only. */
  create(webhook: CreateWebhookRequest): Promise<CreatedWebhook> {
    return unwrap(this.api.POST("/v1/webhooks", { body: webhook }));
  }

  get(webhookId: string): Promise<Webhook> {
    return unwrap(
      this.api.GET("/v1/webhooks/{webhookId}", {
        params: { path: { webhookId: id("webhookId", webhookId) } },
      }),
    );
  }

  /** Changes the fields given (`{enabled: true}` also resumes a paused webhook). */
  update(webhookId: string, changes: UpdateWebhookRequest): Promise<Webhook> {
    return unwrap(
      this.api.PATCH("/v1/webhooks/{webhookId}", {
        params: { path: { webhookId: id("webhookId", webhookId) } },
        body: changes,
      }),
    );
  }

  async delete(webhookId: string): Promise<void> {
    await unwrap(
      this.api.DELETE("/v1/webhooks/{webhookId}", {
        params: { path: { webhookId: id("webhookId", webhookId) } },
      }),
    );
  }

  listPage(params: ListWebhooksParams = {}): Promise<WebhookList> {
    return unwrap(this.api.GET("/v1/webhooks", { params: { query: params } }));
  }

  /** Every webhook, page after page. */
  list(params: Omit<ListWebhooksParams, "pageToken"> = {}): AsyncIterableIterator<Webhook> {
    return paginate((pageToken) => this.listPage({ ...params, ...token(pageToken) }));
  }

  /** One page of a webhook's deliveries (newest first), each with every attempt. */
  deliveriesPage(webhookId: string, params: ListDeliveriesParams = {}): Promise<DeliveryList> {
    return unwrap(
      this.api.GET("/v1/webhooks/{webhookId}/deliveries", {
        params: { path: { webhookId: id("webhookId", webhookId) }, query: params },
      }),
    );
  }

  /** Every delivery of a webhook, newest first, page after page. */
  deliveries(
    webhookId: string,
    params: Omit<ListDeliveriesParams, "pageToken"> = {},
  ): AsyncIterableIterator<Delivery> {
    return paginate((pageToken) =>
      this.deliveriesPage(webhookId, { ...params, ...token(pageToken) }),
    );
  }

  /** Sends a delivery again now (a dead one too); it keeps its `webhook-id`. */
  retryDelivery(webhookId: string, deliveryId: string): Promise<Delivery> {
    return unwrap(
      this.api.POST("/v1/webhooks/{webhookId}/deliveries/{deliveryId}/retry", {
        params: {
          path: { webhookId: id("webhookId", webhookId), deliveryId: id("deliveryId", deliveryId) },
        },
      }),
    );
  }

  /** Queues a signed `webhook.test` delivery to the webhook's URL and returns it. */
  test(webhookId: string): Promise<Delivery> {
    return unwrap(
      this.api.POST("/v1/webhooks/{webhookId}/test", {
        params: { path: { webhookId: id("webhookId", webhookId) } },
      }),
    );
  }
}

/**
 * What an object upload accepts: any fetch `BodyInit` (bytes, `Blob`/`File`, string,
 * `ReadableStream`, …). A `ReadableStream` (or any other non-replayable body) is streamed as
 * it is read, never buffered, and never retried.
 */
export type ObjectBody = BodyInit | ReadableStream<Uint8Array> | Uint8Array | Blob | string;

/** Objects: the files in a bucket (keys without a leading `/`, like `alice/in/x.edi`). */
export class ObjectsApi {
  constructor(
    private readonly api: WharfApiClient,
    private readonly send: (request: Request, replayable: boolean) => Promise<Response>,
    private readonly baseUrl: string,
  ) {}

  /** One page of one directory level (`prefix` is a directory, `""` the bucket root). */
  listPage(bucketName: string, params: ListObjectsParams = {}): Promise<ObjectList> {
    return unwrap(
      this.api.GET("/v1/buckets/{bucketName}/objects", {
        params: { path: { bucketName: id("bucketName", bucketName) }, query: params },
      }),
    );
  }

  /** Every entry of a directory (files and subdirectories, one level), page after page. */
  list(
    bucketName: string,
    params: Omit<ListObjectsParams, "pageToken"> = {},
  ): AsyncIterableIterator<BucketObject> {
    return paginate((pageToken) => this.listPage(bucketName, { ...params, ...token(pageToken) }));
  }

  /**
   * Downloads an object: the `Response`, whose `body` is a `ReadableStream` read from the
   * network as you consume it (nothing is buffered here). Its headers carry `Content-Length`,
   * `ETag` and `Last-Modified`. `range` is an HTTP range (`"bytes=0-99"`, `"bytes=100-"`,
   * `"bytes=-100"`): the answer is then 206 with `Content-Range`.
   */
  async get(bucketName: string, key: string, options: { range?: string } = {}): Promise<Response> {
    const headers: Record<string, string> = { Accept: "application/octet-stream, application/problem+json" };
    if (options.range !== undefined) headers.Range = options.range;
    const response = await this.send(
      new Request(this.url(bucketName, key), { method: "GET", headers }),
      true,
    );
    return okOrThrow(response);
  }

  /** Downloads a whole object into memory (for small files; use `get` to stream). */
  async getBytes(bucketName: string, key: string): Promise<Uint8Array> {
    const response = await this.get(bucketName, key);
    return new Uint8Array(await response.arrayBuffer());
  }

  /**
   * Uploads (or replaces) an object; missing parent directories are created. Resolves to the
   * stored object with its `size` and `sha256`. Bytes, strings and `Blob`s are retried like
   * any request; a `ReadableStream` is streamed and, since it cannot be sent twice, not.
   */
  async put(bucketName: string, key: string, body: ObjectBody): Promise<BucketObject> {
    const url = this.url(bucketName, key);
    const replayable = isReplayable(body);
    const init: RequestInit & { duplex?: "half" } = {
      method: "PUT",
      body: body as BodyInit,
      headers: { "Content-Type": "application/octet-stream" },
    };
    // Fetch requires it of a streamed request body (Node's fetch throws without it).
    if (!replayable) init.duplex = "half";
    const response = await this.send(new Request(url, init), replayable);
    return (await (await okOrThrow(response)).json()) as BucketObject;
  }

  /** Creates a directory (and its parents); an existing one is fine. */
  async mkdir(bucketName: string, path: string): Promise<BucketObject> {
    const key = typeof path === "string" ? path.replace(/\/+$/, "") : path;
    const request = new Request(`${this.url(bucketName, key)}/`, { method: "PUT", body: "" });
    return (await (await okOrThrow(await this.send(request, true))).json()) as BucketObject;
  }

  /** Deletes a file or an empty directory (`recursive: true`: a directory and its content). */
  async delete(bucketName: string, key: string, options: { recursive?: boolean } = {}): Promise<void> {
    const query = options.recursive ? "?recursive=true" : "";
    const response = await this.send(
      new Request(`${this.url(bucketName, key)}${query}`, { method: "DELETE" }),
      true,
    );
    await okOrThrow(response);
    await response.body?.cancel();
  }

  /** The object's URL: each segment of the key percent-encoded, its `/` kept. */
  private url(bucketName: string, key: string): string {
    if (typeof key !== "string") throw new TypeError("key must be a string");
    const segments = key.split("/");
    // A URL resolves `.` and `..` segments (percent-encoded ones too) before anything is
    // sent, so such a key would name another object or resource (`../../default` of bucket
    // `default` is `/v1/buckets/default`). The server refuses these keys anyway: they are
    // refused here, with the answer it would give.
    if (key === "") throw badKey("must not be empty");
    if (segments.some((segment) => segment === "." || segment === "..")) {
      throw badKey("must not contain '.' or '..' segments");
    }
    const path = segments.map(encodeURIComponent).join("/");
    return `${this.baseUrl}/v1/buckets/${encodeURIComponent(id("bucketName", bucketName))}/objects/${path}`;
  }
}

/**
 * Whether a request body can be sent again (retried): bytes, strings, `Blob`s, form data.
 * Anything else (a `ReadableStream`, an async iterable) is consumed by the first attempt.
 */
function isReplayable(body: unknown): boolean {
  return (
    body === null ||
    body === undefined ||
    typeof body === "string" ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body) ||
    (typeof Blob !== "undefined" && body instanceof Blob) ||
    (typeof URLSearchParams !== "undefined" && body instanceof URLSearchParams) ||
    (typeof FormData !== "undefined" && body instanceof FormData)
  );
}

/**
 * The 400 the server answers for a key it refuses (the same problem document), for the keys
 * refused before sending. Its `response` is made here: nothing was sent.
 */
function badKey(message: string): WharfProblemError {
  const problem = {
    type: "https://wharf.dev/problems/invalid-request",
    title: "Invalid request",
    status: 400,
    detail: `key: ${message}`,
    errors: [{ field: "key", message }],
  };
  const response = new Response(JSON.stringify(problem), {
    status: 400,
    statusText: "Bad Request",
    headers: { "Content-Type": "application/problem+json" },
  });
  return new WharfProblemError(response, problem);
}

/** The response if it is a 2xx; otherwise its problem document, thrown. */
async function okOrThrow(response: Response): Promise<Response> {
  if (response.ok) return response;
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    body = undefined;
  }
  throw new WharfProblemError(response, body);
}

/** How partners reach this installation. */
export class ServerApi {
  constructor(private readonly api: WharfApiClient) {}

  /** Version, endpoint host name, SFTP/FTPS ports and host key fingerprints. */
  get(): Promise<ServerInfo> {
    return unwrap(this.api.GET("/v1/server"));
  }
}

/** The body of a 2xx answer; a `WharfProblemError` for any other. */
async function unwrap<D>(
  call: Promise<{ data?: D; error?: unknown; response: Response }>,
): Promise<D> {
  const { data, error, response } = await call;
  if (!response.ok) throw new WharfProblemError(response, error);
  return data as D;
}

/** Rejects an empty id, which would otherwise address the collection instead. */
function id(name: string, value: string): string {
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`${name} must be a non-empty string`);
  }
  return value;
}

function token(pageToken: string | undefined): { pageToken?: string } {
  return pageToken === undefined ? {} : { pageToken };
}

/** Follows `nextPageToken` until a page has none, yielding every item once. */
async function* paginate<T>(
  fetchPage: (pageToken: string | undefined) => Promise<{ items: T[]; nextPageToken?: string | null }>,
): AsyncGenerator<T, void, undefined> {
  const seen = new Set<string>();
  let pageToken: string | undefined;
  do {
    const page = await fetchPage(pageToken);
    yield* page.items;
    pageToken = page.nextPageToken ?? undefined;
    if (pageToken !== undefined) {
      if (seen.has(pageToken)) throw new Error(`the server repeated nextPageToken ${pageToken}`);
      seen.add(pageToken);
    }
  } while (pageToken);
}
