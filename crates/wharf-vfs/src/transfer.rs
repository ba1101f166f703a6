//! [`Upload`] and [`Download`]: one open file.
//!
//! Object stores write whole objects: a small file is one `PUT`, a large one a multipart upload
//! whose byte positions are fixed by the order of `put_part` calls. SFTP and FTP clients write
//! at offsets, mostly in order but pipelined (slightly out of order). [`Upload`] bridges the two
//! with an in-order buffer, a bounded reorder window and a bounded number of parts in flight, so
//! each upload's memory is bounded whatever the client sends: the part being filled, at most
//! [`IN_FLIGHT_BYTES`] (or one part, if larger) being sent, and the [`REORDER_WINDOW`] — 56 MiB
//! for files up to 4 GiB. Parts grow as a file grows ([`part_size`]) so that files up to
//! [`MAX_UPLOAD_SIZE`] (over 5 TiB) fit in S3's 10,000 parts; only such huge files use large
//! parts, and their memory grows with them (one part of up to 1 GiB).
//!
//! An [`Upload`] can also continue an existing file ([`WriteMode::Resume`],
//! [`WriteMode::Append`]): the existing bytes are copied from the store into the new object
//! ahead of the client's data, through the same buffer and parts, so the same bound holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload,
};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use wharf_core::{EventData, EventSink, EventType};

use crate::budget::{MemoryBudget, OverBudget, Reservation};
use crate::checksum::KnownHashes;
use crate::local::{self, LocalStaging, LocalTarget, PartWrite};
use crate::owned::SessionUploads;
use crate::{UploadJournal, VfsError, VirtualPath, WriteMode};

/// Size of the first multipart parts, and the size below which a file is sent in one `PUT`
/// when it is committed. 8 MiB is above S3's 5 MiB minimum part size.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts of one upload sent to the store at once while parts are [`PART_SIZE`]: enough to
/// keep a fast link busy while the client keeps writing, few enough to bound memory.
pub const MAX_PARTS_IN_FLIGHT: usize = 4;

/// Bytes of parts in flight per upload: [`MAX_PARTS_IN_FLIGHT`] parts of [`PART_SIZE`]; larger
/// parts go fewer at a time (always at least one).
pub const IN_FLIGHT_BYTES: usize = MAX_PARTS_IN_FLIGHT * PART_SIZE;

/// Most parts in one multipart upload (S3's limit, the strictest of the supported stores).
pub const MAX_PARTS: u64 = 10_000;

/// Part size on local disk, which has no minimum part size and no part limit: small writes
/// of data that is still in the CPU's cache cost the kernel a fraction of what copying 8 MiB
/// blocks into the page cache does (measured: 300 MB in 32 KiB writes 0.10 s of system time,
/// in 8 MiB writes 0.54 s).
pub const LOCAL_PART_SIZE: usize = 256 * 1024;

/// Parts of a local-disk upload being written at once through the store (names the store
/// encodes on disk; they queue on the file's lock anyway, and a few keep the disk busy while
/// the client sends the next ones).
const LOCAL_PARTS_IN_FLIGHT: usize = 8;

/// Parts of a local-disk upload written directly ([`LocalStaging`]) that may be on blocking
/// threads at once (few uploads, or a slow disk): one. Writers of one file take turns on its
/// inode lock, and more of them only spin there; one overlaps the copy into the page cache with
/// the session reading, decrypting and hashing the next part.
const STAGING_PARTS_IN_FLIGHT: usize = 1;

/// Parts of one size before the size doubles (see [`part_size`]).
const PARTS_PER_SIZE: u64 = 500;

/// The largest part: 1 GiB, far below S3's 5 GiB maximum, reached only by files over 1 TiB.
pub const MAX_PART_SIZE: usize = 1024 * 1024 * 1024;

/// Size of part number `index` (0-based): [`PART_SIZE`] for the first 500 parts (3.9 GiB), then
/// doubling every 500 parts up to [`MAX_PART_SIZE`]. SFTP and FTP do not announce a file's size,
/// so the size grows with the file: small and medium files keep small parts (low memory, fast
/// retries) and a file can still reach [`MAX_UPLOAD_SIZE`] within [`MAX_PARTS`].
///
/// Cloudflare R2 wants equal parts; there files above 500 parts (3.9 GiB) are refused by the
/// store at commit.
pub const fn part_size(index: u64) -> usize {
    let shift = index / PARTS_PER_SIZE;
    if shift >= 8 {
        return MAX_PART_SIZE;
    }
    let size = PART_SIZE << shift;
    if size > MAX_PART_SIZE {
        MAX_PART_SIZE
    } else {
        size
    }
}

/// Largest file an [`Upload`] accepts: the sum of the [`MAX_PARTS`] part sizes (about 6.8 TiB,
/// above the 5 TiB that S3 itself allows for one object).
pub const MAX_UPLOAD_SIZE: u64 = {
    let mut total = 0u64;
    let mut index = 0;
    while index < MAX_PARTS {
        total += part_size(index) as u64;
        index += 1;
    }
    total
};

/// How far ahead of the end of the contiguous data a write may reach and be held until the gap
/// before it is filled. Pipelining clients (OpenSSH sends up to 64 × 32 KiB requests at once,
/// rclone and WinSCP more) reorder writes only slightly; 16 MiB covers them with room to spare
/// and bounds the memory held for out-of-order data.
pub const REORDER_WINDOW: u64 = 16 * 1024 * 1024;

/// A forward jump in reads up to this far is served by reading on in the current stream rather
/// than opening a new one: cheaper than a round trip, and it absorbs slightly reordered reads.
const MAX_READ_SKIP: u64 = 1024 * 1024;

/// What a committed upload wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSummary {
    /// Bytes in the object.
    pub size: u64,
    /// Hex SHA-256 of the object's content, computed while streaming.
    pub sha256: String,
}

