//! The direct lane to a SQLite database file: one more connection, driven on the calling
//! task's own thread, for the two writes on the path of every upload's close (the pending
//! `file.created`, and the settle that makes it visible).
//!
//! Through the pool, each statement is a message to the connection's worker thread and a
//! message back. On a loaded host those hand-offs cost several times the SQLite work itself
//! (measured here: about 300 µs of wall time per statement, of which 60–100 µs is SQLite's),
//! and a partner uploading many small files waits for them on every CLOSE. Here the statement
//! runs where the session's task runs.
//!
//! The lane never waits, so it cannot hold up the runtime's worker thread for long:
//! - the connection has no busy timeout: when another connection is writing, SQLite answers
//!   "busy" at once and the caller goes through the pool as before (whose connections wait);
//! - when another task is using the lane, the caller goes through the pool too;
//! - it never checkpoints the write-ahead log (a checkpoint syncs the disk): after every
//!   [`CHECKPOINT_EVERY`] writes the store has the pool checkpoint in the background, so the
//!   log stays short even when every write takes this lane; should another
//!   [`CHECKPOINT_EVERY`] writes come before that checkpoint has ended, the lane steps aside
//!   until it has.
//!
//! Any error other than "busy" is logged and the caller goes through the pool, which reports
//! it the usual way.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

/// Writes through the lane between two checkpoint requests. With the pool's default
/// `wal_autocheckpoint` of 1,000 pages (4 MiB) and a few pages per event write, this asks a
/// little more often than the pool's connections would checkpoint by themselves.
pub(crate) const CHECKPOINT_EVERY: u32 = 200;

/// How long the log may grow (in frames: pages written, 4 KiB each) before the lane's
/// checkpoint makes it start over; see `store::checkpoint`.
pub(crate) const LOG_FRAMES_BEFORE_RESTART: i64 = 2_500;

pub(crate) struct DirectSqlite {
    /// `None` once the store is closed.
    conn: Mutex<Option<Connection>>,
    /// Writes since the last checkpoint request.
    writes: AtomicU32,
    /// Writes in all.
    written: AtomicU64,
    /// A checkpoint requested by the lane is running.
    checkpointing: AtomicBool,
}

