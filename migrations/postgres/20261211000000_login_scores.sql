-- The defender's failed-login scores and bans (wharf-control's defender.rs), shared by every
-- control-plane replica so that a ban holds on every gateway. Keep in step with ../sqlite.
CREATE TABLE login_scores (
    kind             TEXT    NOT NULL,              -- 'address' | 'user'
    target           TEXT    NOT NULL,              -- 203.0.113.7/32, 2001:db8::/64; a user name
    score            BIGINT  NOT NULL,              -- points since window_start
    window_start     BIGINT  NOT NULL,              -- unix ms
    banned_until     BIGINT,                        -- unix ms; NULL: never banned or lifted
    bans             BIGINT  NOT NULL DEFAULT 0,    -- bans in a row, the last one included
    last_failure_at  BIGINT  NOT NULL,
    PRIMARY KEY (kind, target)
);

CREATE INDEX login_scores_banned_until ON login_scores (banned_until);
CREATE INDEX login_scores_last_failure ON login_scores (last_failure_at);
