//! The way out: replies leave in the order they were made, by one of two paths.
//!
//! - **Direct**: while [`SftpSession::feed`](super::SftpSession::feed) runs inside the SSH
//!   connection's task, it sends what is queued straight into the connection's output
//!   ([`DirectOut`]).
//! - **Writer**: replies that complete while `feed` is not running are sent by a writer task
//!   through russh's `Handle` ([`ReplySink`]), which queues them as messages to the
//!   connection's task.
//!
//! The connection's task takes those messages only between two of the client's packets, so a
//! message the writer has handed over may still wait in russh's queue while `feed` runs. A
//! reply sent directly then would overtake it, and clients rely on the order: paramiko waits
//! for its pipelined writes' statuses one by one in request order and drops any other status
//! it reads meanwhile, so one overtaken status hangs it forever. Every batch the writer hands
//! over is therefore tracked until russh lets go of its bytes ([`InTransit`]: russh drops
//! them once they are encrypted into its output, or keeps them while they wait for the
//! client's window), and nothing is sent directly while any is in transit.
//!
//! Each reply holds its request's in-flight permit until it is taken to be sent.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use russh_sftp::protocol::{Packet, StatusCode};
use tokio::sync::{Notify, OwnedSemaphorePermit};

use super::reply::status;

/// Where a channel's replies go when they cannot be sent right away (see [`DirectOut`]).
pub trait ReplySink: Send + Sync + 'static {
    /// Sends one or more whole reply packets; waits while the connection is behind. `Err` once
    /// the channel is gone.
    fn send(&self, packet: Bytes) -> BoxFuture<'_, Result<(), ()>>;
    /// Ends the channel once every reply is sent: exit status `code`, EOF, close.
    fn finish(&self, code: u32) -> BoxFuture<'_, ()>;
}

/// The caller's way to send replies at once, from inside
/// [`SftpSession::feed`](super::SftpSession::feed).
pub trait DirectOut {
    /// Whether a reply sent now goes straight out: nothing sent earlier still waits for the
    /// client's window. The connection sends within the window only and keeps the rest of a
    /// reply until the window opens, so at most one reply waits there.
    fn ready(&self) -> bool;
    /// Sends one or more whole reply packets.
    fn send(&mut self, packet: Bytes);
}

/// Small replies queued together are sent as one channel message up to this size: fewer SSH
/// packets, and a client's per-message queue fills more slowly.
const BATCH_BYTES: usize = 64 * 1024;

/// Replies on their way to the client.
#[derive(Clone)]
pub(crate) struct Replies(Arc<ReplyQueue>);

struct ReplyQueue {
    outgoing: Mutex<Outgoing>,
    /// Batches the writer has handed to the connection that it has not sent yet.
    in_transit: Arc<AtomicUsize>,
    /// Wakes the writer task.
    ready: Notify,
    /// Wakes [`SftpSession::feed`](super::SftpSession::feed) while it waits for the backlog to
    /// shrink: a reply was queued meanwhile.
    answered: Notify,
}

#[derive(Default)]
struct Outgoing {
    packets: VecDeque<(Bytes, OwnedSemaphorePermit)>,
    /// `feed` is running and sends what is queued when it ends: the writer is not woken
    /// meanwhile.
    direct: bool,
    /// No more replies will come: the writer ends once the queue is empty.
    closed: bool,
}

