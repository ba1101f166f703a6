//! Password hashing (argon2id) and the two kinds of secret the control plane mints: user
//! passwords and API keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use aws_lc_rs::hmac;
use rand::RngExt;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit};

/// How many hashes run at once: one per core. Argon2 with its default parameters (argon2id,
/// 19 MiB, 2 passes) takes tens of milliseconds of CPU per call, so more at once would only
/// share the cores; a login storm waits in [`Gate`]'s bounded queue, or is refused past it,
/// instead of exhausting memory.
static HASHING_SLOTS: LazyLock<Gate> =
    LazyLock::new(|| Gate::new(hashing_threads(), 64 * hashing_threads()));

/// The threads that run argon2, one per slot. Hashing never waits for a thread of tokio's
/// blocking pool, which every local-disk file operation shares: a flood of slow file calls
/// cannot hold up logins, nor a login storm file calls.
static HASHERS: LazyLock<HashPool> = LazyLock::new(|| HashPool::start(hashing_threads()));

/// Slots, and a bounded queue for them: 64 waiting hashes per slot at most. Past that a new
/// one is refused at once ([`Busy`]) rather than queued: a login storm (a brute force from
/// many addresses, a reconnect wave) gets fast "try again" answers instead of making every
/// login wait behind it, and the queue's memory stays bounded. At tens of milliseconds per
/// hash per core, a full queue is drained in a few seconds. Logins whose password was verified
/// recently skip the queue (see [`Verified`]).
struct Gate {
    slots: Semaphore,
    /// Hashes waiting for a slot now.
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// A place in a [`Gate`]'s queue, left when dropped (also when the waiting login is
/// abandoned).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    fn new(slots: usize, max_waiting: usize) -> Gate {
        Gate {
            slots: Semaphore::new(slots),
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// A free slot, or one after waiting in the queue; [`Busy`] when the queue is full.
    async fn enter(&self) -> Result<SemaphorePermit<'_>, Busy> {
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(permit);
        }
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_waiting).then_some(n + 1)
            })
            .map_err(|_| Busy)?;
        let _waiting = Waiting(&self.waiting);
        // The semaphore is never closed.
        self.slots.acquire().await.map_err(|_| Busy)
    }
}

/// Every hashing slot is taken and the queue for them is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many passwords are being checked at once; try again in a moment")]
pub struct Busy;

fn hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A fixed set of threads taking jobs from one queue. Never more jobs than threads are queued:
/// a job is submitted only by the holder of a [`Slot`].
struct HashPool {
    jobs: Mutex<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>>,
}

impl HashPool {
    fn start(threads: usize) -> HashPool {
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let queue = std::sync::Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            let started = std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panicking job drops its reply sender (its caller sees a failure);
                        // the thread goes on.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = started {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        HashPool {
            jobs: Mutex::new(jobs),
        }
    }

    /// Runs `f` on a hashing thread; `None` if it panicked or no thread runs.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let job = Box::new(move || {
            let _ = reply.send(f());
        });
        self.jobs.lock().ok()?.send(job).ok()?;
        result.await.ok()
    }
}

/// Argon2's working memory, kept between hashes: at most one buffer per slot.
///
/// Allocating 19 MiB per login and freeing it again made the process grow by hundreds of
/// megabytes under a login storm: glibc raises its mmap threshold after the first such free,
/// so later buffers come from per-thread arenas, and each of the many blocking threads keeps
/// its arena's top. Reusing a few buffers keeps memory flat (cores × 19 MiB) and saves the page
/// faults of touching fresh memory on every login.
static MEMORY: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Buffers larger than this (a hash imported with a high memory cost) are used once and freed
/// rather than kept.
const MAX_KEPT_BLOCKS: usize = 64 * 1024;

/// A hashing slot: a permit and the working memory that goes with it.
struct Slot {
    _permit: SemaphorePermit<'static>,
    memory: Vec<Block>,
}

