//! Password hashing: argon2id with the OWASP parameters (m = 19456 KiB, t = 2, p = 1), stored
//! as PHC strings, computed by a bounded pool of dedicated threads.
//!
//! Each hash needs 19 MiB of working memory. Run on Tokio's blocking pool, every concurrent
//! login got a fresh 19 MiB buffer and the allocator kept what it got (gigabytes under a flood),
//! and hashes queued without bound. Here a fixed number of threads (one per core by default)
//! each own one buffer, reused for every hash, and at most `queue` requests wait for them: when
//! the queue is full a caller is refused at once ([`HashError::Busy`], answered 503 with
//! `Retry-After`) instead of waiting behind hundreds of others. Memory is bounded by
//! `threads × 19 MiB`, and a login's latency by the queue's length.
//!
//! Every password check of the service goes through the same pool: login, signup, activation,
//! and each current-password check (password change, email change, factor enrolment).
//!
//! An unknown email is verified against a dummy hash made at start-up, so that it costs the
//! same time as a wrong password and the two cannot be told apart by timing.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;
const OUTPUT_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Failed(String),
    /// Every hashing thread is busy and the queue is full: retry shortly.
    #[error("password hashing is saturated; retry in {retry_after_secs} s")]
    Busy { retry_after_secs: u64 },
}

fn params() -> Result<Params, HashError> {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(OUTPUT_LEN))
        .map_err(|e| HashError::Failed(e.to_string()))
}

fn argon2() -> Result<Argon2<'static>, HashError> {
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params()?))
}

/// Hashes an already NFKC-normalised password into a PHC string (allocating its own memory).
pub fn hash(normalised: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()?
        .hash_password(normalised.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

/// Whether `normalised` matches the PHC string `phc`. A malformed stored hash never matches.
pub fn verify(normalised: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let Ok(hasher) = argon2() else { return false };
    hasher.verify_password(normalised.as_bytes(), &parsed).is_ok()
}

/// A hash of a random password nobody knows, with the same parameters as real ones.
pub fn dummy_hash() -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    hash(salt.as_str())
}

/// One thread's reusable working memory and the hasher for the product's parameters.
struct Worker {
    blocks: Vec<Block>,
    argon2: Argon2<'static>,
}

impl Worker {
    fn new() -> Result<Self, HashError> {
        let blocks = vec![Block::default(); usize::try_from(MEMORY_KIB).unwrap_or(0)];
        Ok(Self { blocks, argon2: argon2()? })
    }

    fn hash(&mut self, normalised: &str) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_raw =
            salt.as_salt().decode_b64(&mut salt_bytes).map_err(|e| HashError::Failed(e.to_string()))?;
        let mut out = [0u8; OUTPUT_LEN];
        self.argon2
            .hash_password_into_with_memory(normalised.as_bytes(), salt_raw, &mut out, &mut self.blocks)
            .map_err(|e| HashError::Failed(e.to_string()))?;
        let output =
            argon2::password_hash::Output::new(&out).map_err(|e| HashError::Failed(e.to_string()))?;
        Ok(format!("$argon2id$v=19$m={MEMORY_KIB},t={ITERATIONS},p={PARALLELISM}${}${output}", salt.as_str()))
    }

    fn verify(&mut self, normalised: &str, phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else { return false };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
        // Hashes made with other parameters (an older policy) are checked the allocating way.
        let ours = Params::try_from(&parsed)
            .is_ok_and(|p| p.m_cost() == MEMORY_KIB && p.t_cost() == ITERATIONS && p.p_cost() == PARALLELISM)
            && parsed.algorithm.as_str() == "argon2id"
            && expected.len() == OUTPUT_LEN;
        if !ours {
            return verify(normalised, phc);
        }
        let mut salt_bytes = [0u8; 64];
        let Ok(salt_raw) = salt.decode_b64(&mut salt_bytes) else { return false };
        let mut out = [0u8; OUTPUT_LEN];
        if self
            .argon2
            .hash_password_into_with_memory(normalised.as_bytes(), salt_raw, &mut out, &mut self.blocks)
            .is_err()
        {
            return false;
        }
        // `Output`'s equality is constant-time.
        argon2::password_hash::Output::new(&out).is_ok_and(|o| o == expected)
    }
}

/// A place in the hashing pool, taken ahead of the hash (see [`Hasher::reserve`]).
pub struct Reservation(OwnedSemaphorePermit);

enum Job {
    Hash { normalised: String, reply: oneshot::Sender<Result<String, HashError>> },
    Verify { normalised: String, phc: String, reply: oneshot::Sender<bool> },
}

/// The bounded hashing pool. Cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::SyncSender<(Job, OwnedSemaphorePermit)>,
    permits: Arc<Semaphore>,
    capacity: usize,
    threads: usize,
}

