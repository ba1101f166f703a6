//! The control plane's side of the file-event contract: [`DatabaseEvents`] (the in-process
//! [`EventSink`], also behind `/internal/v1/events` and `/internal/v1/uploads…`) and the
//! reconciler that settles pending uploads the gateways never settled.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::Instrument;
use wharf_core::{Event, EventData, EventError, EventPayload, EventSink, EventType};
use wharf_vfs::StoreCache;

use crate::options::ControlPlaneOptions;
use crate::store::{
    Backend, EventStatus, OutboxPolicy, PendingEvent, SettleOutcome, Store, StoreError,
};

/// The error of an upload the reconciler found not committed.
pub const GATEWAY_STOPPED: &str = "the gateway stopped before the upload was committed";

/// How many stale pending uploads one reconciler round looks at.
const RECONCILE_BATCH: u32 = 100;

/// Records events in the database, with their deliveries (the outbox), and wakes the
/// delivery worker.
#[derive(Clone)]
pub struct DatabaseEvents {
    store: Store,
    policy: OutboxPolicy,
    wake: Arc<Notify>,
    /// The upload settles running in the background; `None` where they run inline.
    settles: Option<Arc<Settles>>,
}

/// The upload settles this process runs in the background, and the barrier that puts them
/// before every later read and write of events.
///
/// An upload's commit ends with its settle (the pending `file.created` becomes visible and gets
/// its deliveries). The client need not wait for it: the pending event already makes the upload
/// durable, and a pending event nobody settles is settled by the reconciler. What must hold is
/// that anything that happens after the client heard "done" sees the settle: `/v1/events`,
/// the deliveries, and the next event written (so that a delete right after an upload is
/// recorded, and delivered, after the upload's `file.created`). [`Settles::barrier`] gives that
/// for the readers and writers of this process. That is every one only where no other process
/// uses the database, so settles run in the background on SQLite alone; with PostgreSQL another
/// replica may answer the next `/v1/events`, and they stay inline.
#[derive(Default)]
struct Settles {
    tickets: Mutex<Tickets>,
    /// Signalled each time a settle ends.
    done: Notify,
}

#[derive(Default)]
struct Tickets {
    /// The next ticket number.
    issued: u64,
    /// The tickets of the settles still running.
    running: BTreeSet<u64>,
}

/// A settle in the background; it counts as running until this is dropped.
struct SettleTicket {
    settles: Arc<Settles>,
    number: u64,
}

impl Settles {
    fn tickets(&self) -> std::sync::MutexGuard<'_, Tickets> {
        self.tickets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start(self: &Arc<Self>) -> SettleTicket {
        let mut tickets = self.tickets();
        let number = tickets.issued;
        tickets.issued += 1;
        tickets.running.insert(number);
        SettleTicket {
            settles: self.clone(),
            number,
        }
    }

    /// No settle is running.
    fn idle(&self) -> bool {
        self.tickets().running.is_empty()
    }

    /// Waits until every settle started before this call has ended.
    async fn barrier(&self) {
        let before = self.tickets().issued;
        loop {
            let ended = self.done.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self
                .tickets()
                .running
                .first()
                .is_none_or(|oldest| *oldest >= before)
            {
                return;
            }
            ended.await;
        }
    }
}

impl Drop for SettleTicket {
    fn drop(&mut self) {
        self.settles.tickets().running.remove(&self.number);
        self.settles.done.notify_waiters();
    }
}

/// Why a pending event is refused: uploads and the changes recorded pending first only.
pub fn check_pending_event(
    event_type: EventType,
    data: &EventData,
) -> Result<(), (&'static str, &'static str)> {
    if !matches!(
        event_type,
        EventType::FileCreated
            | EventType::FileDeleted
            | EventType::FileRenamed
            | EventType::DirectoryCreated
    ) {
        return Err((
            "type",
            "one of file.created, file.deleted, file.renamed, directory.created",
        ));
    }
    check_event_data(data)
}

