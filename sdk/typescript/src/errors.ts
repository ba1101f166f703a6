import type { components } from "./schema.js";

/** One offending field of a problem document (`{field, message}`). */
export type FieldError = components["schemas"]["FieldError"];

/** An RFC 9457 problem document as the Wharf API sends it. */
export type Problem = components["schemas"]["Problem"];

/**
 * Thrown for every non-2xx answer of the Wharf API. Wharf answers errors with RFC 9457 problem
 * documents (`application/problem+json`); their members are copied here. An answer that is not a
 * problem document (a proxy's HTML error page, say) still becomes a `WharfProblemError`, with
 * `type` `"about:blank"` and the HTTP status text as `title`.
 */
export class WharfProblemError extends Error {
  override readonly name = "WharfProblemError";
  /** The HTTP status (equal to the problem's `status`). */
  readonly status: number;
  /** A stable URI naming the kind of problem. */
  readonly type: string;
  /** A short human summary of the kind of problem. */
  readonly title: string;
  /** What went wrong this time, when the server said. */
  readonly detail: string | undefined;
  /** The offending fields, when the request body or query was at fault (else empty). */
  readonly errors: FieldError[];
  /** The parsed body as received (a problem document, other JSON, or text). */
  readonly body: unknown;
  /** The HTTP response (its body is already read). */
  readonly response: Response;

  constructor(response: Response, body: unknown) {
    const problem = isObject(body) ? body : {};
    const status = typeof problem.status === "number" ? problem.status : response.status;
    const type = typeof problem.type === "string" ? problem.type : "about:blank";
    const title =
      typeof problem.title === "string"
        ? problem.title
        : response.statusText || `HTTP ${response.status}`;
    let detail: string | undefined;
    if (typeof problem.detail === "string") detail = problem.detail;
    else if (typeof body === "string" && body.trim() !== "") detail = body.trim().slice(0, 500);
    const errors: FieldError[] = Array.isArray(problem.errors)
      ? problem.errors.filter(isObject).map((e) => ({
          field: String(e.field ?? ""),
          message: String(e.message ?? ""),
        }))
      : [];
    let message = `${title} (HTTP ${status})`;
    if (detail) message += `: ${detail}`;
    // Field errors the detail does not already spell out.
    const extra = errors
      .map((e) => `${e.field}: ${e.message}`)
      .filter((text) => !detail?.includes(text));
    if (extra.length) message += ` [${extra.join("; ")}]`;
    super(message);
    this.status = status;
    this.type = type;
    this.title = title;
    this.detail = detail;
    this.errors = errors;
    this.body = body;
    this.response = response;
  }

  /** The message for `field` (e.g. `"homeDirectory"`), if the server named it. */
  fieldError(field: string): string | undefined {
    return this.errors.find((e) => e.field === field)?.message;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