/// Where an [`Upload`] stands.
enum UploadState {
    Open,
    /// A store call failed and the upload was aborted; the message says why.
    Failed(String),
    /// Committed or aborted: nothing for `Drop` to clean up.
    Finished,
}

/// A file being written. Nothing is visible to readers until [`Upload::commit`] returns; on
/// [`Upload::abort`], on error, or when dropped uncommitted, the previous version (or nothing)
/// stays in place and no multipart parts are left behind.
///
/// Opened with [`WriteMode::Resume`] or [`WriteMode::Append`] on an existing file, the upload
/// continues it: the existing content is copied from the store (pinned to the version seen at
/// open) when the first write arrives, then the client's data follows, and the commit replaces
/// the file with the whole. See [`WriteMode`] for the rules and the cost.
///
/// A file smaller than [`PART_SIZE`] is sent in one `PUT` at commit. A larger one becomes a
/// multipart upload as soon as the first [`PART_SIZE`] bytes have arrived, and each further
/// part is sent in the background while the client keeps writing. Parts are spawned onto the
/// current tokio runtime, so an upload must be written from inside one.
pub struct Upload {
    store: Arc<dyn ObjectStore>,
    /// Where the multipart upload is noted, so a sweep can remove it if this process dies.
    journal: Option<UploadJournal>,
    /// Where the upload's events go (see [`wharf_core::events`]).
    events: Option<UploadEvents>,
    /// Where the committed version's SHA-256 is remembered.
    hashes: KnownHashes,
    /// The session's uploads, which this one joins when committed.
    uploaded: SessionUploads,
    /// The file did not exist at open and must not be replaced at commit either (a drop box's
    /// new file: someone else may have created it meanwhile).
    no_replace: bool,
    /// Bytes received from the client (a failed upload's event reports them).
    received: u64,
    /// The store is a local disk: small parts, no part limit (see [`LOCAL_PART_SIZE`]).
    local: bool,
    /// Where the file goes on local disk, when its parts are written directly
    /// ([`LocalStaging`], and [`local::put_whole`] for a small file) rather than through the
    /// store.
    local_file: Option<LocalTarget>,
    path: VirtualPath,
    key: Path,
    /// Length of the contiguous data accepted from offset 0 (existing content copied in
    /// included).
    written: u64,
    /// Truncate, or how this upload continues the existing file. A resume whose first write is
    /// at offset 0 becomes a truncate.
    mode: WriteMode,
    /// The existing object a resume or append continues, until the first write decides what
    /// happens to it (copied in, or dropped). Never an empty object.
    base: Option<ObjectMeta>,
    /// The version whose content was copied in; the commit checks it is still the current one.
    pinned: Option<ObjectMeta>,
    /// An [`WriteMode::Update`] upload rewriting the file from offset 0: the version at open,
    /// whose bytes beyond the last one written are copied in at commit.
    tail: Option<ObjectMeta>,
    /// The bytes the client's writes cover (their lowest offset to their highest end).
    client_range: Option<std::ops::Range<u64>>,
    /// Size of the existing content this upload continues from; 0 for a truncate.
    start_offset: u64,
    /// The tail of the contiguous data not yet sent as a part (at most one part).
    buffer: BytesMut,
    /// Writes that arrived ahead of `written`, by offset. They never overlap each other or the
    /// contiguous data, and all lie within [`REORDER_WINDOW`] of `written`.
    held: BTreeMap<u64, Bytes>,
    /// The bytes in `held`, taken from the session's [`MemoryBudget`].
    held_bytes: Reservation,
    /// SHA-256 of the contiguous data, so the checksum costs no second read.
    hasher: Sha256,
    /// The multipart upload, once the file reached its first part's size.
    multipart: Exclusive<Option<Parts>>,
    parts_sent: u64,
    /// Parts being sent. Spawned, because a part's future only makes progress while polled and
    /// the client's next write must not wait for it.
    in_flight: JoinSet<object_store::Result<()>>,
    state: UploadState,
}

impl Upload {
    /// An upload to `key`. `base` is the existing object to continue (ignored for
    /// [`WriteMode::Truncate`]).
    pub(crate) fn new(
        target: UploadTarget,
        path: VirtualPath,
        key: Path,
        mode: WriteMode,
        base: Option<ObjectMeta>,
    ) -> Self {
        // Continuing nothing, or an empty file, is writing a new file.
        let base = base.filter(|meta| mode != WriteMode::Truncate && meta.size > 0);
        let UploadTarget {
            store,
            journal,
            events,
            local,
            local_file,
            hashes,
            uploaded,
            no_replace,
            held_budget,
        } = target;
        Upload {
            store,
            journal,
            events,
            hashes,
            uploaded,
            no_replace,
            received: 0,
            local,
            local_file,
            path,
            key,
            written: 0,
            mode,
            start_offset: base.as_ref().map_or(0, |meta| meta.size),
            base,
            pinned: None,
            tail: None,
            client_range: None,
            buffer: BytesMut::new(),
            held: BTreeMap::new(),
            held_bytes: held_budget.reservation(),
            hasher: Sha256::new(),
            multipart: Exclusive::new(None),
            parts_sent: 0,
            in_flight: JoinSet::new(),
            state: UploadState::Open,
        }
    }

    /// The file being written.
    pub fn path(&self) -> &VirtualPath {
        &self.path
    }

    /// Size of the existing content this upload continues from: where a resuming client's
    /// data starts (FTP `REST`, SFTP `fstat`). 0 for [`WriteMode::Truncate`], for a file that
    /// did not exist, and once a [`WriteMode::Resume`] upload's first write at offset 0 turned
    /// it into a rewrite.
    pub fn start_offset(&self) -> u64 {
        self.start_offset
    }

