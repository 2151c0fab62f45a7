//! The in-memory backend, for tests: the same engine as SQLite (one writer, group
//! commit, index, watch hub) with values in a map instead of a file.
//!
//! Must never be used where data has to outlive the process.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::index::Index;
use crate::mvcc::{Engine, Log, LogWriter, Record};
use crate::{Result, Revision};

/// An in-memory store; see [`open`].
pub type MemoryStore = Engine<MemoryLog>;

type Values = Arc<RwLock<HashMap<Revision, Vec<u8>>>>;

/// An empty in-memory store.
pub fn open() -> Result<MemoryStore> {
    let values = Values::default();
    Engine::start(
        "memory",
        Index::default(),
        MemoryLog { values: values.clone() },
        MemoryWriter { values },
    )
}

pub struct MemoryLog {
    values: Values,
}

pub struct MemoryWriter {
    values: Values,
}

fn read(values: &Values, revs: &[Revision]) -> Vec<Option<Vec<u8>>> {
    let values = values.read().unwrap_or_else(|e| e.into_inner());
    revs.iter().map(|r| values.get(r).cloned()).collect()
}

impl Log for MemoryLog {
    type Writer = MemoryWriter;

    fn read(&self, revs: &[Revision]) -> Result<Vec<Option<Vec<u8>>>> {
        Ok(read(&self.values, revs))
    }
}

impl LogWriter for MemoryWriter {
    fn commit(&mut self, records: &[Record<'_>], discard: &[Revision]) -> Result<()> {
        let mut values = self.values.write().unwrap_or_else(|e| e.into_inner());
        for r in records {
            if let Some(value) = r.value {
                values.insert(r.rev, value.to_vec());
            }
        }
        for rev in discard {
            values.remove(rev);
        }
        Ok(())
    }

    fn set_compacted(&mut self, _rev: Revision) -> Result<()> {
        Ok(())
    }

    fn read(&mut self, revs: &[Revision]) -> Result<Vec<Option<Vec<u8>>>> {
        Ok(read(&self.values, revs))
    }
}