/// Why a file event is refused (the field and the reason).
pub fn check_file_event(
    event_type: EventType,
    data: &EventData,
) -> Result<(), (&'static str, &'static str)> {
    if !event_type.is_file_event() {
        return Err(("type", "gateways report file and directory events only"));
    }
    check_event_data(data)
}

/// Why event data is refused (the field and the reason).
pub fn check_event_data(data: &EventData) -> Result<(), (&'static str, &'static str)> {
    if data.key.is_empty() {
        return Err(("data.key", "must not be empty"));
    }
    if data.key.starts_with('/') {
        return Err(("data.key", "bucket keys have no leading '/'"));
    }
    Ok(())
}

impl DatabaseEvents {
    pub(crate) fn new(store: Store, options: &ControlPlaneOptions, wake: Arc<Notify>) -> Self {
        let settles = (store.backend() == Backend::Sqlite).then(Arc::default);
        DatabaseEvents {
            store,
            policy: outbox_policy(options),
            wake,
            settles,
        }
    }

    /// Waits for the upload settles this process started in the background, so that what
    /// follows sees them (see [`Settles`]). Every reader of events and deliveries calls it
    /// first, and so does shutdown.
    pub async fn barrier(&self) {
        if let Some(settles) = &self.settles {
            settles.barrier().await;
        }
    }

    pub(crate) fn policy(&self) -> &OutboxPolicy {
        &self.policy
    }

    /// Wakes the delivery worker of this process.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Records an event and its deliveries.
    pub async fn record_event(
        &self,
        event_type: EventType,
        data: &EventPayload,
    ) -> Result<Event, StoreError> {
        self.barrier().await;
        let (event, deliveries) = self
            .store
            .insert_event(event_type, data, EventStatus::Recorded, &self.policy)
            .await?;
        tracing::info!(event = %event.id, r#type = %event_type,
            bucket = data.bucket_name().map(|b| b.as_str()), key = data.key(),
            username = data.username(), deliveries, "event recorded");
        if deliveries > 0 {
            self.wake();
        }
        Ok(event)
    }

