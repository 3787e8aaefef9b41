//! Builder-style setters for [`WalOptions`](super::WalOptions).
//!
//! # Defaults
//! `segment_bytes_max` 16 MiB, `durability` [`Durability::Sync`](super::Durability::Sync),
//! `preallocate` true, `read_only` false.

use std::time::Duration;

use super::{Durability, WalOptions};

impl WalOptions {
    /// Roll to a new segment when the current one would pass this size (default 16 MiB).
    #[must_use]
    pub fn segment_bytes_max(mut self, bytes: u64) -> Self {
        self.segment_bytes_max = bytes;
        self
    }
    /// What an acknowledged append survives (default `Sync`).
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
    /// `Durability::Interval(every)`.
    #[must_use]
    pub fn sync_interval(self, every: Duration) -> Self {
        self.durability(Durability::Interval(every))
    }
    /// Preallocate each segment to `segment_bytes_max` (default true).
    #[must_use]
    pub fn preallocate(mut self, on: bool) -> Self {
        self.preallocate = on;
        self
    }
    /// How long a writer's open waits for the lock another writer holds before it fails with
    /// `Locked` (default zero: at once).
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }
    /// Open without the lock, never writing (default false).
    #[must_use]
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }
}