    /// Writes `data` at `offset`. Writes must arrive in order, except that writes ahead of the
    /// current end are held in a bounded reorder window (pipelining clients send them slightly
    /// out of order); a write before the end already sent, or beyond the window, fails with
    /// [`VfsError::Unsupported`] and a message saying why.
    ///
    /// Offsets are file offsets: a resuming client's first write is at [`Upload::start_offset`].
    /// With [`WriteMode::Append`] the offset is ignored and `data` goes at the end. The first
    /// write of a resume or append copies the existing content into the upload first, so it
    /// may take a while for a large file (see [`WriteMode`]).
    ///
    /// Overlapping writes (including an exact repeat of data already written) are not
    /// supported. Such a refusal leaves the upload usable; a storage failure (including the
    /// existing file changing while it is copied) aborts it, and every later call fails.
    pub async fn write(&mut self, offset: u64, data: Bytes) -> Result<(), VfsError> {
        self.check_open()?;
        if data.is_empty() {
            return Ok(());
        }
        self.received += data.len() as u64;
        let offset = match self.mode {
            WriteMode::Append => self.len(),
            WriteMode::Truncate | WriteMode::Resume | WriteMode::Update => offset,
        };
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|end| *end <= MAX_UPLOAD_SIZE)
            .ok_or_else(too_large)?;
        if let Some(size) = self.base.as_ref().map(|base| base.size) {
            if offset == 0 && self.mode == WriteMode::Resume {
                // The client is sending the whole file again: a plain replacement.
                tracing::debug!(
                    path = %self.path,
                    existing = size,
                    "resume rewrites from offset 0; the existing content is replaced"
                );
                self.base = None;
                self.start_offset = 0;
                self.mode = WriteMode::Truncate;
            } else if offset == 0 && self.mode == WriteMode::Update {
                // Overwriting from the start without truncating: what lies beyond the last
                // byte written stays, copied in at commit.
                tracing::debug!(
                    path = %self.path,
                    existing = size,
                    "update rewrites from offset 0; the rest of the file is kept"
                );
                self.tail = self.base.take();
                self.start_offset = 0;
                self.mode = WriteMode::Truncate;
            } else if offset < size || end - size > REORDER_WINDOW {
                let how = if self.mode == WriteMode::Update {
                    "a file open for reading and writing can be continued at its end"
                } else {
                    "resuming is only possible at the current end of the file"
                };
                return Err(VfsError::Unsupported(format!(
                    "cannot write at offset {offset}: {how} ({size} bytes) or rewritten from \
                     offset 0; writing into the middle of a file is not supported on object \
                     storage"
                )));
            } else {
                let result = self.copy_base().await;
                if let Err(e) = result {
                    tracing::warn!(
                        path = %self.path,
                        error = %e,
                        "copying the existing content failed; upload aborted"
                    );
                    self.discard().await;
                    self.state = UploadState::Failed(e.to_string());
                    self.report_failure(e.to_string()).await;
                    return Err(e);
                }
            }
        }
        if offset < self.written {
            return Err(VfsError::Unsupported(format!(
                "a write at offset {offset} overlaps the {} bytes already written; overwriting \
                 or rewriting data is not supported on object storage; upload files \
                 sequentially",
                self.written
            )));
        }
        let accepted = if offset > self.written {
            self.hold(offset, end, data)
        } else if let Some((&next, _)) = self.held.first_key_value()
            && next < end
        {
            Err(overlapping(offset, end))
        } else {
            let result = self.append_contiguous(data).await;
            self.fail_on_error(result).await
        };
        if accepted.is_ok() {
            self.client_range = Some(match self.client_range.take() {
                Some(range) => range.start.min(offset)..range.end.max(end),
                None => offset..end,
            });
        }
        accepted
    }

    /// Length of the file so far: the contiguous data from offset 0, which for a resume or
    /// append includes the existing content it continues (even before that is copied in).
    /// Writes held ahead of a gap are not counted.
    pub fn len(&self) -> u64 {
        self.base.as_ref().map_or(self.written, |base| base.size)
    }

    /// The bytes the client's writes have covered so far (from the lowest offset written to
    /// the highest end), `None` before the first write. Data in this range is not what the
    /// file held at open.
    pub fn written_range(&self) -> Option<std::ops::Range<u64>> {
        self.client_range.clone()
    }

    /// Whether a write of the client's has been accepted.
    pub fn has_written(&self) -> bool {
        self.client_range.is_some()
    }

    /// `true` while [`Upload::len`] is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes the file visible (atomically replacing any previous version). Fails if there is a
    /// gap in the written data.
    ///
    /// A resume or append whose existing content was copied in fails (with
    /// [`VfsError::Storage`]) if that content is no longer the current version, so a file
    /// replaced or deleted during the resume is never overwritten with a mix of versions. This
    /// check runs just before the final store call; a replacement in the instant between them
    /// is overwritten (object stores cannot make a multipart commit conditional). A resume or
    /// append committed without any write leaves the file untouched (the summary describes it,
    /// which costs one read of its content for the checksum).
    ///
    /// On any failure the upload is aborted: the previous version stays in place.
    pub async fn commit(mut self) -> Result<UploadSummary, VfsError> {
        self.check_open()?;
        if let Some((&offset, _)) = self.held.first_key_value() {
            let gap = VfsError::Unsupported(format!(
                "the file has a gap: bytes {}..{offset} were never written; upload files \
                 sequentially",
                self.written
            ));
            self.discard().await;
            self.report_failure(gap.to_string()).await;
            return Err(gap);
        }
        let result = self.finish().await;
        match result {
            Ok(summary) => {
                self.state = UploadState::Finished;
                tracing::debug!(
                    path = %self.path,
                    size = summary.size,
                    parts = self.parts_sent,
                    "upload committed"
                );
                Ok(summary)
            }
            Err(e) => {
                tracing::warn!(path = %self.path, error = %e, "upload failed at commit; aborted");
                self.discard().await;
                self.report_failure(e.to_string()).await;
                Err(e)
            }
        }
    }

    /// Throws the upload away.
    pub async fn abort(mut self) -> Result<(), VfsError> {
        tracing::debug!(path = %self.path, "upload aborted");
        self.state = UploadState::Finished;
        finish_parts(&mut self.in_flight).await;
        let aborted = match self.multipart.get_mut().take() {
            Some(mut multipart) => multipart.abort().await,
            None => Ok(()),
        };
        // Reported once the parts are gone, so whoever hears of it finds nothing left.
        self.report_failure("the upload was aborted".to_owned())
            .await;
        Ok(aborted?)
    }

    fn check_open(&self) -> Result<(), VfsError> {
        match &self.state {
            UploadState::Open => Ok(()),
            UploadState::Failed(why) => Err(storage_error(format!(
                "the upload was aborted after an earlier error: {why}"
            ))),
            // `commit` and `abort` consume the upload, so no call can see this state.
            UploadState::Finished => Err(storage_error("the upload is finished".to_owned())),
        }
    }

    /// Holds a write that starts beyond the contiguous end.
    fn hold(&mut self, offset: u64, end: u64, data: Bytes) -> Result<(), VfsError> {
        if end - self.written > REORDER_WINDOW {
            return Err(VfsError::Unsupported(format!(
                "a write at offset {offset} is too far ahead of the {} bytes written so far; \
                 random-access writes are not supported on object storage; upload files \
                 sequentially",
                self.written
            )));
        }
        let overlaps_before = self
            .held
            .range(..offset)
            .next_back()
            .is_some_and(|(&start, held)| start + held.len() as u64 > offset);
        let overlaps_after = self
            .held
            .range(offset..)
            .next()
            .is_some_and(|(&start, _)| start < end);
        if overlaps_before || overlaps_after {
            return Err(overlapping(offset, end));
        }
        self.held_bytes
            .grow(data.len() as u64)
            .map_err(|over| held_over_budget(offset, over))?;
        // Copied: the caller's buffer may be a slice of a much larger one that holding it would
        // keep alive, and the budget counts only these bytes.
        self.held.insert(offset, Bytes::copy_from_slice(&data));
        Ok(())
    }

    /// Appends data that starts exactly at the contiguous end, then any held writes it reaches.
    async fn append_contiguous(&mut self, data: Bytes) -> Result<(), VfsError> {
        self.accept(data).await?;
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.written {
                break;
            }
            let data = entry.remove();
            self.held_bytes.shrink(data.len() as u64);
            self.accept(data).await?;
        }
        Ok(())
    }

    /// Adds contiguous data to the checksum and the buffer, sending each full part.
    async fn accept(&mut self, mut data: Bytes) -> Result<(), VfsError> {
        self.hasher.update(&data);
        self.written += data.len() as u64;
        while !data.is_empty() {
            let part_size = self.part_size();
            if self.buffer.is_empty() && data.len() >= part_size {
                // A whole part from the client's own buffer (FTPS hands over 256 KiB chunks,
                // a local part's size): sent as it is, without copying it.
                self.send_part(data.split_to(part_size)).await?;
                continue;
            }
            let take = (part_size - self.buffer.len()).min(data.len());
            self.reserve(take);
            self.buffer.extend_from_slice(&data.split_to(take));
            if self.buffer.len() == part_size {
                let part = std::mem::take(&mut self.buffer);
                self.send_part(part.freeze()).await?;
                // The file is large: give the next part its whole buffer at once rather than
                // growing (and copying) it step by step.
                self.buffer = BytesMut::with_capacity(self.part_size());
            }
        }
        Ok(())
    }

    /// Grows the buffer by doubling, but never beyond the current part size (`BytesMut` alone
    /// could double an almost full part buffer to twice the size).
    fn reserve(&mut self, additional: usize) {
        let needed = self.buffer.len() + additional;
        if needed <= self.buffer.capacity() {
            return;
        }
        let capacity = needed.max((self.buffer.capacity() * 2).min(self.part_size()));
        let mut grown = BytesMut::with_capacity(capacity);
        grown.extend_from_slice(&self.buffer);
        self.buffer = grown;
    }

    /// The size of the next part: [`part_size`] on object stores, [`LOCAL_PART_SIZE`] on local
    /// disk.
    fn part_size(&self) -> usize {
        if self.local {
            LOCAL_PART_SIZE
        } else {
            part_size(self.parts_sent)
        }
    }

    /// Sends one part, starting the multipart upload first if needed. Parts are numbered by the
    /// order of these calls; at most [`IN_FLIGHT_BYTES`] (or one part) are outstanding. Part
    /// sizes never shrink, so counting parts of the current size bounds the bytes.
    async fn send_part(&mut self, part: Bytes) -> Result<(), VfsError> {
        if self.parts_sent >= MAX_PARTS && !self.local {
            return Err(too_large());
        }
        // By the schedule, not this part's length: the last part may be short.
        let max_in_flight = if self.local_file.is_some() {
            STAGING_PARTS_IN_FLIGHT
        } else if self.local {
            LOCAL_PARTS_IN_FLIGHT
        } else {
            (IN_FLIGHT_BYTES / part_size(self.parts_sent)).max(1)
        };
        while self.in_flight.len() >= max_in_flight {
            if let Some(result) = self.in_flight.join_next().await {
                part_result(result)?;
            }
        }
        let multipart = match self.multipart.get_mut() {
            Some(multipart) => multipart,
            None => {
                tracing::debug!(path = %self.path, "starting a multipart upload");
                let started = match (&self.local_file, &self.journal) {
                    (Some(target), _) => Parts::Local(LocalStaging::create(target.clone())?),
                    (None, Some(journal)) => Parts::Store(journal.start(&self.key).await?),
                    (None, None) => Parts::Store(self.store.put_multipart(&self.key).await?),
                };
                self.multipart.get_mut().insert(started)
            }
        };
        match multipart {
            Parts::Store(multipart) => {
                self.in_flight
                    .spawn(multipart.put_part(PutPayload::from(part)));
            }
            Parts::Local(staging) => match staging.put_part(part) {
                PartWrite::Done(written) => written?,
                PartWrite::Pending(writing) => {
                    self.in_flight.spawn(writing);
                }
            },
        }
        self.parts_sent += 1;
        // Surface failures of earlier parts now rather than at commit.
        while let Some(result) = self.in_flight.try_join_next() {
            part_result(result)?;
        }
        Ok(())
    }

    /// Reads the existing content (`self.base`) from the store, pinned to the version seen at
    /// open, in ranged GETs of at most [`PART_SIZE`]. With `copy`, every byte goes into the
    /// upload ahead of the client's data (buffer and parts, hashed as it goes); without, it is
    /// only hashed. Either way `self.base` is consumed and becomes `self.pinned`.
    async fn read_base(&mut self, copy: bool) -> Result<(), VfsError> {
        let Some(base) = self.base.take() else {
            return Ok(());
        };
        self.read_existing(base, 0, copy).await
    }

    /// Reads bytes `from..` of the version `base` (see [`Upload::read_base`]), which becomes
    /// `self.pinned`.
    async fn read_existing(
        &mut self,
        base: ObjectMeta,
        from: u64,
        copy: bool,
    ) -> Result<(), VfsError> {
        let started = std::time::Instant::now();
        let mut position = from;
        while position < base.size {
            let end = (position + PART_SIZE as u64).min(base.size);
            let options = GetOptions::new()
                .with_range(Some(GetRange::Bounded(position..end)))
                .with_if_match(base.e_tag.clone())
                // Without an entity tag (no supported store lacks one), pin what there is.
                .with_if_unmodified_since(base.e_tag.is_none().then_some(base.last_modified));
            let result = match self.store.get_opts(&self.key, options).await {
                Ok(result) => result,
                Err(e) => return Err(self.base_error(e)),
            };
            if result.meta.size != base.size || result.meta.e_tag != base.e_tag {
                return Err(self.changed_during_resume());
            }
            let mut stream = result.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.base_error(e))?;
                position += chunk.len() as u64;
                if position > end {
                    return Err(self.changed_during_resume());
                }
                if copy {
                    self.accept(chunk).await?;
                } else {
                    self.hasher.update(&chunk);
                }
            }
            if position != end {
                return Err(self.changed_during_resume());
            }
        }
        tracing::debug!(
            path = %self.path,
            bytes = base.size,
            copied = copy,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "read the existing content of a resumed upload"
        );
        self.pinned = Some(base);
        Ok(())
    }

    /// Copies the existing content in, ahead of the client's first write.
    async fn copy_base(&mut self) -> Result<(), VfsError> {
        tracing::debug!(
            path = %self.path,
            existing = self.start_offset,
            mode = ?self.mode,
            "continuing an existing file"
        );
        self.read_base(true).await
    }

    /// A store error while reading the existing content: the file changed or went away, or the
    /// store failed.
    fn base_error(&self, e: object_store::Error) -> VfsError {
        match e {
            object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. } => {
                self.changed_during_resume()
            }
            other => other.into(),
        }
    }

    fn changed_during_resume(&self) -> VfsError {
        tracing::info!(
            path = %self.path,
            "the file changed while an upload was continuing it; upload aborted"
        );
        storage_error(format!(
            "{} was replaced or deleted while this upload was continuing it; nothing was \
             changed: check the file's size and resume again",
            self.path
        ))
    }

    /// Fails unless the version whose content was copied in is still the current one.
    async fn check_pinned(&self) -> Result<(), VfsError> {
        let Some(pinned) = &self.pinned else {
            return Ok(());
        };
        let current = crate::vfs::head(self.store.as_ref(), &self.key).await?;
        let unchanged = current.is_some_and(|now| match (&now.e_tag, &pinned.e_tag) {
            (Some(now_tag), Some(pinned_tag)) => now_tag == pinned_tag,
            _ => now.size == pinned.size && now.last_modified == pinned.last_modified,
        });
        if unchanged {
            Ok(())
        } else {
            Err(self.changed_during_resume())
        }
    }

    /// Fails if the upload must not replace a file and one exists by now.
    async fn check_no_replace(&self) -> Result<(), VfsError> {
        if self.no_replace
            && crate::vfs::head(self.store.as_ref(), &self.key)
                .await?
                .is_some()
        {
            return Err(VfsError::PermissionDenied(
                "the file was created by someone else while this upload was in progress; a \
                 write-only user cannot replace it",
            ));
        }
        Ok(())
    }

    /// Sends what remains and makes the object visible.
    async fn finish(&mut self) -> Result<UploadSummary, VfsError> {
        if let Some(tail) = self.tail.take()
            && self.written < tail.size
        {
            // An update that rewrote the start of the file keeps the rest.
            let from = self.written;
            self.read_existing(tail, from, true).await?;
        }
        if let Some(size) = self.base.as_ref().map(|base| base.size) {
            // A resume or append without a single write: the file stays as it is.
            self.read_base(false).await?;
            return Ok(UploadSummary {
                size,
                sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
            });
        }
        let sha256 = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let rest = std::mem::take(&mut self.buffer).freeze();
        // Everything but the step that makes the object visible.
        let single_put = if self.multipart.get_mut().is_none() {
            // Small file: one round trip.
            Some(rest)
        } else {
            if !rest.is_empty() {
                self.send_part(rest).await?;
            }
            while let Some(result) = self.in_flight.join_next().await {
                part_result(result)?;
            }
            None
        };
        self.check_pinned().await?;
        self.check_no_replace().await?;
        let event = self.begin_event(&sha256).await?;
        let visible: Result<Option<String>, VfsError> = match single_put {
            Some(rest) => match &self.local_file {
                Some(target) => local::put_whole(target.clone(), rest)
                    .await
                    .map(|()| local::e_tag(&target.dest)),
                None => self
                    .store
                    .put(&self.key, PutPayload::from(rest))
                    .await
                    .map(|done| done.e_tag),
            }
            .map_err(VfsError::from),
            None => match self.multipart.get_mut() {
                Some(multipart) => multipart.complete().await.map_err(VfsError::from),
                None => Ok(None),
            },
        };
        if visible.is_ok() {
            // Completed: there is nothing left to abort.
            *self.multipart.get_mut() = None;
        }
        if let Some(event_id) = event {
            self.settle_event(&event_id, visible.as_ref().map(|_| ()))
                .await;
        }
        let e_tag = visible?;
        self.uploaded.record(&self.key);
        match (e_tag, hex::decode(&sha256)) {
            (Some(tag), Ok(digest)) => self.hashes.insert(&self.key, tag, digest),
            _ => self.hashes.forget(&self.key),
        }
        Ok(UploadSummary {
            size: self.written,
            sha256,
        })
    }

    /// Step 1 of recording the upload: a pending `file.created` with the final size and
    /// checksum. Without it the upload must not become visible: an upload nobody hears of is
    /// worse than one the partner retries.
    async fn begin_event(&mut self, sha256: &str) -> Result<Option<String>, VfsError> {
        let Some(events) = &self.events else {
            return Ok(None);
        };
        let mut data = events.data.clone();
        data.size = Some(self.written);
        data.sha256 = Some(sha256.to_owned());
        match events.sink.begin_upload(data).await {
            Ok(id) => Ok(Some(id)),
            Err(e) => {
                tracing::error!(path = %self.path, error = %e, "cannot record the upload; not committing it");
                // The event service knows nothing of it: no failure event either.
                self.events = None;
                Err(storage_error(format!(
                    "the upload could not be recorded, so it was not committed ({e}); retry \
                     later"
                )))
            }
        }
    }

    /// Step 2: how the commit went. If this cannot be recorded, the control plane settles the
    /// pending event itself later by looking at the store.
    async fn settle_event(&mut self, event_id: &str, visible: Result<(), &VfsError>) {
        let Some(events) = self.events.take() else {
            return;
        };
        let error = visible.as_ref().err().map(ToString::to_string);
        if let Err(e) = events
            .sink
            .settle_upload_later(event_id, visible.is_ok(), error)
            .await
        {
            tracing::warn!(
                path = %self.path,
                event = event_id,
                error = %e,
                "could not settle the upload event; the control plane will settle it"
            );
        }
    }

    /// The `file.upload_failed` event of an upload that received data, at most once.
    fn failure_event(&mut self, error: String) -> Option<(Arc<dyn EventSink>, EventData)> {
        if self.received == 0 {
            return None;
        }
        let events = self.events.take()?;
        let mut data = events.data;
        data.size = Some(self.received);
        data.error = Some(error);
        Some((events.sink, data))
    }

    async fn report_failure(&mut self, error: String) {
        if let Some((sink, data)) = self.failure_event(error) {
            record_failure(sink, data).await;
        }
    }

    /// Turns a storage failure into an aborted upload, so no parts are left behind and later
    /// calls fail. Refusals of a write (overlap, too far ahead) leave the upload open.
    async fn fail_on_error(&mut self, result: Result<(), VfsError>) -> Result<(), VfsError> {
        if let Err(e) = &result
            && !matches!(e, VfsError::Unsupported(_))
        {
            tracing::warn!(path = %self.path, error = %e, "upload failed; aborting it");
            self.discard().await;
            self.state = UploadState::Failed(e.to_string());
            self.report_failure(e.to_string()).await;
        }
        result
    }

    /// Stops the parts in flight and aborts the multipart upload, logging a failure to abort
    /// (the bucket's lifecycle rule for incomplete uploads is the backstop).
    async fn discard(&mut self) {
        self.state = UploadState::Finished;
        self.held.clear();
        self.held_bytes.shrink(u64::MAX);
        self.buffer = BytesMut::new();
        finish_parts(&mut self.in_flight).await;
        if let Some(mut multipart) = self.multipart.get_mut().take()
            && let Err(e) = multipart.abort().await
        {
            tracing::warn!(path = %self.path, error = %e, "could not abort a multipart upload");
        }
    }
}

