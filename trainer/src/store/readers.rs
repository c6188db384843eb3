//! Read connections beside the writer. Status pages, scrapes and the plan read through these,
//! so they never wait on the writer's mutex (and ingest never waits on them): WAL gives each
//! reader the last committed state while a write is under way. At most `max` reads run at
//! once; more wait their turn instead of opening connections without bound.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use super::{Store, StoreError};

/// A bounded pool of read-only connections on the writer's file.
#[derive(Debug)]
pub struct Readers {
    writer: Arc<Mutex<Store>>,
    path: Option<PathBuf>,
    pool: Mutex<Pool>,
    returned: Condvar,
    max: usize,
}

#[derive(Debug, Default)]
struct Pool {
    idle: Vec<Store>,
    open: usize,
}

impl Readers {
    /// Readers for `writer`'s file, at most `max` at once. An in-memory store has no file to
    /// share: its reads go through the writer.
    pub fn new(writer: Arc<Mutex<Store>>, max: usize) -> Self {
        let path = writer.lock().ok().and_then(|w| w.path.clone());
        Self { writer, path, pool: Mutex::new(Pool::default()), returned: Condvar::new(), max: max.max(1) }
    }

    /// Runs `work` on a read connection (blocking: call it from a blocking task).
    pub fn read<T>(&self, work: impl FnOnce(&Store) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let Some(reader) = self.take()? else {
            let writer = self.writer.lock().map_err(|_| StoreError::Poisoned)?;
            return work(&writer);
        };
        let result = work(&reader);
        let mut pool = self.pool.lock().map_err(|_| StoreError::Poisoned)?;
        pool.idle.push(reader);
        self.returned.notify_one();
        result
    }

    /// An idle reader, a new one while fewer than `max` are open, else the next one returned;
    /// `None` when the store has no file.
    fn take(&self) -> Result<Option<Store>, StoreError> {
        let mut pool = self.pool.lock().map_err(|_| StoreError::Poisoned)?;
        loop {
            if let Some(reader) = pool.idle.pop() {
                return Ok(Some(reader));
            }
            let Some(path) = &self.path else { return Ok(None) };
            if pool.open < self.max {
                pool.open += 1;
                drop(pool);
                let opened = Store::open_reader(path);
                if opened.is_err() {
                    self.pool.lock().map_err(|_| StoreError::Poisoned)?.open -= 1;
                }
                return opened.map(Some);
            }
            pool = self.returned.wait(pool).map_err(|_| StoreError::Poisoned)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_commits_while_the_writer_is_held() {
        let dir = std::env::temp_dir().join(format!("prewarm-readers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("events.sqlite");
        let _ = std::fs::remove_file(&path);
        let writer = Arc::new(Mutex::new(Store::open(&path).expect("store")));
        let readers = Readers::new(writer.clone(), 2);
        assert_eq!(readers.read(|s| s.count_events()).expect("read"), 0);
        let held = writer.lock().expect("writer");
        // The writer's mutex is held (as during a long ingest): a read still answers.
        assert_eq!(readers.read(|s| s.count_events()).expect("read"), 0);
        drop(held);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_in_memory_store_reads_through_the_writer() {
        let writer = Arc::new(Mutex::new(Store::in_memory().expect("store")));
        let readers = Readers::new(writer, 2);
        assert_eq!(readers.read(|s| s.count_events()).expect("read"), 0);
    }
}