impl Slot {
    /// A free slot, or a place in the bounded queue for one; [`Busy`] when that is full too
    /// (or the slots are closed, which they never are).
    async fn acquire() -> Result<Slot, Busy> {
        let permit = HASHING_SLOTS.enter().await?;
        let memory = MEMORY
            .lock()
            .map(|mut kept| kept.pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        Ok(Slot {
            _permit: permit,
            memory,
        })
    }
}

/// Takes every hashing slot until the permit is dropped: a test then sees whether a check
/// runs argon2 (it waits) or not (it answers).
#[cfg(test)]
pub(crate) async fn take_every_slot() -> SemaphorePermit<'static> {
    HASHING_SLOTS
        .slots
        .acquire_many(hashing_threads() as u32)
        .await
        .expect("the hashing slots are open")
}

/// The first `blocks` blocks of `memory`, grown if needed.
fn working_memory(memory: &mut Vec<Block>, blocks: usize) -> &mut [Block] {
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    &mut memory[..blocks]
}

impl Drop for Slot {
    fn drop(&mut self) {
        let memory = std::mem::take(&mut self.memory);
        if memory.len() <= MAX_KEPT_BLOCKS
            && let Ok(mut kept) = MEMORY.lock()
        {
            kept.push(memory);
        }
    }
}

/// A hash of a password nobody knows, verified against when the user does not exist, so that
/// a login for an unknown user takes as long as one with a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut memory = Vec::new();
    hash_with(&generate_api_key(), &mut memory).expect("argon2 hashes with its default parameters")
});

/// How long a successful password check is remembered (see [`Verified`]).
pub const VERIFIED_TTL: Duration = Duration::from_secs(10 * 60);

/// Most successful checks remembered at once (about 200 bytes each).
const VERIFIED_MAX: usize = 10_000;

/// Successful password checks of the last [`VERIFIED_TTL`], so that a partner logging in again
/// with the same password costs one HMAC-SHA256 instead of another argon2 run (tens of
/// milliseconds of CPU). Partners' scripts reconnect every few minutes, and a client running
/// 20 transfers at once logs in 20 times; SFTPGo caches verified passwords for the same reason.
///
/// - Keyed by the user and the stored hash: a new password (a new salted hash) or a deleted
///   user never matches an old entry, and no user's entry serves another (even one whose
///   stored hash is a copy).
/// - Only successes are remembered, so a wrong password always pays argon2's full cost, and a
///   hit reveals nothing the login's success does not.
/// - What is kept is an HMAC of the password under a random key that exists only in this
///   process's memory, never the password.
struct Verified {
    key: hmac::Key,
    /// User and stored hash ([`login_key`]) → when the password was verified, and the HMAC of
    /// the password that matched.
    entries: Mutex<HashMap<String, (Instant, hmac::Tag)>>,
}

static VERIFIED: LazyLock<Verified> = LazyLock::new(|| {
    let mut key = [0u8; 32];
    rand::rng().fill(&mut key[..]);
    Verified::new(&key)
});