impl Drop for Upload {
    /// An upload dropped before commit (a client that disconnected, a session that ended) is
    /// aborted in the background: its previous version stays and its parts are removed.
    fn drop(&mut self) {
        if !matches!(self.state, UploadState::Open) {
            return;
        }
        if let Some((sink, data)) =
            self.failure_event("the connection ended before the file was closed".to_owned())
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(record_failure(sink, data));
        }
        let Some(mut multipart) = self.multipart.get_mut().take() else {
            // Nothing was sent yet: dropping the buffers is all there is to do.
            return;
        };
        let mut in_flight = std::mem::take(&mut self.in_flight);
        let path = self.path.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                tracing::debug!(%path, "upload dropped before commit; aborting it");
                handle.spawn(async move {
                    finish_parts(&mut in_flight).await;
                    if let Err(e) = multipart.abort().await {
                        tracing::warn!(%path, error = %e, "could not abort a multipart upload");
                    }
                });
            }
            Err(_) => tracing::warn!(
                %path,
                "upload dropped outside a tokio runtime; its multipart upload is left to the \
                 bucket's lifecycle rule"
            ),
        }
    }
}

/// Where an upload goes: the store and what the session knows about it.
pub(crate) struct UploadTarget {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) journal: Option<UploadJournal>,
    pub(crate) events: Option<UploadEvents>,
    /// The store is a local disk (see [`LOCAL_PART_SIZE`]).
    pub(crate) local: bool,
    /// The file's path on local disk, if its parts may be written there directly
    /// ([`LocalStaging`]); `None` sends them through `store`.
    pub(crate) local_file: Option<LocalTarget>,
    /// Where the committed version's SHA-256 is remembered.
    pub(crate) hashes: KnownHashes,
    /// The session's uploads.
    pub(crate) uploaded: SessionUploads,
    /// Refuse the commit if the file exists by then (see [`Upload`]'s field).
    pub(crate) no_replace: bool,
    /// What writes held out of order may take (the session's).
    pub(crate) held_budget: MemoryBudget,
}