    /// Step 1 of an upload (a pending `file.created`) or of a delete, rename or new directory.
    pub async fn begin(
        &self,
        event_type: EventType,
        data: &EventData,
    ) -> Result<String, StoreError> {
        let (event, _) = self
            .store
            .insert_event(
                event_type,
                &EventPayload::File(data.clone()),
                EventStatus::Pending,
                &self.policy,
            )
            .await?;
        tracing::debug!(event = %event.id, r#type = %event_type, key = %data.key, "event pending");
        Ok(event.id)
    }

    /// Step 2 of an upload.
    pub async fn settle(
        &self,
        event_id: &str,
        committed: bool,
        error: Option<String>,
    ) -> Result<SettleOutcome, StoreError> {
        let outcome = self
            .store
            .settle_upload(event_id, committed, error, &self.policy)
            .await?;
        match &outcome {
            SettleOutcome::Settled {
                event_type,
                deliveries,
            } => {
                tracing::info!(event = event_id, r#type = %event_type, deliveries, "upload event settled");
                if *deliveries > 0 {
                    self.wake();
                }
            }
            SettleOutcome::AlreadySettled(t) => {
                tracing::debug!(event = event_id, r#type = %t, "event was settled already")
            }
            SettleOutcome::Forgotten => {
                tracing::debug!(event = event_id, "pending change not made: forgotten")
            }
            SettleOutcome::NotFound => {}
        }
        Ok(outcome)
    }

    /// [`DatabaseEvents::settle`] with the outcomes a gateway must hear of as errors.
    async fn settle_as_sink(
        &self,
        event_id: &str,
        committed: bool,
        error: Option<String>,
    ) -> Result<(), EventError> {
        match self
            .settle(event_id, committed, error)
            .await
            .map_err(unavailable)?
        {
            SettleOutcome::NotFound => Err(EventError::Rejected(format!(
                "no pending upload event '{event_id}'"
            ))),
            SettleOutcome::Settled { .. } | SettleOutcome::Forgotten => Ok(()),
            // Settling twice the same way (a retry) is not an error.
            SettleOutcome::AlreadySettled(t) if settled_alike(&t, committed) => Ok(()),
            // The reconciler came first and saw otherwise.
            SettleOutcome::AlreadySettled(t) => Err(EventError::Rejected(format!(
                "upload event '{event_id}' was settled before as {t}"
            ))),
        }
    }
}

/// Whether an event already settled as type `t` is what settling it `committed` would have made
/// (a retry): anything but a failed upload if committed, a failed upload if not.
pub(crate) fn settled_alike(t: &str, committed: bool) -> bool {
    (t == EventType::FileUploadFailed.as_str()) != committed
}

pub(crate) fn outbox_policy(options: &ControlPlaneOptions) -> OutboxPolicy {
    OutboxPolicy {
        give_up_after: options.retry.give_up_after,
        loop_guard: options
            .loop_guard
            .map(|guard| (guard.max_deliveries, guard.window)),
    }
}

fn unavailable(e: StoreError) -> EventError {
    EventError::Unavailable(e.to_string())
}

#[async_trait::async_trait]
impl EventSink for DatabaseEvents {
    async fn begin_upload(&self, data: EventData) -> Result<String, EventError> {
        self.begin_change(EventType::FileCreated, data).await
    }

    async fn begin_change(
        &self,
        event_type: EventType,
        data: EventData,
    ) -> Result<String, EventError> {
        check_pending_event(event_type, &data)
            .map_err(|(field, message)| EventError::Rejected(format!("{field}: {message}")))?;
        self.barrier().await;
        self.begin(event_type, &data).await.map_err(unavailable)
    }

    async fn settle_upload(
        &self,
        event_id: &str,
        committed: bool,
        error: Option<String>,
    ) -> Result<(), EventError> {
        self.barrier().await;
        self.settle_as_sink(event_id, committed, error).await
    }

    async fn settle_upload_later(
        &self,
        event_id: &str,
        committed: bool,
        error: Option<String>,
    ) -> Result<(), EventError> {
        let Some(settles) = &self.settles else {
            return self.settle_upload(event_id, committed, error).await;
        };
        // The usual case needs no task: the direct lane settles a committed upload at once
        // when no webhook wants deliveries. Only while no earlier settle is still running,
        // so settles keep the order their uploads committed in.
        if committed && settles.idle() && self.store.settle_committed_direct(event_id) {
            tracing::info!(event = event_id, deliveries = 0, "event settled");
            return Ok(());
        }
        let ticket = settles.start();
        let events = self.clone();
        let event_id = event_id.to_owned();
        tokio::spawn(
            async move {
                let _running = ticket;
                if let Err(e) = events.settle_as_sink(&event_id, committed, error).await {
                    tracing::warn!(event = %event_id, error = %e,
                        "could not settle the upload event; the reconciler will settle it");
                }
            }
            .instrument(tracing::Span::current()),
        );
        Ok(())
    }

    async fn record(&self, event_type: EventType, data: EventData) -> Result<String, EventError> {
        check_file_event(event_type, &data)
            .map_err(|(field, message)| EventError::Rejected(format!("{field}: {message}")))?;
        self.record_event(event_type, &data.into())
            .await
            .map(|e| e.id)
            .map_err(unavailable)
    }
}

/// What the bucket says about a pending upload.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Committed,
    NotCommitted,
}

/// Settles the pending uploads older than `pending_upload_timeout`, once. Returns how many
/// were settled.
pub(crate) async fn reconcile_once(
    store: &Store,
    stores: &StoreCache,
    events: &DatabaseEvents,
    options: &ControlPlaneOptions,
) -> Result<usize, StoreError> {
    let cutoff = crate::store::now()
        - chrono::Duration::from_std(options.pending_upload_timeout).unwrap_or_default();
    let stale = store.stale_pending_uploads(cutoff, RECONCILE_BATCH).await?;
    let mut settled = 0;
    for pending in stale {
        let verdict = match inspect(store, stores, &pending).await {
            Ok(verdict) => verdict,
            Err(e) => {
                tracing::warn!(event = %pending.id, bucket = %pending.data.bucket_name,
                    key = %pending.data.key, error = %e,
                    "cannot look at a pending upload's object; will try again");
                continue;
            }
        };
        let committed = verdict == Verdict::Committed;
        tracing::info!(event = %pending.id, r#type = %pending.event_type,
            key = %pending.data.key, committed,
            "settling an event the gateway never settled");
        let error = (!committed).then(|| GATEWAY_STOPPED.to_owned());
        if let SettleOutcome::Settled { .. } | SettleOutcome::Forgotten =
            events.settle(&pending.id, committed, error).await?
        {
            settled += 1;
        }
    }
    Ok(settled)
}

/// Was the pending event's change made? An error means "cannot tell now".
///
/// An upload was if an object with the recorded size is there and its content has the recorded
/// SHA-256: a size and a recent date alone could be another upload's object, written since (an
/// upload of the same size over it). An event without a SHA-256 (none is recorded without one
/// today) falls back to the date: written at or after the event's time. A delete was if the
/// key is gone; a rename if the new key is there and the old one gone; a new directory if its
/// marker is there.
async fn inspect(
    store: &Store,
    stores: &StoreCache,
    pending: &PendingEvent,
) -> Result<Verdict, String> {
    let Some(bucket) = store
        .get_bucket(&pending.data.bucket_name)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(Verdict::NotCommitted);
    };
    let objects = stores
        .get(&bucket.storage())
        .map_err(|e| format!("cannot open the bucket: {e}"))?;
    let path = |key: &str| Path::parse(key).unwrap_or_else(|_| Path::from(key));
    let key = path(&pending.data.key);
    let made = |yes: bool| {
        if yes {
            Verdict::Committed
        } else {
            Verdict::NotCommitted
        }
    };
    match pending.event_type {
        EventType::FileDeleted => return Ok(made(!present(objects.as_ref(), &key).await?)),
        EventType::DirectoryCreated => {
            let marker = key.clone().join(wharf_core::DIRECTORY_MARKER);
            return Ok(made(present(objects.as_ref(), &marker).await?));
        }
        EventType::FileRenamed => {
            let from = path(pending.data.previous_key.as_deref().unwrap_or_default());
            let to_there = present(objects.as_ref(), &key).await?;
            let from_gone = !present(objects.as_ref(), &from).await?;
            return Ok(made(to_there && from_gone));
        }
        _ => {}
    }
    let meta = match objects.head(&key).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => return Ok(Verdict::NotCommitted),
        Err(e) => return Err(e.to_string()),
    };
    if pending.data.size.is_some_and(|size| size != meta.size) {
        return Ok(Verdict::NotCommitted);
    }
    let Some(expected) = &pending.data.sha256 else {
        return Ok(if meta.last_modified >= pending.time {
            Verdict::Committed
        } else {
            Verdict::NotCommitted
        });
    };
    let actual = sha256_of(objects.as_ref(), &key).await?;
    Ok(if actual.eq_ignore_ascii_case(expected) {
        Verdict::Committed
    } else {
        Verdict::NotCommitted
    })
}

/// Whether `key` is an object, or a directory with anything in it.
async fn present(objects: &dyn ObjectStore, key: &Path) -> Result<bool, String> {
    match objects.head(key).await {
        Ok(_) => return Ok(true),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.to_string()),
    }
    let first = objects.list(Some(key)).try_next().await;
    first.map(|o| o.is_some()).map_err(|e| e.to_string())
}

async fn sha256_of(objects: &dyn ObjectStore, key: &Path) -> Result<String, String> {
    let mut stream = objects
        .get(key)
        .await
        .map_err(|e| e.to_string())?
        .into_stream();
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.try_next().await.map_err(|e| e.to_string())? {
        hasher.update(&chunk);
    }
    Ok(hex::encode(hasher.finalize()))
}
