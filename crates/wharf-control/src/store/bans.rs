//! The defender's table (`login_scores`): failed-login scores and bans per address and per
//! user name. The rules (points, thresholds, ban lengths) are [`crate::defender`]'s; this
//! module only reads and writes rows, each change in one statement so that control-plane
//! replicas sharing the database agree.

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;
use wharf_core::api::BanKind;

use super::{Store, StoreError, from_millis, parse_column, to_millis};

const T: &str = "login_scores";

/// A target's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRecord {
    pub kind: BanKind,
    pub target: String,
    pub banned_until: Option<DateTime<Utc>>,
    /// Bans in a row, the last one included.
    pub bans: u32,
    pub last_failure_at: DateTime<Utc>,
}

/// A target's standing right after a failure was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    /// Points in the current window, this failure's included.
    pub score: u32,
    pub bans: u32,
    /// The end of its last ban, if it had one.
    pub banned_until: Option<DateTime<Utc>>,
}

fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

fn ban_from_row(row: &AnyRow) -> Result<BanRecord, StoreError> {
    Ok(BanRecord {
        kind: parse_column(row, "kind", T, |s| BanKind::parse(s).ok_or("unknown kind"))?,
        target: row.try_get("target")?,
        banned_until: row
            .try_get::<Option<i64>, _>("banned_until")?
            .map(|ms| from_millis(ms, T))
            .transpose()?,
        bans: count(row.try_get("bans")?),
        last_failure_at: from_millis(row.try_get("last_failure_at")?, T)?,
    })
}

impl Store {
    /// Adds `points` to `target`'s score, first starting a new window at `now` if the current
    /// one started before `window_start`.
    pub async fn add_login_failure(
        &self,
        kind: BanKind,
        target: &str,
        points: u32,
        now: DateTime<Utc>,
        window_start: DateTime<Utc>,
    ) -> Result<Score, StoreError> {
        let row = sqlx::query(
            "INSERT INTO login_scores \
               (kind, target, score, window_start, banned_until, bans, last_failure_at) \
             VALUES ($1, $2, $3, $4, NULL, 0, $4) \
             ON CONFLICT (kind, target) DO UPDATE SET \
               score = CASE WHEN login_scores.window_start < $5 THEN $3 \
                            ELSE login_scores.score + $3 END, \
               window_start = CASE WHEN login_scores.window_start < $5 THEN $4 \
                                   ELSE login_scores.window_start END, \
               last_failure_at = $4 \
             RETURNING score, bans, banned_until",
        )
        .bind(kind.as_str())
        .bind(target)
        .bind(i64::from(points))
        .bind(to_millis(now))
        .bind(to_millis(window_start))
        .fetch_one(&self.pool)
        .await?;
        Ok(Score {
            score: count(row.try_get("score")?),
            bans: count(row.try_get("bans")?),
            banned_until: row
                .try_get::<Option<i64>, _>("banned_until")?
                .map(|ms| from_millis(ms, T))
                .transpose()?,
        })
    }

    /// Bans `target` until `until` as its `bans`-th ban in a row and starts its score again,
    /// if its score is still at least `threshold` and it is not banned at `now`. `true` if
    /// this call banned it: of replicas counting the same failures at once, one does.
    pub async fn ban_login_target(
        &self,
        kind: BanKind,
        target: &str,
        threshold: u32,
        bans: u32,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE login_scores SET score = 0, window_start = $1, bans = $2, banned_until = $3 \
             WHERE kind = $4 AND target = $5 AND score >= $6 \
               AND (banned_until IS NULL OR banned_until <= $1)",
        )
        .bind(to_millis(now))
        .bind(i64::from(bans))
        .bind(to_millis(until))
        .bind(kind.as_str())
        .bind(target)
        .bind(i64::from(threshold))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The bans in force at `now` on the address `address` or the user name `user`: kind and
    /// end of each.
    pub async fn active_bans(
        &self,
        address: Option<&str>,
        user: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<(BanKind, DateTime<Utc>)>, StoreError> {
        if address.is_none() && user.is_none() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT kind, banned_until FROM login_scores WHERE banned_until > $1 \
             AND ((kind = 'address' AND target = $2) OR (kind = 'user' AND target = $3))",
        )
        .bind(to_millis(now))
        // No target is empty: "" matches nothing.
        .bind(address.unwrap_or(""))
        .bind(user.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    parse_column(row, "kind", T, |s| BanKind::parse(s).ok_or("unknown kind"))?,
                    from_millis(row.try_get("banned_until")?, T)?,
                ))
            })
            .collect()
    }

    /// The bans in force at `now` (of `kind` only, if given), by kind and target, after
    /// `after`.
    pub async fn list_bans(
        &self,
        kind: Option<BanKind>,
        after: Option<(BanKind, &str)>,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<BanRecord>, StoreError> {
        let (after_kind, after_target) = after.map_or(("", ""), |(k, t)| (k.as_str(), t));
        let rows = sqlx::query(
            "SELECT kind, target, banned_until, bans, last_failure_at FROM login_scores \
             WHERE banned_until > $1 AND ($2 = '' OR kind = $2) \
               AND (kind > $3 OR (kind = $3 AND target > $4)) \
             ORDER BY kind, target LIMIT $5",
        )
        .bind(to_millis(now))
        .bind(kind.map_or("", BanKind::as_str))
        .bind(after_kind)
        .bind(after_target)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ban_from_row).collect()
    }

    /// Lifts `target`'s ban in force at `now` and forgets its score and past bans; `false` if
    /// it had none.
    pub async fn lift_ban(
        &self,
        kind: BanKind,
        target: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE login_scores SET banned_until = NULL, score = 0, bans = 0, window_start = $1 \
             WHERE banned_until > $1 AND kind = $2 AND target = $3",
        )
        .bind(to_millis(now))
        .bind(kind.as_str())
        .bind(target)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the rows with no failure and no ban since `before`. Returns how many.
    pub async fn forget_login_scores(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM login_scores WHERE last_failure_at < $1 \
             AND (banned_until IS NULL OR banned_until < $1)",
        )
        .bind(to_millis(before))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
