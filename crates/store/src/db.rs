//! Opening a library folder: its database (pragmas, migrations, schema
//! version guard) and the lock that keeps two imports from racing.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::{M, Migrations};

use crate::error::{Result, StoreError};

/// The database file inside a library folder.
pub const DATABASE_FILE: &str = "library.sqlite3";
const IMPORT_LOCK_FILE: &str = "import.lock";
/// Held while a connection is set up and the schema brought up to date:
/// two connections that both read an old `user_version` would otherwise
/// both run the same migration (SQLite's deferred transaction reads the
/// version before it writes), and the second fails with "table already
/// exists". The app's first start opens a fresh library from several
/// commands at once.
const MIGRATION_LOCK_FILE: &str = "migration.lock";

/// How long a statement waits for another connection's write lock before
/// giving up (an import in another process commits in small batches).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Every schema change, oldest first. Never edit a released migration; add
/// a new one. The schema version (`user_version`) is the count applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/01-library.sql"),
    include_str!("../migrations/02-personalization.sql"),
    include_str!("../migrations/03-photo-tagging.sql"),
    include_str!("../migrations/04-runs-of-every-kind.sql"),
    include_str!("../migrations/05-run-lineage.sql"),
    include_str!("../migrations/06-federation.sql"),
    include_str!("../migrations/07-photo-taggers.sql"),
    include_str!("../migrations/08-ask.sql"),
    include_str!("../migrations/09-ask-runs.sql"),
    include_str!("../migrations/10-note-embeddings.sql"),
];

/// Migrations run with foreign keys off (a table rebuild must not cascade
/// deletes into the tables that refer to it), so each one ends with
/// `PRAGMA foreign_key_check`, failing (and rolling back) on a dangling
/// reference.
fn migrations() -> Migrations<'static> {
    Migrations::new(
        MIGRATIONS
            .iter()
            .map(|sql| M::up(sql).foreign_key_check())
            .collect(),
    )
}

/// The newest schema version this build knows.
fn known_schema_version() -> usize {
    MIGRATIONS.len()
}

/// A person's library: one folder, one database, thumbnails beside it.
#[derive(Debug)]
pub struct Library {
    root: PathBuf,
    pub(crate) conn: Connection,
}

impl Library {
    /// Where the library lives unless the person says otherwise: the
    /// platform data directory (`~/.local/share/hearth` on Linux).
    pub fn default_location() -> Option<PathBuf> {
        dirs::data_dir().map(|dir| dir.join("hearth"))
    }

    /// Opens the library in `root`, creating the folder and database if
    /// needed and bringing the schema up to date in one transaction.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let given = root.as_ref();
        std::fs::create_dir_all(given).map_err(|e| StoreError::io(given, e))?;
        // Canonical, so the importer can recognise the library folder and
        // never import its own thumbnails.
        let root = std::fs::canonicalize(given).map_err(|e| StoreError::io(given, e))?;
        let db_path = root.join(DATABASE_FILE);
        // One opener at a time sets the journal mode and migrates: on a
        // fresh file, switching to WAL and the first migration both need
        // the exclusive lock, and SQLite answers a second connection that
        // already holds a read lock with "database is locked" at once
        // instead of waiting (its busy handler would deadlock there). The
        // lock is held only for this setup and released as `guard` drops
        // (or the process dies).
        let lock_path = root.join(MIGRATION_LOCK_FILE);
        let guard = lock_file(&lock_path)?;
        guard.lock().map_err(|e| StoreError::io(&lock_path, e))?;

        let mut conn = Connection::open(&db_path)?;
        configure(&conn)?;
        let found: usize = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if found > known_schema_version() {
            return Err(StoreError::NewerSchema {
                path: db_path,
                found,
                known: known_schema_version(),
            });
        }
        if found < known_schema_version() {
            // Foreign-key enforcement cannot change inside a transaction,
            // and the migrations run in one: switch it off around them.
            conn.pragma_update(None, "foreign_keys", false)?;
            let migrated = migrations().to_latest(&mut conn);
            conn.pragma_update(None, "foreign_keys", true)?;
            migrated?;
        }
        drop(guard);
        Ok(Library { root, conn })
    }

    /// The library folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Runs SQLite's full integrity check.
    pub fn integrity_check(&self) -> Result<()> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let problems: Vec<String> = stmt
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        match problems.as_slice() {
            [ok] if ok == "ok" => Ok(()),
            _ => Err(StoreError::Corrupt(problems.join("; "))),
        }
    }

    /// Takes the library's import lock, or says another import holds it.
    /// The lock is released when the returned file is dropped (or the
    /// process dies, however it dies).
    pub(crate) fn lock_for_import(&self) -> Result<File> {
        let path = self.root.join(IMPORT_LOCK_FILE);
        let file = lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(TryLockError::WouldBlock) => Err(StoreError::Busy(self.root.clone())),
            Err(TryLockError::Error(e)) => Err(StoreError::io(path, e)),
        }
    }
}

/// The lock file at `path`, created if missing (its content is never
/// used; only its advisory lock is).
fn lock_file(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))
}

