//! Read-mostly data kept in process for at most `LOYALTY_CACHE_TTL_MS` (1 s by default): API
//! keys, programs, strategies and webhook subscriptions. Without it every request paid a query
//! for each of them.
//!
//! Why a time bound and not invalidation messages: it holds on any number of instances and on
//! both backends with nothing to go wrong (no listener connection to lose, no message to miss).
//! A change made on another instance (a revoked key, a new webhook endpoint) is seen within the
//! bound everywhere; a change made on this instance is seen at once, because the code that makes
//! it invalidates the entry after its commit. A load that started before an invalidation does
//! not store what it read (a generation counter), so an invalidation is never undone by a slow
//! reader. An entry's age is counted from before the read that loaded it, so the bound holds
//! however long the read took.
//!
//! API keys are trusted for at most [`KEY_TTL_MAX`] (1 s) whatever `LOYALTY_CACHE_TTL_MS` says,
//! so a key revoked anywhere is refused everywhere within a second. A presented key that named
//! no active key is remembered as unknown for as long, by the digest of the whole key, so
//! repeating a bad key costs no query while a newly minted key (whose secret no one can have
//! presented before) works at once everywhere. Programs and strategies are kept only when
//! found: one that does not exist is looked up every time, so a new one works at once.
//!
//! Each map is bounded (`capacity` entries; when full, expired entries are dropped, then all),
//! and every read takes a shared lock only.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use persistence::catalog::{self, AwardStrategyRow, ExpiryStrategyRow, Program};
use persistence::orgs::KeyIdentity;
use persistence::webhooks::{self, EndpointRow};
use persistence::{ConnectionTrait, PersistenceError};
use sha2::{Digest, Sha256};

/// A map whose entries are trusted for `ttl` after they were loaded.
pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: RwLock<HashMap<K, (Instant, V)>>,
    generation: AtomicU64,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// The value of `key` if it was loaded less than `ttl` ago.
    pub fn get(&self, key: &K) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// The value of `key`, loaded with `load` when it is missing or stale. `None` from `load`
    /// (nothing there) is passed on and not kept.
    pub async fn get_or_load<E, F>(&self, key: K, load: F) -> Result<Option<V>, E>
    where
        F: AsyncFnOnce() -> Result<Option<V>, E>,
    {
        if let Some(v) = self.get(&key) {
            return Ok(Some(v));
        }
        // Taken before the read: the entry is as old as the oldest state it may show.
        let (generation, started) = (self.generation.load(Ordering::Acquire), Instant::now());
        let loaded = load().await?;
        if let Some(v) = &loaded {
            self.store_at(key, v.clone(), generation, started);
        }
        Ok(loaded)
    }

    /// The generation to pass to [`Self::store_at`] for a load that starts now.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    #[cfg(test)]
    fn store(&self, key: K, value: V, generation: u64) {
        self.store_at(key, value, generation, Instant::now());
    }

    /// Keeps `value`, read from a state no older than `loaded_at`, unless an invalidation came
    /// since `generation` was taken.
    fn store_at(&self, key: K, value: V, generation: u64, loaded_at: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        // Checked under the write lock: an invalidation since the load began wins.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (loaded_at, value));
    }

    /// Forgets the entries whose value matches (after a change that cannot be named by key,
    /// like a revoked API key, whose entry is keyed by the digest of a secret this instance may
    /// never have seen), and makes loads already under way not store what they read.
    pub fn invalidate_where(&self, matches: impl Fn(&V) -> bool) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, (_, v)| !matches(v));
    }

    /// Forgets `key` (after a change to it is committed), and makes loads already under way
    /// not store what they read.
    pub fn invalidate(&self, key: &K) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(key);
    }
}

/// The longest an API key, found or not, is trusted in memory.
pub const KEY_TTL_MAX: Duration = Duration::from_secs(1);

/// The SHA-256 of a presented API key: what the key caches are keyed by.
pub type KeyDigest = [u8; 32];

pub fn key_digest(presented: &str) -> KeyDigest {
    Sha256::digest(presented.as_bytes()).into()
}

/// What this instance knows of a presented key without asking the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachedKey {
    Active(KeyIdentity),
    /// It named no active key a moment ago.
    Unknown,
    /// Not in memory: the database must be asked.
    Missing,
}

/// The caches of one instance.
pub struct Caches {
    /// SHA-256 of a presented API key → its organisation and id.
    api_keys: TtlCache<KeyDigest, KeyIdentity>,
    /// SHA-256 of presented keys that named no active key.
    unknown_keys: TtlCache<KeyDigest, ()>,
    /// SHA-256 of keys that authenticated on this instance in the last hour: still looked up
    /// for a client address past its failed-authentication limit (see `auth`).
    known_keys: TtlCache<KeyDigest, ()>,
    /// When this instance last recorded each key's `last_used_at`.
    key_uses: std::sync::Mutex<HashMap<i64, Instant>>,
    /// (organisation, program) → the program and its currencies.
    programs: TtlCache<(i64, i64), Arc<Program>>,
    award_strategies: TtlCache<(i64, i64), Arc<AwardStrategyRow>>,
    expiry_strategies: TtlCache<(i64, i64), Arc<ExpiryStrategyRow>>,
    /// organisation → its webhook endpoints (an empty list is kept too: most have none).
    endpoints: TtlCache<i64, Arc<Vec<EndpointRow>>>,
}

