/** How the client retries requests the server could not take right now. */
export interface RetryOptions {
  /** Retries after the first attempt (default 3; 0 turns retrying off). */
  maxRetries?: number;
  /** Backoff before the first retry, doubled for each further one (default 250 ms). */
  initialDelayMs?: number;
  /** Cap of the exponential backoff (default 10 000 ms). */
  maxDelayMs?: number;
  /**
   * The longest `Retry-After` the client waits for (default 60 000 ms). An answer asking for a
   * longer wait is returned as it is (and so thrown as a `WharfProblemError`).
   */
  maxRetryAfterMs?: number;
  /** Statuses retried for every method (default 429 and 503). */
  retryStatuses?: number[];
}

type Fetch = (input: Request) => Promise<Response>;

/** Methods that may be sent twice with the same effect: retried after a network error too. */
const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]);

const DEFAULTS = {
  maxRetries: 3,
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  maxRetryAfterMs: 60_000,
  retryStatuses: [429, 503],
};

/**
 * Wraps `fetch` with retries: on 429 and 503 for every method (the server did not take the
 * request), and on network errors for idempotent methods only (a POST may have arrived). Waits
 * as `Retry-After` says (seconds or an HTTP date) when the answer has one, else exponential
 * backoff with full jitter. Stops early if the request's signal is aborted.
 */
export function retryingFetch(baseFetch: Fetch, options: RetryOptions = {}): Fetch {
  const opts = { ...DEFAULTS, ...stripUndefined(options) };
  const retryStatuses = new Set(opts.retryStatuses);
  return async (request: Request): Promise<Response> => {
    for (let attempt = 0; ; attempt++) {
      const last = attempt >= opts.maxRetries;
      // A Request's body can be read once: every attempt but the last sends a copy.
      const sent = last ? request : request.clone();
      let response: Response;
      try {
        response = await baseFetch(sent);
      } catch (error) {
        if (last || request.signal.aborted || !IDEMPOTENT.has(request.method.toUpperCase())) {
          throw error;
        }
        await sleep(backoff(attempt, opts), request.signal);
        continue;
      }
      if (last || !retryStatuses.has(response.status)) return response;
      let delay = backoff(attempt, opts);
      const retryAfter = parseRetryAfter(response.headers.get("retry-after"));
      if (retryAfter !== undefined) {
        if (retryAfter > opts.maxRetryAfterMs) return response;
        delay = retryAfter;
      }
      // Free the connection before waiting.
      await response.body?.cancel().catch(() => undefined);
      await sleep(delay, request.signal);
    }
  };
}

/** Full jitter: a random wait between 0 and min(max, initial * 2^attempt). */
function backoff(attempt: number, opts: typeof DEFAULTS): number {
  const ceiling = Math.min(opts.maxDelayMs, opts.initialDelayMs * 2 ** attempt);
  return Math.random() * ceiling;
}

/** `Retry-After` in milliseconds: delay-seconds or an HTTP date; undefined if absent or bad. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
