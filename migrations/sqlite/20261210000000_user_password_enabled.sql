-- Whether a user may log in with a password (0: public keys only). Keep in step with
-- ../postgres.
ALTER TABLE users ADD COLUMN password_enabled BIGINT NOT NULL DEFAULT 1;
