-- File events, webhook subscriptions and their delivery outbox (PostgreSQL). Keep in step with
-- ../sqlite: same tables, same columns. Timestamps are unix milliseconds, booleans 0/1, lists
-- and event data JSON text (see the initial migration).

-- One row per event. Ids are `evt_` + a UUIDv7 in hex, so they sort by time: lists page by id.
-- `status` is 'pending' (an upload begun but not settled: not listed, not delivered),
-- 'recorded' (listed and delivered) or 'test' (a webhook's test event: delivered, not listed).
CREATE TABLE events (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    event_type   TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    occurred_at  BIGINT  NOT NULL,
    bucket_name  TEXT    NOT NULL,
    object_key   TEXT COLLATE "C" NOT NULL,
    username     TEXT COLLATE "C" NOT NULL,
    data         TEXT    NOT NULL                -- JSON: the event's `data`
);

CREATE INDEX events_status_id ON events (status, id);
CREATE INDEX events_type_id ON events (event_type, id);
CREATE INDEX events_username_id ON events (username, id);
CREATE INDEX events_object_key ON events (object_key);
-- The reconciler's scan for pending uploads nobody settled.
CREATE INDEX events_pending_time ON events (occurred_at) WHERE status = 'pending';

CREATE TABLE webhooks (
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY,  -- wh_…
    url              TEXT    NOT NULL,
    events           TEXT    NOT NULL,              -- JSON array of event type names
    filter_bucket    TEXT,
    filter_prefix    TEXT,
    filter_username  TEXT,
    description      TEXT    NOT NULL DEFAULT '',
    secret           TEXT    NOT NULL,              -- whsec_… (needed in clear to sign)
    enabled          BIGINT  NOT NULL DEFAULT 1,
    paused_reason    TEXT,                          -- set by the loop guard; deliveries wait
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL
);

-- The outbox: one row per (webhook, event), written in the transaction that records the event.
CREATE TABLE deliveries (
    id                TEXT COLLATE "C" NOT NULL PRIMARY KEY,  -- dlv_…
    webhook_id        TEXT COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id          TEXT COLLATE "C" NOT NULL REFERENCES events (id),
    status            TEXT    NOT NULL,              -- pending | succeeded | dead
    attempts          BIGINT  NOT NULL DEFAULT 0,    -- all attempts, shown
    round_attempts    BIGINT  NOT NULL DEFAULT 0,    -- attempts since created or retried (backoff)
    next_attempt_at   BIGINT  NOT NULL,
    give_up_at        BIGINT  NOT NULL,              -- no new attempt is scheduled after this
    claim             TEXT,                          -- the worker sending it now
    last_status_code  BIGINT,
    last_error        TEXT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_webhook_id ON deliveries (webhook_id, id);
CREATE INDEX deliveries_webhook_created ON deliveries (webhook_id, created_at);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_claim ON deliveries (claim);

CREATE TABLE delivery_attempts (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,  -- UUIDv7: sorts by time
    delivery_id  TEXT COLLATE "C" NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempted_at BIGINT  NOT NULL,
    status_code  BIGINT,                             -- the receiver's HTTP status, if it answered
    latency_ms   BIGINT  NOT NULL,
    error        TEXT
);

CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);