impl std::fmt::Debug for DirectSqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSqlite")
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl DirectSqlite {
    /// Opens the lane to the database file at `path`, which the pool has created and
    /// migrated already (so it is in WAL mode).
    pub(crate) fn open(path: &Path) -> rusqlite::Result<Self> {
        // The lane's own mutex serialises its use: SQLite's need not.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(Duration::ZERO)?;
        // As on the pool's connections (see SQLITE_SYNCHRONOUS), and foreign keys on as sqlx
        // sets them.
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA wal_autocheckpoint = 0;",
        )?;
        Ok(DirectSqlite {
            conn: Mutex::new(Some(conn)),
            writes: AtomicU32::new(0),
            written: AtomicU64::new(0),
            checkpointing: AtomicBool::new(false),
        })
    }

    /// Runs `write` on the lane now, or returns `None` when it cannot without waiting (the
    /// lane is in use, another connection holds the write lock) or failed: then the caller
    /// takes the pool.
    pub(crate) fn try_write<T>(
        &self,
        what: &'static str,
        write: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Option<T> {
        if self.checkpointing.load(Ordering::Acquire)
            && self.writes.load(Ordering::Relaxed) >= CHECKPOINT_EVERY
        {
            // Writing faster than the log is checkpointed: the pool's connections wait.
            return None;
        }
        let guard = match self.conn.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => return None,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        };
        let conn = guard.as_ref()?;
        match write(conn) {
            Ok(value) => {
                self.writes.fetch_add(1, Ordering::Relaxed);
                self.written.fetch_add(1, Ordering::Relaxed);
                Some(value)
            }
            Err(e) if is_busy(&e) => None,
            Err(e) => {
                tracing::warn!(error = %e, what, "direct SQLite write failed; retrying through the pool");
                None
            }
        }
    }

    /// How many writes went through the lane.
    #[cfg(test)]
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Whether the lane should ask for a checkpoint now. The caller must call
    /// [`DirectSqlite::checkpoint_done`] when a `true` answer's checkpoint has ended.
    pub(crate) fn checkpoint_due(&self) -> bool {
        if self.writes.load(Ordering::Relaxed) < CHECKPOINT_EVERY {
            return false;
        }
        if self.checkpointing.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.writes.store(0, Ordering::Relaxed);
        true
    }

    pub(crate) fn checkpoint_done(&self) {
        self.checkpointing.store(false, Ordering::Release);
    }

    /// Closes the connection; later writes take the pool.
    pub(crate) fn close(&self) {
        let mut guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(conn) = guard.take()
            && let Err((_, e)) = conn.close()
        {
            tracing::warn!(error = %e, "closing the direct SQLite connection failed");
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Row;
    use wharf_core::{BucketName, EventData, EventType, Protocol, Username};

    use super::CHECKPOINT_EVERY;
    use crate::store::events::{EventStatus, NewWebhook, OutboxPolicy, SettleOutcome};
    use crate::store::{Store, events::WebhookFilterRecord};

    async fn file_store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("wharf.db").display());
        Store::connect(&url).await.unwrap()
    }

    fn upload(key: &str) -> EventData {
        EventData {
            bucket_name: BucketName::parse("default").unwrap(),
            key: key.to_owned(),
            size: Some(4096),
            sha256: Some("ab".repeat(32)),
            username: Username::parse("alice").unwrap(),
            protocol: Protocol::Sftp,
            client_ip: "192.0.2.10".into(),
            session_id: "session-1".into(),
            previous_key: None,
            error: None,
        }
    }

    fn policy() -> OutboxPolicy {
        OutboxPolicy {
            give_up_after: Duration::from_secs(3600),
            loop_guard: None,
        }
    }

    async fn begin(store: &Store, key: &str) -> String {
        let (event, deliveries) = store
            .insert_event(
                EventType::FileCreated,
                &upload(key).into(),
                EventStatus::Pending,
                &policy(),
            )
            .await
            .unwrap();
        assert_eq!(deliveries, 0);
        event.id
    }

    async fn settle(store: &Store, id: &str) -> SettleOutcome {
        store
            .settle_upload(id, true, None, &policy())
            .await
            .unwrap()
    }

    async fn status(store: &Store, id: &str) -> String {
        sqlx::query("SELECT status FROM events WHERE id = $1")
            .bind(id)
            .fetch_one(&store.pool)
            .await
            .unwrap()
            .get("status")
    }

    #[tokio::test]
    async fn upload_events_take_the_lane_and_the_pool_reads_them() {
        let memory = Store::connect("sqlite::memory:").await.unwrap();
        assert!(memory.direct.is_none(), "no lane to an in-memory database");

        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        let lane = store.direct.clone().expect("a SQLite file has the lane");
        let id = begin(&store, "alice/in/a.edi").await;
        assert_eq!(lane.written(), 1, "the pending event went through the lane");
        assert_eq!(status(&store, &id).await, "pending");
        // Every column as the pool would have written it.
        let row = sqlx::query(
            "SELECT event_type, occurred_at, bucket_name, object_key, username, data \
             FROM events WHERE id = $1",
        )
        .bind(&id)
        .fetch_one(&store.pool)
        .await
        .unwrap();
        assert_eq!(row.get::<String, _>("event_type"), "file.created");
        assert!(row.get::<i64, _>("occurred_at") > 1_700_000_000_000);
        assert_eq!(row.get::<String, _>("bucket_name"), "default");
        assert_eq!(row.get::<String, _>("object_key"), "alice/in/a.edi");
        assert_eq!(row.get::<String, _>("username"), "alice");
        let data: EventData = serde_json::from_str(&row.get::<String, _>("data")).unwrap();
        assert_eq!(data, upload("alice/in/a.edi"));
        assert!(
            store.get_event(&id).await.unwrap().is_none(),
            "pending: not listed"
        );

        assert!(store.settle_committed_direct(&id));
        assert_eq!(lane.written(), 2);
        let event = store.get_event(&id).await.unwrap().expect("settled");
        assert_eq!(event.event_type, EventType::FileCreated);
        assert_eq!(event.data, upload("alice/in/a.edi").into());
        // Settled: the lane changes nothing more, and the pool says why.
        assert!(!store.settle_committed_direct(&id));
        let again = settle(&store, &id).await;
        assert!(matches!(again, SettleOutcome::AlreadySettled(t) if t == "file.created"));
        assert!(!store.settle_committed_direct("evt_unknown"));

        // Closed: the lane is gone, the pool is closed too.
        store.close().await;
        assert!(lane.try_write("test", |_| Ok(())).is_none());
    }

    #[tokio::test]
    // The test holds the lane's lock while the store writes, as another task would.
    #[allow(clippy::await_holding_lock)]
    async fn the_lane_steps_aside_while_another_connection_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        let lane = store.direct.clone().unwrap();
        // Another writer holds SQLite's write lock.
        let mut tx = store.pool.begin().await.unwrap();
        sqlx::query("UPDATE events SET status = status")
            .execute(&mut *tx)
            .await
            .unwrap();
        let busy = lane.try_write("test", |conn| {
            conn.execute("UPDATE events SET status = status", [])
        });
        assert!(busy.is_none(), "busy: the lane must not wait");
        // An upload's event still gets written: through the pool, once the lock is free.
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tx.commit().await.unwrap();
        });
        let id = begin(&store, "alice/in/b.edi").await;
        writer.await.unwrap();
        assert_eq!(lane.written(), 0);
        assert_eq!(status(&store, &id).await, "pending");

        // A lane in use by another task is stepped around as well.
        let held = lane.conn.lock().unwrap();
        assert!(!store.settle_committed_direct(&id));
        let id2 = begin(&store, "alice/in/c.edi").await;
        drop(held);
        assert_eq!(lane.written(), 0);
        assert_eq!(status(&store, &id2).await, "pending");
        let settled = settle(&store, &id).await;
        assert!(matches!(
            settled,
            SettleOutcome::Settled { deliveries: 0, .. }
        ));
        assert_eq!(lane.written(), 1, "free again: the settle took the lane");
        assert_eq!(status(&store, &id).await, "recorded");
    }

    #[tokio::test]
    async fn settles_with_an_enabled_webhook_are_left_to_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        store
            .insert_webhook(&NewWebhook {
                url: "http://127.0.0.1:9/hook".into(),
                events: vec![EventType::FileCreated],
                filter: WebhookFilterRecord {
                    bucket_name: None,
                    prefix: None,
                    username: None,
                },
                description: String::new(),
                secret: "whsec_dGVzdA==".into(),
            })
            .await
            .unwrap();
        let id = begin(&store, "alice/in/d.edi").await;
        assert!(
            !store.settle_committed_direct(&id),
            "deliveries need the pool"
        );
        assert_eq!(status(&store, &id).await, "pending");
        let settled = settle(&store, &id).await;
        assert!(matches!(
            settled,
            SettleOutcome::Settled { deliveries: 1, .. }
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lane_has_the_log_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        let lane = store.direct.clone().unwrap();
        let wal = dir.path().join("wharf.db-wal");
        let rounds = 20 * CHECKPOINT_EVERY;
        for i in 0..rounds {
            let id = begin(&store, &format!("alice/in/{i:05}.edi")).await;
            let settled = settle(&store, &id).await;
            assert!(matches!(settled, SettleOutcome::Settled { .. }));
            // As between a session's uploads: the checkpoint task gets to run.
            tokio::task::yield_now().await;
        }
        let recorded: i64 = sqlx::query("SELECT COUNT(*) AS n FROM events WHERE status = $1")
            .bind("recorded")
            .fetch_one(&store.pool)
            .await
            .unwrap()
            .get("n");
        assert_eq!(recorded, i64::from(rounds));
        assert!(
            lane.written() > u64::from(rounds),
            "most writes took the lane: {}",
            lane.written()
        );
        // Without checkpoints the log holds every page each write touched (over 100 MiB here);
        // passive checkpoints alone never catch up with writes this close together.
        let size = std::fs::metadata(&wal).unwrap().len();
        assert!(size < 40 << 20, "the log grew to {size} B");
    }
}