/// A multipart upload: the store's, or a local-disk staging file written directly.
enum Parts {
    Store(Box<dyn MultipartUpload>),
    Local(LocalStaging),
}

impl Parts {
    /// Makes the upload visible; returns the entity tag of the new version where known.
    /// Every part must have finished.
    async fn complete(&mut self) -> object_store::Result<Option<String>> {
        match self {
            Parts::Store(multipart) => multipart.complete().await.map(|done| done.e_tag),
            Parts::Local(staging) => {
                staging.complete().await?;
                Ok(local::e_tag(staging.dest()))
            }
        }
    }

    /// Throws the parts away. Every part must have finished.
    async fn abort(&mut self) -> object_store::Result<()> {
        match self {
            Parts::Store(multipart) => multipart.abort().await,
            Parts::Local(staging) => staging.abort().await,
        }
    }
}

/// What an upload needs to report its events.
pub(crate) struct UploadEvents {
    pub(crate) sink: Arc<dyn EventSink>,
    /// Bucket, key and session; size, checksum and error are filled in when known.
    pub(crate) data: EventData,
}

/// Waits for the parts still being sent, whatever their outcome, before an abort. Cancelling
/// them instead does not stop a store that has started receiving a part: S3 documents that a
/// part still arriving during the abort may survive it, and s3s-fs then leaves the part's
/// file behind. The wait is bounded by the parts in flight ([`IN_FLIGHT_BYTES`]) and by the
/// store client's request timeout.
async fn finish_parts(in_flight: &mut JoinSet<object_store::Result<()>>) {
    while in_flight.join_next().await.is_some() {}
}

