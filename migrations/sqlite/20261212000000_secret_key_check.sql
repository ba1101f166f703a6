-- Ties the database to the secrets key that seals webhook secrets and bucket options (see
-- crates/wharf-control/src/secrets.rs): one row, a known text sealed with the key in use. A
-- control plane whose key file cannot open it refuses to start. Same in ../sqlite and
-- ../postgres.
CREATE TABLE secret_key_check (
    id      BIGINT  NOT NULL PRIMARY KEY,
    sealed  TEXT    NOT NULL
);
