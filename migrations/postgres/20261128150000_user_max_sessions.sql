-- Most concurrent sessions per user (enforced by each gateway process). Keep in step with
-- ../sqlite.
ALTER TABLE users ADD COLUMN max_sessions BIGINT NOT NULL DEFAULT 10;