async fn record_failure(sink: Arc<dyn EventSink>, data: EventData) {
    let key = data.key.clone();
    if let Err(e) = sink.record(EventType::FileUploadFailed, data).await {
        tracing::error!(%key, error = %e, "could not record a failed upload");
    }
}

fn part_result(
    result: Result<object_store::Result<()>, tokio::task::JoinError>,
) -> Result<(), VfsError> {
    match result {
        Ok(sent) => Ok(sent?),
        Err(e) => Err(storage_error(format!("a part upload did not finish: {e}"))),
    }
}

pub(crate) fn storage_error(message: String) -> VfsError {
    VfsError::Storage(object_store::Error::Generic {
        store: "wharf-vfs",
        source: message.into(),
    })
}

fn too_large() -> VfsError {
    VfsError::Unsupported(format!(
        "files larger than {MAX_UPLOAD_SIZE} bytes ({} GiB) are not supported",
        MAX_UPLOAD_SIZE as f64 / (1u64 << 30) as f64
    ))
}

fn held_over_budget(offset: u64, over: OverBudget) -> VfsError {
    VfsError::Busy(format!(
        "the write at offset {offset} arrived ahead of earlier data, and the server already \
         holds {} MiB of such writes (its limit); send writes in order, or fewer at once, and \
         retry",
        over.limit / (1024 * 1024)
    ))
}