impl Hasher {
    /// A pool of `threads` hashing threads (at least one) and room for `queue` waiting requests.
    pub fn new(threads: usize, queue: usize) -> Result<Self, HashError> {
        let threads = threads.max(1);
        let capacity = threads + queue;
        let (jobs, receiver) = mpsc::sync_channel::<(Job, OwnedSemaphorePermit)>(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads {
            let receiver = Arc::clone(&receiver);
            let mut worker = Worker::new()?;
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    // The lock is held only while taking a job, never while hashing.
                    let next = receiver.lock().map(|r| r.recv());
                    let Ok(Ok((job, permit))) = next else { return };
                    // The permit goes back before the answer, so a caller that got its answer
                    // finds the pool's room already freed.
                    match job {
                        Job::Hash { normalised, reply } => {
                            let hashed = worker.hash(&normalised);
                            drop(permit);
                            let _ = reply.send(hashed);
                        }
                        Job::Verify { normalised, phc, reply } => {
                            let matches = worker.verify(&normalised, &phc);
                            drop(permit);
                            let _ = reply.send(matches);
                        }
                    }
                })
                .map_err(|e| HashError::Failed(e.to_string()))?;
        }
        Ok(Self { jobs, permits: Arc::new(Semaphore::new(capacity)), capacity, threads })
    }

    /// One thread per core, and a queue of eight requests per thread (at ~10 ms a hash, a
    /// waiting request is answered within about 100 ms).
    pub fn sized_to_machine() -> Result<Self, HashError> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self::new(cores, cores * 8)
    }

    /// How many requests are hashing or waiting now.
    pub fn in_flight(&self) -> usize {
        self.capacity.saturating_sub(self.permits.available_permits())
    }

    /// Threads plus queue places: how many checks may be in flight before one is refused.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    fn admit(&self) -> Result<OwnedSemaphorePermit, HashError> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| HashError::Busy { retry_after_secs: 1 })
    }

    /// Takes a place in the pool before any other work of a request that will hash, so that a
    /// flood is refused at once, before it costs a database transaction.
    pub fn reserve(&self) -> Result<Reservation, HashError> {
        self.admit().map(Reservation)
    }

    /// [`Self::verify`] in a place taken earlier by [`Self::reserve`].
    pub async fn verify_reserved(
        &self,
        place: Reservation,
        raw: &str,
        phc: String,
    ) -> Result<bool, HashError> {
        let normalised = domain::password::normalize_password(raw);
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Verify { normalised, phc, reply }, place.0)?;
        answer.await.map_err(|_| HashError::Failed("the hashing thread stopped".into()))
    }

    fn submit(&self, job: Job, permit: OwnedSemaphorePermit) -> Result<(), HashError> {
        // The channel holds as many jobs as there are permits, so this never blocks.
        self.jobs.try_send((job, permit)).map_err(|_| HashError::Busy { retry_after_secs: 1 })
    }

    /// Normalises (NFKC) and hashes `raw`.
    pub async fn hash(&self, raw: &str) -> Result<String, HashError> {
        let permit = self.admit()?;
        let normalised = domain::password::normalize_password(raw);
        let (reply, answer) = oneshot::channel();
        self.submit(Job::Hash { normalised, reply }, permit)?;
        answer.await.map_err(|_| HashError::Failed("the hashing thread stopped".into()))?
    }

    /// Normalises (NFKC) `raw` and checks it against `phc`. `Err(Busy)` when the pool is full.
    pub async fn verify(&self, raw: &str, phc: String) -> Result<bool, HashError> {
        let place = self.reserve()?;
        self.verify_reserved(place, raw, phc).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_the_owasp_parameters() {
        let phc = hash("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery staple", &phc));
        assert!(!verify("correct horse battery stapl", &phc));
        assert!(!verify("anything", "not a phc string"));
        assert!(!verify("anything", &dummy_hash().unwrap()));
    }

    #[tokio::test]
    async fn the_pool_hashes_and_verifies_like_the_reference_with_reused_memory() {
        let pool = Hasher::new(1, 2).unwrap();
        let phc = pool.hash("correct horse battery staple").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery staple", &phc), "the reference accepts the pool's hash");
        assert!(pool.verify("correct horse battery staple", phc.clone()).await.unwrap());
        assert!(!pool.verify("correct horse battery stapl", phc).await.unwrap());
        let reference = hash("another passphrase here").unwrap();
        assert!(pool.verify("another passphrase here", reference.clone()).await.unwrap());
        assert!(!pool.verify("x", "not a phc string".into()).await.unwrap());
        // A hash made under other parameters still verifies (the allocating path).
        let older = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8192, 1, 1, None).unwrap())
            .hash_password(b"old policy", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(pool.verify("old policy", older).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_pool_refuses_at_once_instead_of_queueing() {
        let pool = Hasher::new(1, 1).unwrap();
        let phc = hash("x").unwrap();
        let (a, b, c) = tokio::join!(
            pool.verify("x", phc.clone()),
            pool.verify("x", phc.clone()),
            pool.verify("x", phc.clone())
        );
        let busy = [&a, &b, &c].iter().filter(|r| matches!(r, Err(HashError::Busy { .. }))).count();
        assert_eq!(busy, 1, "one thread and one queue slot admit two of three: {a:?} {b:?} {c:?}");
        assert_eq!(pool.in_flight(), 0);
    }
}
