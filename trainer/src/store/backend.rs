//! What the trainer asks of whatever holds its events: the embedded SQLite [`Store`] by
//! default, ClickHouse past one machine (feature `clickhouse`). Every backend passes the same
//! conformance suite (`trainer/tests/store_conformance.rs`).
//!
//! Writes are idempotent per batch: a batch id seen before is acknowledged without storing its
//! events again, so a client (or a queue) that retries after a lost answer counts once.

use std::collections::BTreeMap;

use super::{Store, StoreError};
use crate::ingest::event::Event;

/// An event store: durable, idempotent inserts, the aggregates training and status read, each
/// user's events streamed in order, and retention.
pub trait EventStore: std::fmt::Debug {
    /// Stores `events` durably before returning; with a `batch` id seen before, stores nothing
    /// and returns 0 (a retry), else the number stored.
    fn insert_batch(&mut self, batch: Option<u64>, events: &[Event]) -> Result<usize, StoreError>;
    /// Events stored.
    fn event_count(&self) -> Result<u64, StoreError>;
    /// Users per region among the events before `before`.
    fn users_per_region_before(&self, before: u64) -> Result<BTreeMap<String, u64>, StoreError>;
    /// The oldest event time before `before`.
    fn first_event_time_before(&self, before: u64) -> Result<Option<u64>, StoreError>;
    /// The newest event time.
    fn latest_event_time(&self) -> Result<Option<u64>, StoreError>;
    /// Events per minute over all regions, `(minute start, requests)`, in time order.
    fn requests_per_minute(&self) -> Result<Vec<(u64, u64)>, StoreError>;
    /// Streams the events before `before` to `each`, ordered by user then time, without
    /// holding them all.
    fn each_event_by_user_before(&self, before: u64, each: &mut dyn FnMut(Event)) -> Result<(), StoreError>;
    /// Deletes the events older than `before` (a backend may keep up to a day more: ClickHouse
    /// drops whole days); returns how many went, if the backend counts them.
    fn prune_events(&mut self, before: u64) -> Result<Option<u64>, StoreError>;
}

impl EventStore for Store {
    fn insert_batch(&mut self, batch: Option<u64>, events: &[Event]) -> Result<usize, StoreError> {
        self.insert_events_once(batch, events)
    }

    fn event_count(&self) -> Result<u64, StoreError> {
        self.count_events()
    }

    fn users_per_region_before(&self, before: u64) -> Result<BTreeMap<String, u64>, StoreError> {
        Store::users_per_region_before(self, before)
    }

    fn first_event_time_before(&self, before: u64) -> Result<Option<u64>, StoreError> {
        Store::first_event_time_before(self, before)
    }

    fn latest_event_time(&self) -> Result<Option<u64>, StoreError> {
        Store::latest_event_time(self)
    }

    fn requests_per_minute(&self) -> Result<Vec<(u64, u64)>, StoreError> {
        Store::requests_per_minute(self)
    }

    fn each_event_by_user_before(&self, before: u64, each: &mut dyn FnMut(Event)) -> Result<(), StoreError> {
        self.each_event_by_user(None, Some(before), each)
    }

    fn prune_events(&mut self, before: u64) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.prune(before)?.events as u64))
    }
}