fn overlapping(offset: u64, end: u64) -> VfsError {
    VfsError::Unsupported(format!(
        "the write of bytes {offset}..{end} overlaps data already written; overlapping writes \
         are not supported on object storage; upload files sequentially"
    ))
}

/// A file being read. A background task fetches the file ahead of the reader in ranged GETs
/// ([`READ_AHEAD_FIRST`], then [`READ_AHEAD_CHUNK`] bytes each, at most [`READ_AHEAD_CHUNKS`]
/// chunks ahead), so pipelined reads are served from memory instead of paying a store round
/// trip each, and a local file is read in large blocks rather than object_store's 8 KiB stream
/// chunks. A read that does not continue where the previous one ended restarts the read-ahead
/// there (short forward jumps read on instead).
///
/// Every GET is conditional on the entity tag seen at open, so a file replaced while being read
/// fails the read instead of mixing two versions.
pub struct Download {
    store: Arc<dyn ObjectStore>,
    path: VirtualPath,
    key: Path,
    size: u64,
    e_tag: Option<String>,
    last_modified: chrono::DateTime<chrono::Utc>,
    /// File offset of the first byte of `buffer`: where the next sequential read starts.
    position: u64,
    /// Bytes received from the read-ahead and not yet returned.
    buffer: BytesMut,
    /// The read-ahead delivering the bytes after `buffer`; `None` until needed.
    ahead: Option<ReadAhead>,
    /// Ranged GETs in flight at once ([`READ_AHEAD_GETS`] on object stores, 1 on local disk).
    concurrency: usize,
}

/// Size of the first ranged GET of a read-ahead: small, so a small file or the first bytes of a
/// large one arrive quickly.
pub const READ_AHEAD_FIRST: u64 = 1024 * 1024;
/// Size of each further ranged GET.
pub const READ_AHEAD_CHUNK: u64 = 4 * 1024 * 1024;
/// Chunks fetched ahead of the reader and waiting for it.
pub const READ_AHEAD_CHUNKS: usize = 2;
/// Ranged GETs in flight at once per download on object stores (local disk reads one at a
/// time). With [`READ_AHEAD_CHUNKS`] this bounds a download's memory to about 36 MiB, in the
/// range of an upload's. Measured on s3s-fs (1 GiB, OpenSSH `sftp`): 3 GETs of 4 MiB gave
/// 137-146 MB/s, 6 gave 183-196; the store's time to first byte of each GET is what the
/// extra GETs hide.
pub const READ_AHEAD_GETS: usize = 6;

