/**
 * @wharf/sdk — a TypeScript client of the Wharf REST API, typed from `openapi/openapi.json`
 * (openapi-typescript + openapi-fetch), and a Standard Webhooks verifier for its deliveries.
 * Browser-safe: this entry imports nothing Node-specific (it needs `fetch` and WebCrypto).
 */
export {
  Wharf,
  UsersApi,
  BucketsApi,
  EventsApi,
  WebhooksApi,
  ServerApi,
  ObjectsApi,
  type ObjectBody,
  type BucketObject,
  type ObjectList,
  type ObjectKind,
  type ListObjectsParams,
  type WharfOptions,
  type WharfApiClient,
  type User,
  type CreatedUser,
  type CreateUserRequest,
  type UpdateUserRequest,
  type ResetPasswordRequest,
  type NewPassword,
  type UserList,
  type Permissions,
  type Bucket,
  type BucketList,
  type CreateBucketRequest,
  type Event,
  type EventData,
  type EventType,
  type EventList,
  type Webhook,
  type CreatedWebhook,
  type CreateWebhookRequest,
  type UpdateWebhookRequest,
  type WebhookFilter,
  type WebhookList,
  type Delivery,
  type DeliveryAttempt,
  type DeliveryList,
  type ServerInfo,
  type ListUsersParams,
  type ListEventsParams,
  type ListWebhooksParams,
  type ListDeliveriesParams,
} from "./client.js";
export { WharfProblemError, type Problem, type FieldError } from "./errors.js";
export { type RetryOptions, parseRetryAfter } from "./retry.js";
export {
  verifyWebhook,
  WebhookVerificationError,
  type WebhookPayload,
  type WebhookTestPayload,
  type WebhookHeaders,
  type VerifyWebhookOptions,
} from "./verify.js";
export type { paths, components, operations } from "./schema.js";