/// Opens a library's database at `path` read-only, for readers outside
/// this crate (hearth-ask's executor): the same busy timeout as
/// [`Library::open`]'s connection, and `query_only`, so not even a
/// statement that slipped past the checks could write. The database must
/// exist (opened once by [`Library::open`], which migrates it); the
/// journal mode is the database's own (WAL, set by the writer).
pub fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// Per-connection settings of the library's own (writing) connection, the
/// one place they are set. These must run outside any transaction.
fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers (the app, `hearth library list`) see committed items
    // while an import writes; NORMAL sync is durable against process kills.
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        migrations().validate().expect("migrations validate");
        let mut conn = Connection::open_in_memory().expect("memory db");
        migrations().to_latest(&mut conn).expect("migrate");
        let version: usize = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user_version");
        assert_eq!(version, known_schema_version());
    }

    #[test]
    fn upgrades_a_version_1_library_keeping_its_items() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let mut conn = Connection::open(&path).expect("open");
        Migrations::new(vec![M::up(MIGRATIONS[0])])
            .to_latest(&mut conn)
            .expect("v1");
        conn.execute(
            "INSERT INTO items (kind, sha256, path, size_bytes, media_type, text_chars) \
             VALUES ('text', ?1, '/notes/a.txt', 5, 'text/plain', 5)",
            [&"a".repeat(64)],
        )
        .expect("insert");
        drop(conn);
        let library = Library::open(dir.path()).expect("upgrade");
        let version: usize = library
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("version");
        assert_eq!(version, MIGRATIONS.len());
        let items: i64 = library
            .conn
            .query_row("SELECT count(*) FROM items", [], |row| row.get(0))
            .expect("count");
        assert_eq!(items, 1);
    }

    #[test]
    fn rebuilding_runs_keeps_runs_their_items_and_adapters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DATABASE_FILE);
        let mut conn = Connection::open(&path).expect("open");
        conn.pragma_update(None, "foreign_keys", true).expect("fk");
        Migrations::new(MIGRATIONS[..3].iter().map(|sql| M::up(sql)).collect())
            .to_latest(&mut conn)
            .expect("v3");
        conn.execute_batch(&format!(
            "INSERT INTO runs (kind, status, base_model, base_model_sha256, config, item_count, token_count, device) \
             VALUES ('text', 'completed', 'stories260k', '{sha}', '{{}}', 1, 10, 'cpu'); \
             INSERT INTO run_items VALUES (1, '{sha}'); \
             INSERT INTO adapters (name, run_id, source, sha256, rank, alpha, targets, path) \
             VALUES ('a', 1, 'trained', '{sha}', 8, 16.0, 'q_proj', 'adapters/a');",
            sha = "b".repeat(64)
        ))
        .expect("v3 rows");
        drop(conn);
        let library = Library::open(dir.path()).expect("upgrade");
        let count = |sql: &str| -> i64 {
            library
                .conn
                .query_row(sql, [], |row| row.get(0))
                .expect("count")
        };
        assert_eq!(count("SELECT count(*) FROM runs"), 1);
        assert_eq!(count("SELECT count(*) FROM run_items WHERE run_id = 1"), 1);
        assert_eq!(count("SELECT count(*) FROM adapters WHERE run_id = 1"), 1);
        // The new kinds are accepted, and references still cascade.
        library
            .conn
            .execute_batch(
                "INSERT INTO runs (kind, status, base_model, base_model_sha256, config, item_count, token_count, device) \
                 VALUES ('photos', 'running', 'efficientnet-lite0', 'x', '{}', 0, 0, 'cpu'); \
                 DELETE FROM runs WHERE id = 1;",
            )
            .expect("photos run");
        assert_eq!(count("SELECT count(*) FROM run_items"), 0);
        assert_eq!(
            count("SELECT count(*) FROM adapters WHERE run_id IS NULL"),
            1
        );
    }

    #[test]
    fn opens_creates_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("nested/library");
        let library = Library::open(&root).expect("open");
        assert!(root.join(DATABASE_FILE).is_file());
        library.integrity_check().expect("integrity");
        let fk: bool = library
            .conn
            .pragma_query_value(None, "foreign_keys", |row| row.get(0))
            .expect("pragma");
        assert!(fk);
        let mode: String = library
            .conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .expect("pragma");
        assert_eq!(mode, "wal");
        drop(library);
        Library::open(&root).expect("reopen");
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Library::open(dir.path()).expect("open"));
        let conn = Connection::open(dir.path().join(DATABASE_FILE)).expect("raw open");
        conn.pragma_update(None, "user_version", 99).expect("bump");
        drop(conn);
        let err = Library::open(dir.path()).expect_err("newer schema must be refused");
        assert!(
            matches!(err, StoreError::NewerSchema { found: 99, .. }),
            "{err}"
        );
    }

    #[test]
    fn one_import_lock_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let library = Library::open(dir.path()).expect("open");
        let held = library.lock_for_import().expect("first lock");
        assert!(matches!(
            library.lock_for_import(),
            Err(StoreError::Busy(_))
        ));
        drop(held);
        library.lock_for_import().expect("lock again after release");
    }
}

#[cfg(test)]
mod concurrent_open_tests {
    use super::*;

    /// The app's first start opens a fresh library from several commands
    /// at once; each must find it migrated, none may fail with "table
    /// already exists".
    #[test]
    fn a_fresh_library_opened_from_many_threads_at_once_migrates_once() {
        for _ in 0..40 {
            let dir = tempfile::tempdir().expect("temp dir");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
            let openers: Vec<_> = (0..16)
                .map(|_| {
                    let root = dir.path().to_path_buf();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        Library::open(&root).map(|_| ())
                    })
                })
                .collect();
            for opener in openers {
                opener.join().expect("no panic").expect("opens");
            }
        }
    }
}