impl Verified {
    /// An empty cache whose HMACs use `key`.
    fn new(key: &[u8]) -> Self {
        Verified {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// What is signed: the entry's key, a separator, the password.
    fn message(key: &str, password: &str) -> Vec<u8> {
        [key.as_bytes(), &[0], password.as_bytes()].concat()
    }

    fn tag(&self, key: &str, password: &str) -> hmac::Tag {
        hmac::sign(&self.key, &Self::message(key, password))
    }

    /// Whether `password` matched for `key` less than [`VERIFIED_TTL`] before `now`. Compared
    /// in constant time.
    fn remembers(&self, key: &str, password: &str, now: Instant) -> bool {
        let tag = match self.entries.lock() {
            Ok(entries) => match entries.get(key) {
                Some((at, tag)) if now.saturating_duration_since(*at) < VERIFIED_TTL => *tag,
                _ => return false,
            },
            Err(_) => return false,
        };
        hmac::verify(&self.key, &Self::message(key, password), tag.as_ref()).is_ok()
    }

    /// Notes that `password` matched for `key` at `now`. When full, expired entries go first;
    /// if none has expired, the oldest does.
    fn remember(&self, key: &str, password: &str, now: Instant) {
        let tag = self.tag(key, password);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= VERIFIED_MAX && !entries.contains_key(key) {
            entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < VERIFIED_TTL);
            if entries.len() >= VERIFIED_MAX
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(key, _)| key.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key.to_owned(), (now, tag));
    }
}

/// The key of a user's entry in [`Verified`]: the username and the stored hash.
fn login_key(username: &str, phc: &str) -> String {
    format!("{username}\0{phc}")
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// The argon2id PHC string of `password` with a new random salt, in `memory`.
fn hash_with(password: &str, memory: &mut Vec<Block>) -> Result<String, HashError> {
    let error = |e: &dyn std::fmt::Display| HashError::Failed(e.to_string());
    let params = Params::default();
    let blocks = params.block_count();
    let mut salt = [0u8; 16];
    rand::rng().fill(&mut salt[..]);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            &salt,
            &mut out,
            working_memory(memory, blocks),
        )
        .map_err(|e| error(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| error(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| error(&e))?),
        hash: Some(Output::new(&out).map_err(|e| error(&e))?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc` (any argon2 variant and parameters).
/// Unreadable strings are mismatches. The comparison is constant-time ([`Output`]'s `==`).
fn verify_in(password: &str, phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(hash.algorithm.as_str()),
        Params::try_from(&hash),
    ) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let blocks = params.block_count();
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params);
    let computed = if blocks > MAX_KEPT_BLOCKS {
        argon2.hash_password_into(password.as_bytes(), salt, &mut out)
    } else {
        argon2.hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            working_memory(memory, blocks),
        )
    };
    computed.is_ok() && Output::new(&out).is_ok_and(|out| out == *expected)
}

/// The argon2id PHC string of `password` (salt generated).
pub async fn hash_password(password: String) -> Result<String, HashError> {
    let mut slot = Slot::acquire().await?;
    HASHERS
        .run(move || hash_with(&password, &mut slot.memory))
        .await
        .ok_or_else(|| HashError::Failed("the hashing thread failed".to_owned()))?
}

/// Whether `password` matches `hash`. With no hash (unknown user), checks against a dummy hash
/// and returns `false`, taking the same time. An unreadable stored hash is a mismatch.
/// [`Busy`] when too many checks wait already.
pub async fn verify_password(password: String, hash: Option<String>) -> Result<bool, Busy> {
    let mut slot = Slot::acquire().await?;
    let matches = HASHERS
        .run(move || {
            let known = hash.is_some();
            let hash = hash.as_deref().unwrap_or(DUMMY_HASH.as_str());
            let matches = verify_in(&password, hash, &mut slot.memory);
            known && matches
        })
        .await
        .unwrap_or(false);
    Ok(matches)
}

/// [`verify_password`] for a login by `username` (whose stored hash is `hash`): a password
/// that matched the same user's same stored hash in the last [`VERIFIED_TTL`] is accepted
/// without running argon2 again (see [`Verified`]).
pub async fn verify_login_password(
    username: &str,
    password: String,
    hash: Option<String>,
) -> Result<bool, Busy> {
    let Some(phc) = hash else {
        return verify_password(password, None).await;
    };
    let key = login_key(username, &phc);
    if VERIFIED.remembers(&key, &password, Instant::now()) {
        return Ok(true);
    }
    let matches = verify_password(password.clone(), Some(phc)).await?;
    if matches {
        VERIFIED.remember(&key, &password, Instant::now());
    }
    Ok(matches)
}

const BASE62: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A new API key: `wharf_` and 40 random base62 characters (about 238 bits).
pub fn generate_api_key() -> String {
    let mut rng = rand::rng();
    let random: String = (0..40)
        .map(|_| BASE62[rng.random_range(0..BASE62.len())] as char)
        .collect();
    format!("wharf_{random}")
}

/// How an API key is stored: SHA-256, hex. API keys are long random strings (not passwords a
/// person chose), so guessing one from its hash is as hard as guessing the key itself: a fast
/// hash is enough, and it lets every request find its key with one indexed lookup.
pub fn api_key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The first characters of a key, stored to tell keys apart. Short keys (set by an operator)
/// reveal less.
pub fn api_key_prefix(key: &str) -> String {
    let len = key.chars().count();
    let shown = if len >= 32 { 10 } else { len / 4 };
    key.chars().take(shown).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn only_recent_successes_with_the_same_password_and_hash_are_remembered() {
        let cache = Verified::new(b"test key");
        let now = Instant::now();
        assert!(!cache.remembers("$hash-a", "pw", now), "nothing yet");
        cache.remember("$hash-a", "pw", now);
        assert!(cache.remembers("$hash-a", "pw", now));
        assert!(cache.remembers("$hash-a", "pw", now + VERIFIED_TTL / 2));
        assert!(
            !cache.remembers("$hash-a", "pw", now + VERIFIED_TTL),
            "expired"
        );
        assert!(!cache.remembers("$hash-a", "pw!", now), "another password");
        assert!(!cache.remembers("$hash-a", "p", now), "a prefix of it");
        assert!(!cache.remembers("$hash-b", "pw", now), "another (new) hash");
        // The key is the process's own: another process's HMAC never matches.
        let other = Verified::new(b"another key");
        let foreign = other.tag("$hash-c", "pw");
        cache
            .entries
            .lock()
            .unwrap()
            .insert("$hash-c".into(), (now, foreign));
        assert!(!cache.remembers("$hash-c", "pw", now));
    }

    #[test]
    fn the_cache_stays_bounded_and_drops_the_oldest() {
        let cache = Verified::new(b"test key");
        let start = Instant::now();
        for i in 0..VERIFIED_MAX {
            cache.remember(
                &format!("$h{i}"),
                "pw",
                start + Duration::from_millis(i as u64),
            );
        }
        let later = start + Duration::from_secs(1);
        cache.remember("$newest", "pw", later);
        assert_eq!(cache.entries.lock().unwrap().len(), VERIFIED_MAX);
        assert!(!cache.remembers("$h0", "pw", later), "the oldest went");
        assert!(cache.remembers("$h1", "pw", later));
        assert!(cache.remembers("$newest", "pw", later));
        // Once they have expired, they all make room at once.
        let expired = start + VERIFIED_TTL + Duration::from_secs(60);
        cache.remember("$fresh", "pw", expired);
        assert_eq!(cache.entries.lock().unwrap().len(), 1);
    }

    /// A wrong password is never remembered, and a right one is: the second check of the
    /// right one does not run argon2 (the hashing slots are all taken, and it still answers).
    /// Another user with a copy of the same stored hash is not served from the first one's
    /// entry.
    #[tokio::test]
    async fn past_the_queue_a_hash_is_refused_at_once() {
        let gate = Arc::new(Gate::new(1, 2));
        let held = gate.enter().await.unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.enter().await.map(drop) })
            })
            .collect();
        while gate.waiting.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.enter().await.err(), Some(Busy), "the queue is full");
        drop(held);
        for waiter in waiters {
            assert_eq!(
                waiter.await.unwrap(),
                Ok(()),
                "the queued ones get their turn"
            );
        }
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
        // An abandoned wait leaves the queue.
        let held = gate.enter().await.unwrap();
        let abandoned = tokio::time::timeout(Duration::from_millis(20), gate.enter()).await;
        assert!(abandoned.is_err());
        assert_eq!(gate.waiting.load(Ordering::Acquire), 0);
        drop(held);
    }

    #[tokio::test]
    async fn a_verified_password_skips_argon2_for_the_same_user_until_it_changes() {
        let hash = hash_password("remember me".into()).await.unwrap();
        let check = |user: &'static str, password: &'static str| {
            verify_login_password(user, password.into(), Some(hash.clone()))
        };
        assert!(!check("alice", "wrong").await.unwrap());
        assert!(!VERIFIED.remembers(&login_key("alice", &hash), "wrong", Instant::now()));
        assert!(check("alice", "remember me").await.unwrap());
        assert!(VERIFIED.remembers(&login_key("alice", &hash), "remember me", Instant::now()));
        assert!(
            !verify_login_password("alice", "remember me".into(), None)
                .await
                .unwrap()
        );
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let _taken = HASHING_SLOTS.slots.acquire_many(cpus as u32).await.unwrap();
        let remembered =
            tokio::time::timeout(Duration::from_secs(5), check("alice", "remember me")).await;
        assert_eq!(remembered, Ok(Ok(true)), "answered without a hashing slot");
        let waits = Duration::from_millis(300);
        let wrong = tokio::time::timeout(waits, check("alice", "wrong")).await;
        assert!(wrong.is_err(), "a wrong password waits for argon2");
        let other = tokio::time::timeout(waits, check("bob", "remember me")).await;
        assert!(other.is_err(), "another user waits for argon2");
    }

    /// Argon2 runs on threads of its own: with every thread of tokio's blocking pool held by a
    /// slow file call, a password is still hashed (it used to wait for that call).
    #[test]
    fn hashing_does_not_wait_for_the_blocking_pool() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (release, parked) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || {
                let _ = parked.recv();
            });
            let hashed =
                tokio::time::timeout(Duration::from_secs(30), hash_password("pool".into())).await;
            let _ = release.send(());
            busy.await.unwrap();
            let hash = hashed.expect("hashed while the blocking pool was busy");
            assert!(hash.unwrap().starts_with("$argon2id$"));
        });
    }

    #[tokio::test]
    async fn hashes_and_verifies() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            verify_password("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!verify_password("wrong".into(), Some(hash)).await.unwrap());
        assert!(!verify_password("anything".into(), None).await.unwrap());
        assert!(
            !verify_password("x".into(), Some("not a hash".into()))
                .await
                .unwrap()
        );
    }

    /// The pooled-memory hashing agrees with the argon2 crate's own PHC hashing and
    /// verification, also for other variants and parameters (hashes made elsewhere).
    #[tokio::test]
    async fn agrees_with_the_argon2_crate() {
        use argon2::{PasswordHasher, PasswordVerifier};

        let ours = hash_password("s3cret".into()).await.unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"s3cret", ours.as_str())
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"s3cret!", ours.as_str())
                .is_err()
        );
        assert_ne!(
            ours,
            hash_password("s3cret".into()).await.unwrap(),
            "salted"
        );

        let theirs = Argon2::default()
            .hash_password(b"s3cret")
            .unwrap()
            .to_string();
        assert!(
            verify_password("s3cret".into(), Some(theirs.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify_password("s3cret ".into(), Some(theirs))
                .await
                .unwrap()
        );

        let params = Params::new(8 * 1024, 3, 2, Some(24)).unwrap();
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x10, params)
            .hash_password(b"legacy")
            .unwrap()
            .to_string();
        assert!(
            argon2i.starts_with("$argon2i$v=16$m=8192,t=3,p=2$"),
            "{argon2i}"
        );
        // Several at once, so buffers of different sizes go back and forth through the pool.
        let checks = (0..6).map(|i| {
            let (hash, password) = if i % 2 == 0 {
                (argon2i.clone(), "legacy")
            } else {
                (ours.clone(), "s3cret")
            };
            async move { verify_password(password.into(), Some(hash)).await.unwrap() }
        });
        assert!(
            futures::future::join_all(checks)
                .await
                .into_iter()
                .all(|ok| ok)
        );
        assert!(
            !verify_password("legacy".into(), Some(argon2i.replace("m=8192", "m=4096")))
                .await
                .unwrap()
        );
    }

    #[test]
    fn api_keys() {
        let key = generate_api_key();
        assert_eq!(key.len(), 46);
        assert!(key.starts_with("wharf_"));
        assert!(key[6..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(key, generate_api_key());
        assert_eq!(api_key_hash(&key).len(), 64);
        assert_eq!(api_key_prefix(&key), key[..10]);
        assert_eq!(api_key_prefix("short-key-123456"), "shor");
    }
}