/// What the writer hands to the connection: a batch that counts as in transit until the
/// connection drops its bytes.
struct InTransit {
    batch: Bytes,
    count: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for InTransit {
    fn as_ref(&self) -> &[u8] {
        &self.batch
    }
}

impl Drop for InTransit {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Replies {
    pub(crate) fn new() -> Self {
        Replies(Arc::new(ReplyQueue {
            outgoing: Mutex::new(Outgoing::default()),
            in_transit: Arc::new(AtomicUsize::new(0)),
            ready: Notify::new(),
            answered: Notify::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Outgoing> {
        // Every change under the lock is one step: a poisoned queue is still consistent.
        self.0
            .outgoing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the reply to a request; its permit is released once the reply is taken to be
    /// sent.
    pub(crate) fn send(&self, packet: Packet, permit: OwnedSemaphorePermit) {
        let id = packet.get_request_id();
        let bytes = Bytes::try_from(packet).or_else(|e| {
            tracing::error!(error = %e, "cannot encode a reply");
            Bytes::try_from(status(id, StatusCode::Failure, "internal error"))
        });
        let Ok(bytes) = bytes else {
            return;
        };
        let wake = {
            let mut outgoing = self.lock();
            outgoing.packets.push_back((bytes, permit));
            !outgoing.direct
        };
        if wake {
            self.0.ready.notify_one();
        } else {
            self.0.answered.notify_one();
        }
    }

    pub(crate) fn begin_direct(&self) {
        self.lock().direct = true;
    }

    /// Sends what is queued through `direct`, in order, while the connection is ready and the
    /// writer has nothing in transit. Returns whether replies are left that wait for the
    /// client (its window) or for the connection (the writer's batches): only the connection
    /// can make progress then, not `feed`.
    pub(crate) fn flush_direct(&self, direct: &mut dyn DirectOut) -> bool {
        let mut outgoing = self.lock();
        // Checked under the lock the writer takes batches under: a batch it takes is counted
        // before this can see the queue without it.
        if self.0.in_transit.load(Ordering::Acquire) > 0 {
            return !outgoing.packets.is_empty();
        }
        while direct.ready() {
            let Some(batch) = outgoing.take_batch() else {
                return false;
            };
            direct.send(batch);
        }
        !outgoing.packets.is_empty()
    }

    /// Leaves direct mode, waking the writer for whatever is left.
    pub(crate) fn end_direct(&self) {
        let left = {
            let mut outgoing = self.lock();
            outgoing.direct = false;
            !outgoing.packets.is_empty()
        };
        if left {
            self.0.ready.notify_one();
        }
    }

    /// Resolves once a reply has been queued in direct mode (possibly one queued before).
    pub(crate) async fn answered(&self) {
        self.0.answered.notified().await
    }

    /// No more replies will come: the writer sends what is queued, then ends.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.0.ready.notify_one();
    }

    /// The next replies for the writer, counted as in transit until the connection lets go
    /// of them; `None` once closed and empty.
    async fn next(&self) -> Option<Bytes> {
        loop {
            {
                let mut outgoing = self.lock();
                if let Some(batch) = outgoing.take_batch() {
                    self.0.in_transit.fetch_add(1, Ordering::AcqRel);
                    return Some(Bytes::from_owner(InTransit {
                        batch,
                        count: self.0.in_transit.clone(),
                    }));
                }
                if outgoing.closed {
                    return None;
                }
            }
            // A notification given meanwhile is kept for this wait: nothing is lost.
            self.0.ready.notified().await;
        }
    }

    #[cfg(test)]
    fn in_transit(&self) -> usize {
        self.0.in_transit.load(Ordering::Acquire)
    }
}

impl Outgoing {
    /// The next reply, or several small ones joined, up to [`BATCH_BYTES`]. Their permits are
    /// released: the caller sends them at once.
    fn take_batch(&mut self) -> Option<Bytes> {
        let (first, _permit) = self.packets.pop_front()?;
        let joins = |next: Option<&(Bytes, OwnedSemaphorePermit)>, len: usize| {
            next.is_some_and(|(packet, _)| len + packet.len() <= BATCH_BYTES)
        };
        if !joins(self.packets.front(), first.len()) {
            return Some(first);
        }
        let mut batch = BytesMut::from(first);
        while joins(self.packets.front(), batch.len()) {
            if let Some((packet, _permit)) = self.packets.pop_front() {
                batch.extend_from_slice(&packet);
            }
        }
        Some(batch.freeze())
    }
}

/// Sends the replies the session did not send directly, as they come.
pub(crate) async fn write_replies(replies: Replies, sink: Arc<dyn ReplySink>) {
    let mut open = true;
    while let Some(batch) = replies.next().await {
        // Once the channel is gone, the rest is dropped.
        if open && sink.send(batch).await.is_err() {
            open = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    /// A connection output that records what was sent, ready while `ready` says so.
    struct Recorder {
        ready: bool,
        sent: Vec<Bytes>,
    }

    impl DirectOut for Recorder {
        fn ready(&self) -> bool {
            self.ready
        }
        fn send(&mut self, packet: Bytes) {
            self.sent.push(packet);
        }
    }

    fn reply(replies: &Replies, permits: &Arc<Semaphore>, id: u32) {
        let permit = permits.clone().try_acquire_owned().expect("a permit");
        replies.send(super::super::reply::ok(id), permit);
    }

    fn ids(batches: &[Bytes]) -> Vec<u32> {
        let mut ids = Vec::new();
        for batch in batches {
            let mut at = 0;
            while at + 9 <= batch.len() {
                let len = u32::from_be_bytes(batch[at..at + 4].try_into().unwrap()) as usize;
                ids.push(u32::from_be_bytes(
                    batch[at + 5..at + 9].try_into().unwrap(),
                ));
                at += 4 + len;
            }
        }
        ids
    }

    /// A batch the writer has taken is in transit until the connection drops it; meanwhile
    /// nothing is sent directly (it would overtake the batch), and the rest follows it in
    /// order through the writer.
    #[tokio::test]
    async fn nothing_overtakes_a_batch_in_transit() {
        let permits = Arc::new(Semaphore::new(8));
        let replies = Replies::new();
        reply(&replies, &permits, 1);
        let in_russh_queue = replies.next().await.expect("a batch");
        assert_eq!(replies.in_transit(), 1);
        assert_eq!(
            permits.available_permits(),
            8,
            "taken replies free their permits"
        );

        replies.begin_direct();
        reply(&replies, &permits, 2);
        let mut out = Recorder {
            ready: true,
            sent: Vec::new(),
        };
        assert!(replies.flush_direct(&mut out), "reply 2 waits");
        assert!(out.sent.is_empty(), "reply 2 must not overtake reply 1");
        replies.end_direct();

        // The connection sends batch 1 and drops it: direct sends may go on.
        let sent_first = in_russh_queue.clone();
        drop(in_russh_queue);
        assert_eq!(replies.in_transit(), 1, "a clone still holds it");
        drop(sent_first);
        assert_eq!(replies.in_transit(), 0);
        replies.begin_direct();
        reply(&replies, &permits, 3);
        assert!(!replies.flush_direct(&mut out));
        assert_eq!(ids(&out.sent), [2, 3], "in order, joined into one batch");
        assert_eq!(out.sent.len(), 1);
        assert_eq!(permits.available_permits(), 8);
    }

    /// While the connection is not ready (the client's window is full), replies stay queued
    /// with their permits and `flush_direct` says so.
    #[tokio::test]
    async fn replies_wait_for_the_window_with_their_permits() {
        let permits = Arc::new(Semaphore::new(4));
        let replies = Replies::new();
        replies.begin_direct();
        reply(&replies, &permits, 7);
        let mut out = Recorder {
            ready: false,
            sent: Vec::new(),
        };
        assert!(replies.flush_direct(&mut out));
        assert_eq!(permits.available_permits(), 3);
        out.ready = true;
        assert!(!replies.flush_direct(&mut out));
        assert_eq!(ids(&out.sent), [7]);
        assert_eq!(permits.available_permits(), 4);
    }
}