impl Caches {
    pub fn new(ttl: Duration) -> Self {
        Self {
            api_keys: TtlCache::new(ttl.min(KEY_TTL_MAX), 10_000),
            unknown_keys: TtlCache::new(ttl.min(KEY_TTL_MAX), 10_000),
            known_keys: TtlCache::new(Duration::from_secs(3600), 100_000),
            key_uses: Default::default(),
            programs: TtlCache::new(ttl, 10_000),
            award_strategies: TtlCache::new(ttl, 10_000),
            expiry_strategies: TtlCache::new(ttl, 10_000),
            endpoints: TtlCache::new(ttl, 10_000),
        }
    }

    /// What memory says of a presented key.
    pub fn cached_key(&self, digest: &KeyDigest) -> CachedKey {
        if let Some(who) = self.api_keys.get(digest) {
            CachedKey::Active(who)
        } else if self.unknown_keys.get(digest).is_some() {
            CachedKey::Unknown
        } else {
            CachedKey::Missing
        }
    }

    /// Whether the key authenticated on this instance within the last hour.
    pub fn is_known_key(&self, digest: &KeyDigest) -> bool {
        self.known_keys.get(digest).is_some()
    }

    /// The organisation of a presented API key, read from the database (see
    /// `persistence::orgs::authenticate`) and remembered either way.
    pub async fn load_key<C: ConnectionTrait>(
        &self,
        conn: &C,
        presented: &str,
        digest: KeyDigest,
    ) -> Result<Option<KeyIdentity>, PersistenceError> {
        let generations = (self.api_keys.generation(), self.unknown_keys.generation());
        let started = Instant::now();
        let found = persistence::orgs::authenticate(conn, presented).await?;
        match found {
            Some(who) => {
                self.api_keys.store_at(digest, who, generations.0, started);
                self.known_keys
                    .store_at(digest, (), self.known_keys.generation(), started);
            }
            None => self
                .unknown_keys
                .store_at(digest, (), generations.1, started),
        }
        Ok(found)
    }

    /// After key `key_id` was revoked on this instance (and committed): it is refused here at
    /// once (other instances refuse it within [`KEY_TTL_MAX`]). Other keys stay cached.
    pub fn key_revoked(&self, key_id: i64) {
        self.api_keys.invalidate_where(|who| who.key_id == key_id);
    }

    /// Whether this instance should record that `key_id` was used now: the first time, then at
    /// most once a minute, so `last_used_at` never costs a write per request.
    pub fn key_use_due(&self, key_id: i64) -> bool {
        const EVERY: Duration = Duration::from_secs(60);
        let mut uses = self.key_uses.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match uses.get(&key_id) {
            Some(at) if now.duration_since(*at) < EVERY => false,
            _ => {
                if uses.len() >= 100_000 {
                    uses.retain(|_, at| now.duration_since(*at) < EVERY);
                }
                uses.insert(key_id, now);
                true
            }
        }
    }

    pub async fn program<C: ConnectionTrait>(
        &self,
        conn: &C,
        org_id: i64,
        program_id: i64,
    ) -> Result<Option<Arc<Program>>, PersistenceError> {
        self.programs
            .get_or_load((org_id, program_id), async || {
                Ok(catalog::get_program(conn, org_id, program_id)
                    .await?
                    .map(Arc::new))
            })
            .await
    }

    pub async fn award_strategy<C: ConnectionTrait>(
        &self,
        conn: &C,
        org_id: i64,
        id: i64,
    ) -> Result<Option<Arc<AwardStrategyRow>>, PersistenceError> {
        self.award_strategies
            .get_or_load((org_id, id), async || {
                Ok(catalog::get_award_strategy(conn, org_id, id)
                    .await?
                    .map(Arc::new))
            })
            .await
    }

    pub async fn expiry_strategy<C: ConnectionTrait>(
        &self,
        conn: &C,
        org_id: i64,
        id: i64,
    ) -> Result<Option<Arc<ExpiryStrategyRow>>, PersistenceError> {
        self.expiry_strategies
            .get_or_load((org_id, id), async || {
                Ok(catalog::get_expiry_strategy(conn, org_id, id)
                    .await?
                    .map(Arc::new))
            })
            .await
    }

    /// The organisation's webhook endpoints, to write outbox rows for.
    pub async fn endpoints<C: ConnectionTrait>(
        &self,
        conn: &C,
        org_id: i64,
    ) -> Result<Arc<Vec<EndpointRow>>, PersistenceError> {
        Ok(self
            .endpoints
            .get_or_load(org_id, async || {
                let endpoints = webhooks::subscribed_endpoints(conn, org_id).await?;
                Ok::<_, PersistenceError>(Some(Arc::new(endpoints)))
            })
            .await?
            .unwrap_or_default())
    }

    /// After an endpoint of `org_id` was created or changed (and committed).
    pub fn endpoints_changed(&self, org_id: i64) {
        self.endpoints.invalidate(&org_id);
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
