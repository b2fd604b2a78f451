//! The transparency log's benchmark over the server's own SQLite schema
//! (`hearth bench log`), beside the storage it measures.

use hearth_ledger::bench::{BenchError, LogBench};
use rusqlite::TransactionBehavior;

use super::SqliteStorage;
use crate::storage::StorageError;
use crate::storage::log::{SqliteNodes, log_error};

/// Runs [`hearth_ledger::bench::log`] over SQLite: `entries` synthetic
/// appends to a fresh in-memory database with the server's schema
/// (triggers included), in one transaction, then `samples` timed roots and
/// proofs. Compare with [`hearth_ledger::bench::log_in_memory`] for what
/// the database costs. For on-disk figures, run
/// [`SqliteStorage::bench_log`] on a database in a folder.
pub fn bench_sqlite_log(entries: u64, samples: u32) -> std::result::Result<LogBench, StorageError> {
    SqliteStorage::open_in_memory()?.bench_log(entries, samples)
}

impl SqliteStorage {
    /// [`hearth_ledger::bench::log`] over this database's log tables,
    /// inside a transaction that is rolled back at the end, so the
    /// synthetic entries never stay (the database's own entries, if any,
    /// are part of the timed tree).
    pub fn bench_log(
        &self,
        entries: u64,
        samples: u32,
    ) -> std::result::Result<LogBench, StorageError> {
        self.with_connection(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let figures = hearth_ledger::bench::log(SqliteNodes::new(&tx), entries, samples)
                .map_err(|e| match e {
                    BenchError::Log(e) => log_error(e),
                    other => StorageError::Corrupt(format!("transparency log: {other}")),
                })?;
            tx.rollback()?;
            Ok(figures)
        })
    }
}
