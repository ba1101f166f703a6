-- Wharf control-plane schema (SQLite). Keep in step with ../postgres: same tables, same columns.
-- Through sqlx's Any driver only integers, floats, text and blobs travel, so timestamps are
-- unix milliseconds (BIGINT), booleans are 0/1 (BIGINT) and lists/maps are JSON text.

CREATE TABLE buckets (
    name        TEXT    NOT NULL PRIMARY KEY,
    url         TEXT    NOT NULL,
    options     TEXT    NOT NULL DEFAULT '{}',   -- JSON object of object_store options
    is_default  BIGINT  NOT NULL DEFAULT 0,
    created_at  BIGINT  NOT NULL
);

-- At most one default bucket.
CREATE UNIQUE INDEX buckets_single_default ON buckets (is_default) WHERE is_default = 1;

CREATE TABLE users (
    username           TEXT    NOT NULL PRIMARY KEY,
    description        TEXT    NOT NULL,
    home_directory     TEXT    NOT NULL,
    bucket_name        TEXT    NOT NULL REFERENCES buckets (name),
    permissions        TEXT    NOT NULL,
    password_hash      TEXT    NOT NULL,             -- argon2id PHC string
    public_keys        TEXT    NOT NULL DEFAULT '[]', -- JSON array of OpenSSH public key lines
    disabled           BIGINT  NOT NULL DEFAULT 0,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    last_connected_at  BIGINT
);

CREATE INDEX users_bucket_name ON users (bucket_name);

CREATE TABLE api_keys (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    prefix      TEXT    NOT NULL,                 -- the first characters, to recognise a key
    hash        TEXT    NOT NULL UNIQUE,          -- SHA-256 hex of the whole key
    created_at  BIGINT  NOT NULL
);