/// The background fetch of one download; aborted when dropped (a seek or the end of the read).
struct ReadAhead {
    chunks: tokio::sync::mpsc::Receiver<object_store::Result<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReadAhead {
    fn start(
        store: Arc<dyn ObjectStore>,
        key: Path,
        e_tag: Option<String>,
        start: u64,
        size: u64,
        concurrency: usize,
    ) -> Self {
        let (tx, chunks) = tokio::sync::mpsc::channel(READ_AHEAD_CHUNKS);
        let task = tokio::spawn(async move {
            // The ranges to fetch, in order: a small first one, then READ_AHEAD_CHUNK each.
            let ranges =
                std::iter::successors(Some(start..(start + READ_AHEAD_FIRST).min(size)), |r| {
                    (r.end < size).then(|| r.end..(r.end + READ_AHEAD_CHUNK).min(size))
                })
                .filter(|r| !r.is_empty());
            // Several GETs at once, delivered in order: on an object store each GET pays a
            // round trip and the server's time to first byte, which one at a time would add
            // to every chunk.
            let mut fetches = futures::stream::iter(ranges)
                .map(|range| {
                    let store = Arc::clone(&store);
                    let key = key.clone();
                    let options = GetOptions::new()
                        .with_range(Some(GetRange::Bounded(range)))
                        .with_if_match(e_tag.clone());
                    async move {
                        match store.get_opts(&key, options).await {
                            Ok(result) => result.bytes().await,
                            Err(e) => Err(e),
                        }
                    }
                })
                .buffered(concurrency.max(1));
            while let Some(fetched) = fetches.next().await {
                let stop = match &fetched {
                    Ok(bytes) => bytes.is_empty(),
                    Err(_) => true,
                };
                if stop && fetched.is_ok() {
                    break;
                }
                if tx.send(fetched).await.is_err() || stop {
                    break;
                }
            }
        });
        ReadAhead { chunks, task }
    }
}

impl Download {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        path: VirtualPath,
        meta: ObjectMeta,
        local: bool,
    ) -> Self {
        Download {
            concurrency: if local { 1 } else { READ_AHEAD_GETS },
            store,
            path,
            key: meta.location,
            size: meta.size,
            e_tag: meta.e_tag,
            last_modified: meta.last_modified,
            position: 0,
            buffer: BytesMut::new(),
            ahead: None,
        }
    }

    /// The file being read.
    pub fn path(&self) -> &VirtualPath {
        &self.path
    }

    /// Size of the file when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The entity tag of the version being read, as the store reports it (S3 quotes it, local
    /// disk does not); `None` where the store has none. Every read is pinned to it.
    pub fn e_tag(&self) -> Option<&str> {
        self.e_tag.as_deref()
    }

    /// When the version being read was last modified.
    pub fn last_modified(&self) -> chrono::DateTime<chrono::Utc> {
        self.last_modified
    }

    /// Up to `len` bytes at `offset`; fewer only at the end of the file, empty at or past it.
    pub async fn read(&mut self, offset: u64, len: u32) -> Result<Bytes, VfsError> {
        if offset >= self.size || len == 0 {
            return Ok(Bytes::new());
        }
        let wanted = u64::from(len).min(self.size - offset) as usize;
        match offset.checked_sub(self.position) {
            Some(0) => {}
            // Worth it only while a read-ahead is running: otherwise the next GET can start at
            // `offset` for free.
            Some(skip)
                if skip <= MAX_READ_SKIP && (self.ahead.is_some() || !self.buffer.is_empty()) =>
            {
                // A short jump forward: read on and drop the bytes in between.
                self.fill(skip as usize).await?;
                let skip = (skip as usize).min(self.buffer.len());
                self.buffer.advance(skip);
                self.position += skip as u64;
                if self.position != offset {
                    self.seek(offset);
                }
            }
            _ => self.seek(offset),
        }
        self.fill(wanted).await?;
        let n = wanted.min(self.buffer.len());
        self.position += n as u64;
        Ok(self.buffer.split_to(n).freeze())
    }

    /// Drops the read-ahead and the buffer; the next fill starts a read-ahead at `offset`.
    fn seek(&mut self, offset: u64) {
        tracing::trace!(path = %self.path, from = self.position, to = offset, "seek");
        self.ahead = None;
        self.buffer.clear();
        self.position = offset;
    }

    /// Takes chunks from the read-ahead until `buffer` holds `n` bytes or the file ends.
    async fn fill(&mut self, n: usize) -> Result<(), VfsError> {
        while self.buffer.len() < n {
            let start = self.position + self.buffer.len() as u64;
            if start >= self.size {
                return Ok(());
            }
            let ahead = self.ahead.get_or_insert_with(|| {
                ReadAhead::start(
                    Arc::clone(&self.store),
                    self.key.clone(),
                    self.e_tag.clone(),
                    start,
                    self.size,
                    self.concurrency,
                )
            });
            match ahead.chunks.recv().await {
                Some(Ok(chunk)) => {
                    if self.buffer.is_empty() {
                        // Usually the whole request fits in one chunk: no copy.
                        self.buffer = BytesMut::from(chunk);
                    } else {
                        self.buffer.extend_from_slice(&chunk);
                    }
                }
                Some(Err(e)) => {
                    self.ahead = None;
                    return Err(e.into());
                }
                // The file ended early (it shrank under us) or the task ended.
                None => {
                    self.ahead = None;
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// A value reachable only through `&mut self`, which makes it `Sync` whenever it is `Send`
/// (a shared reference gives no access at all). Multipart uploads and GET streams are `Send`
/// but not `Sync`; wrapping them keeps [`Upload`] and [`Download`] `Sync`, so protocol code can
/// keep them in state that tasks share by reference. A `Mutex` that is never locked provides
/// this without `unsafe`.
struct Exclusive<T>(std::sync::Mutex<T>);

impl<T> Exclusive<T> {
    fn new(value: T) -> Self {
        Exclusive(std::sync::Mutex::new(value))
    }

    fn get_mut(&mut self) -> &mut T {
        // Never locked, so never poisoned; recover anyway rather than panic.
        self.0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
