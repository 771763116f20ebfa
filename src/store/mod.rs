//! The persistent store: events, cameras and their stream keys, each event's status and active
//! camera, the switch log, and restreaming destinations, in one SQLite file that survives
//! restarts.
//!
//! Calls are synchronous and short; the async caller runs them on a blocking thread. One
//! connection behind a `std` mutex serialises them. Every change that touches more than one row
//! is one `IMMEDIATE` transaction, so a crash or a refused change never leaves half of it behind.
//!
//! The schema is the ordered list [`MIGRATIONS`]; `PRAGMA user_version` counts the steps applied,
//! and each step is applied in its own transaction together with its version bump. A database
//! from a newer build (a higher version than this build knows) is refused rather than guessed at.
//!
//! Config seeding inserts what is missing and remembers what it has seeded, so a name or key
//! changed through the API is never overwritten, and an event or camera deleted through the API
//! is not brought back at the next start (a revoked key stays revoked).
//!
//! Stream keys are secrets: no error message carries one, and the `Debug` of [`CameraRow`] and
//! [`DestinationRow`] redacts them.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use chrono::{SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

#[cfg(test)]
mod tests;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, checked or migrated; start-up stops here.
    #[error("store {path}: {message}")]
    Open {
        /// The database file, so the operator knows which file to look at.
        path: String,
        /// What failed: the directory, the file's format, its permissions or a migration.
        message: String,
    },
    /// Any other SQLite failure, including a value the schema's checks refuse.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Names what was missing, e.g. `event e1` or `camera a in event e1`.
    #[error("{0} not found")]
    NotFound(String),
    /// Names what collided, e.g. `event e1` or `stream key` (never the key itself).
    #[error("{0} already exists")]
    Conflict(String),
}

/// One event as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRow {
    /// Stable identifier used in URLs and the API.
    pub id: String,
    /// Human-readable title shown to operators and viewers.
    pub name: String,
    /// `waiting`, `live`, `paused` or `ended`; restored after a restart.
    pub status: String,
    /// The camera on program, so a restart resumes on the same camera.
    pub active_camera: Option<String>,
    /// RFC 3339 UTC with milliseconds; orders the event list.
    pub created_at: String,
}

/// One camera as stored. `Debug` redacts the stream key.
#[derive(Clone, PartialEq)]
pub struct CameraRow {
    /// The event this camera belongs to.
    pub event: String,
    /// Identifier unique within the event.
    pub id: String,
    /// Human-readable label for operators.
    pub name: String,
    /// Secret the encoder publishes with; unique across every event.
    pub stream_key: String,
    /// Priority order within the event, 0-based, assigned in insertion order; deleting a camera
    /// closes the gap.
    pub position: i64,
}

impl fmt::Debug for CameraRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CameraRow")
            .field("event", &self.event)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("stream_key", &Redacted(&self.stream_key))
            .field("position", &self.position)
            .finish()
    }
}

/// Shows the first 4 characters of a secret, and none of a short one.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = if self.0.chars().count() >= 8 {
            self.0.chars().take(4).collect()
        } else {
            String::new()
        };
        write!(f, "\"{shown}…\"")
    }
}

/// One entry of an event's switch log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SwitchRow {
    /// When the switch took effect, RFC 3339 UTC with milliseconds.
    pub at: String,
    /// The camera on program before; `None` for the first switch.
    pub from: Option<String>,
    /// The camera on program after.
    pub to: String,
    /// `operator`, `auto` or `failover`.
    pub reason: String,
}

/// One restreaming destination as stored. `Debug` redacts the stream key.
#[derive(Clone, PartialEq)]
pub struct DestinationRow {
    /// Identifier, unique across events; used in API paths.
    pub id: i64,
    /// The event whose program or camera is pushed.
    pub event: String,
    /// Label unique within the event (e.g. `YouTube`); also the metrics label.
    pub name: String,
    /// `rtmp://` or `rtmps://` server URL with the application path, without the key.
    pub url: String,
    /// Secret stream name appended to the URL; never logged or shown whole.
    pub stream_key: String,
    /// `program`, or the id of one of the event's cameras.
    pub source: String,
    /// Whether it should be pushing; survives restarts.
    pub enabled: bool,
    /// RFC 3339 UTC with milliseconds.
    pub created_at: String,
}

impl fmt::Debug for DestinationRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationRow")
            .field("id", &self.id)
            .field("event", &self.event)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("stream_key", &Redacted(&self.stream_key))
            .field("source", &self.source)
            .field("enabled", &self.enabled)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// Schema steps, in order; step `i` brings the database to `user_version = i + 1`. Append only:
/// never edit a step that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: events, cameras, the switch log, and what config seeding has already done.
    "
    CREATE TABLE events (
        id            TEXT PRIMARY KEY NOT NULL,
        name          TEXT NOT NULL,
        status        TEXT NOT NULL DEFAULT 'waiting'
                      CHECK (status IN ('waiting', 'live', 'paused', 'ended')),
        active_camera TEXT,
        created_at    TEXT NOT NULL,
        FOREIGN KEY (id, active_camera) REFERENCES cameras (event, id)
    ) STRICT;

    CREATE TABLE cameras (
        event      TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        id         TEXT NOT NULL,
        name       TEXT NOT NULL,
        stream_key TEXT NOT NULL UNIQUE,
        position   INTEGER NOT NULL,
        PRIMARY KEY (event, id)
    ) STRICT;

    CREATE TABLE switches (
        seq         INTEGER PRIMARY KEY,
        event       TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        at          TEXT NOT NULL,
        from_camera TEXT,
        to_camera   TEXT NOT NULL,
        reason      TEXT NOT NULL CHECK (reason IN ('operator', 'auto', 'failover'))
    ) STRICT;
    CREATE INDEX switches_by_event ON switches (event, seq);

    CREATE TABLE seeded_events (
        id TEXT PRIMARY KEY NOT NULL
    ) STRICT;

    CREATE TABLE seeded_cameras (
        event TEXT NOT NULL,
        id    TEXT NOT NULL,
        PRIMARY KEY (event, id)
    ) STRICT;
    ",
    // 2: restreaming destinations. The source camera is not a foreign key: a destination
    // outlives the deletion of its camera (it reports the missing source instead).
    "
    CREATE TABLE destinations (
        id         INTEGER PRIMARY KEY,
        event      TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        url        TEXT NOT NULL,
        stream_key TEXT NOT NULL,
        source     TEXT NOT NULL,
        enabled    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
        created_at TEXT NOT NULL,
        UNIQUE (event, name)
    ) STRICT;
    ",
];

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite database behind events, cameras and the switch log.
pub struct Store {
    /// One connection, serialising every call; SQLite connections are not shareable across
    /// threads without it.
    conn: Mutex<Connection>,
    /// Where the database lives, for `Debug` and messages.
    path: PathBuf,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating parent directories and the file if needed) and migrates. Errors name the
    /// path.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let fail = |message: String| StoreError::Open {
            path: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("creating directory {}: {e}", dir.display())))?;
        }
        let conn = Connection::open(path).map_err(|e| fail(format!("opening: {e}")))?;
        let conn = prepare(conn, true).map_err(fail)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// A private database that lives as long as the store; for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let path = ":memory:";
        let fail = |message: String| StoreError::Open {
            path: path.to_string(),
            message,
        };
        let conn = Connection::open_in_memory().map_err(|e| fail(format!("opening: {e}")))?;
        let conn = prepare(conn, false).map_err(fail)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: PathBuf::from(path),
        })
    }

    /// Where the database lives (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of migration steps applied.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(user_version(&self.lock())?)
    }

    /// Seeds one config event and its cameras: inserts what is missing, leaves existing rows
    /// alone. What was seeded once is not seeded again, so a row the API deleted stays deleted.
    /// All or nothing: a camera whose key another camera already holds fails the whole call.
    pub fn seed_event(
        &self,
        id: &str,
        name: &str,
        cameras: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let first_time = tx.execute(
                "INSERT INTO seeded_events (id) VALUES (?1) ON CONFLICT (id) DO NOTHING",
                [id],
            )? == 1;
            if first_time {
                tx.execute(
                    "INSERT INTO events (id, name, created_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO NOTHING",
                    params![id, name, now()],
                )?;
            }
            if !event_exists(tx, id)? {
                // Deleted through the API after an earlier seed.
                return Ok(());
            }
            for (camera, camera_name, key) in cameras {
                let first_time = tx.execute(
                    "INSERT INTO seeded_cameras (event, id) VALUES (?1, ?2)
                     ON CONFLICT (event, id) DO NOTHING",
                    params![id, camera],
                )? == 1;
                if !first_time || camera_exists(tx, id, camera)? {
                    continue;
                }
                if key_holder(tx, key)?.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "stream key of camera {camera} in event {id}"
                    )));
                }
                insert_camera(tx, id, camera, camera_name, key)?;
            }
            Ok(())
        })
    }

    /// Creates an event in `waiting` with no active camera. Conflict if the id exists.
    pub fn create_event(&self, id: &str, name: &str) -> Result<EventRow, StoreError> {
        self.write(|tx| {
            if event_exists(tx, id)? {
                return Err(StoreError::Conflict(format!("event {id}")));
            }
            tx.execute(
                "INSERT INTO events (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![id, name, now()],
            )?;
            load_event(tx, id)
        })
    }

    /// Every event, oldest first (ties by id).
    pub fn events(&self) -> Result<Vec<EventRow>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT id, name, status, active_camera, created_at FROM events
             ORDER BY created_at, id",
        )?;
        let rows = statement.query_map([], event_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn event(&self, id: &str) -> Result<EventRow, StoreError> {
        load_event(&self.lock(), id)
    }

    /// Deletes an event with its cameras and switch log.
    pub fn delete_event(&self, id: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            if tx.execute("DELETE FROM events WHERE id = ?1", [id])? == 0 {
                return Err(StoreError::NotFound(format!("event {id}")));
            }
            Ok(())
        })
    }

    /// `status` must be `waiting`, `live`, `paused` or `ended`; anything else fails the schema's
    /// check as [`StoreError::Sqlite`].
    pub fn set_status(&self, event: &str, status: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE events SET status = ?2 WHERE id = ?1",
                params![event, status],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("event {event}")));
            }
            Ok(())
        })
    }

    /// Records the camera on program; it must be one of the event's cameras.
    pub fn set_active(&self, event: &str, camera: Option<&str>) -> Result<(), StoreError> {
        self.write(|tx| {
            require_event(tx, event)?;
            if let Some(camera) = camera {
                require_camera(tx, event, camera)?;
            }
            tx.execute(
                "UPDATE events SET active_camera = ?2 WHERE id = ?1",
                params![event, camera],
            )?;
            Ok(())
        })
    }

    /// Appends a camera at the end of the event's priority order. NotFound if there is no such
    /// event; Conflict on a duplicate id within the event or a stream key used anywhere.
    pub fn add_camera(
        &self,
        event: &str,
        id: &str,
        name: &str,
        stream_key: &str,
    ) -> Result<CameraRow, StoreError> {
        self.write(|tx| {
            require_event(tx, event)?;
            if camera_exists(tx, event, id)? {
                return Err(StoreError::Conflict(format!(
                    "camera {id} in event {event}"
                )));
            }
            if key_holder(tx, stream_key)?.is_some() {
                return Err(StoreError::Conflict("stream key".into()));
            }
            insert_camera(tx, event, id, name, stream_key)
        })
    }

    /// The event's cameras in priority order. NotFound if there is no such event.
    pub fn cameras(&self, event: &str) -> Result<Vec<CameraRow>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        require_event(&tx, event)?;
        let mut statement = tx.prepare(
            "SELECT event, id, name, stream_key, position FROM cameras
             WHERE event = ?1 ORDER BY position, id",
        )?;
        let rows = statement.query_map([event], camera_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every camera, grouped by event in [`Store::events`] order, each in priority order.
    pub fn all_cameras(&self) -> Result<Vec<CameraRow>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(
            "SELECT c.event, c.id, c.name, c.stream_key, c.position
             FROM cameras c JOIN events e ON e.id = c.event
             ORDER BY e.created_at, e.id, c.position, c.id",
        )?;
        let rows = statement.query_map([], camera_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes a camera, closes the gap in the priority order, and clears the event's active
    /// camera if it was this one.
    pub fn delete_camera(&self, event: &str, id: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            require_event(tx, event)?;
            let position = require_camera(tx, event, id)?;
            tx.execute(
                "UPDATE events SET active_camera = NULL WHERE id = ?1 AND active_camera = ?2",
                params![event, id],
            )?;
            tx.execute(
                "DELETE FROM cameras WHERE event = ?1 AND id = ?2",
                params![event, id],
            )?;
            tx.execute(
                "UPDATE cameras SET position = position - 1 WHERE event = ?1 AND position > ?2",
                params![event, position],
            )?;
            Ok(())
        })
    }

    /// Replaces a camera's stream key. Conflict if another camera holds the new key.
    pub fn set_key(&self, event: &str, id: &str, stream_key: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            require_event(tx, event)?;
            require_camera(tx, event, id)?;
            if let Some((holder_event, holder_id)) = key_holder(tx, stream_key)? {
                if holder_event != event || holder_id != id {
                    return Err(StoreError::Conflict("stream key".into()));
                }
            }
            tx.execute(
                "UPDATE cameras SET stream_key = ?3 WHERE event = ?1 AND id = ?2",
                params![event, id, stream_key],
            )?;
            Ok(())
        })
    }

    /// Appends to the event's switch log. The cameras named need not still exist: the log is
    /// history. `reason` must be `operator`, `auto` or `failover`.
    pub fn log_switch(&self, event: &str, row: &SwitchRow) -> Result<(), StoreError> {
        self.write(|tx| {
            require_event(tx, event)?;
            tx.execute(
                "INSERT INTO switches (event, at, from_camera, to_camera, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![event, row.at, row.from, row.to, row.reason],
            )?;
            Ok(())
        })
    }

    /// The event's switch log, oldest first (in the order logged). NotFound if there is no such
    /// event.
    pub fn switches(&self, event: &str) -> Result<Vec<SwitchRow>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        require_event(&tx, event)?;
        let mut statement = tx.prepare(
            "SELECT at, from_camera, to_camera, reason FROM switches
             WHERE event = ?1 ORDER BY seq",
        )?;
        let rows = statement.query_map([event], |row| {
            Ok(SwitchRow {
                at: row.get(0)?,
                from: row.get(1)?,
                to: row.get(2)?,
                reason: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds a destination, enabled. NotFound if there is no such event; Conflict if the event
    /// already has a destination of that name.
    pub fn add_destination(
        &self,
        event: &str,
        name: &str,
        url: &str,
        stream_key: &str,
        source: &str,
    ) -> Result<DestinationRow, StoreError> {
        self.write(|tx| {
            require_event(tx, event)?;
            let taken = tx
                .query_row(
                    "SELECT 1 FROM destinations WHERE event = ?1 AND name = ?2",
                    params![event, name],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if taken {
                return Err(StoreError::Conflict(format!(
                    "destination {name:?} in event {event}"
                )));
            }
            tx.execute(
                "INSERT INTO destinations (event, name, url, stream_key, source, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![event, name, url, stream_key, source, now()],
            )?;
            load_destination(tx, event, tx.last_insert_rowid())
        })
    }

    /// The event's destinations in creation order. NotFound if there is no such event.
    pub fn destinations(&self, event: &str) -> Result<Vec<DestinationRow>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        require_event(&tx, event)?;
        let mut statement = tx.prepare(&format!(
            "SELECT {DESTINATION_COLUMNS} FROM destinations WHERE event = ?1 ORDER BY id"
        ))?;
        let rows = statement.query_map([event], destination_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every destination of every event, in creation order; what start-up resumes.
    pub fn all_destinations(&self) -> Result<Vec<DestinationRow>, StoreError> {
        let conn = self.lock();
        let mut statement = conn.prepare(&format!(
            "SELECT {DESTINATION_COLUMNS} FROM destinations ORDER BY id"
        ))?;
        let rows = statement.query_map([], destination_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Enables or disables a destination; returns it as stored. NotFound if the event has no
    /// such destination.
    pub fn set_destination_enabled(
        &self,
        event: &str,
        id: i64,
        enabled: bool,
    ) -> Result<DestinationRow, StoreError> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE destinations SET enabled = ?3 WHERE event = ?1 AND id = ?2",
                params![event, id, enabled],
            )?;
            if changed == 0 {
                return Err(destination_not_found(event, id));
            }
            load_destination(tx, event, id)
        })
    }

    /// Deletes a destination. NotFound if the event has no such destination.
    pub fn delete_destination(&self, event: &str, id: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            let deleted = tx.execute(
                "DELETE FROM destinations WHERE event = ?1 AND id = ?2",
                params![event, id],
            )?;
            if deleted == 0 {
                return Err(destination_not_found(event, id));
            }
            Ok(())
        })
    }

    /// The connection. A panic while it was held cannot have left a transaction open (dropping
    /// a `Transaction` rolls it back), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` in one write transaction, committed only if it succeeds.
    fn write<T>(
        &self,
        change: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = change(&tx)?;
        tx.commit()?;
        Ok(value)
    }
}

/// Settings, checks and migrations for a fresh connection. The message says what failed; the
/// caller adds the path.
fn prepare(mut conn: Connection, on_disk: bool) -> Result<Connection, String> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| format!("setting the busy timeout: {e}"))?;
    // The first read: a file that is not a database, or a damaged one, fails here.
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|e| format!("checking integrity: {e}"))?;
    if check != "ok" {
        return Err(format!("integrity check failed: {check}"));
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| format!("enabling WAL: {e}"))?;
    if on_disk && !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "journal mode is {mode}, not wal (is the directory writable?)"
        ));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| format!("setting synchronous: {e}"))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(|e| format!("enabling foreign keys: {e}"))?;
    if conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(|e| format!("checking access: {e}"))?
    {
        return Err("opened read-only; is the file writable?".into());
    }
    migrate(&mut conn)?;
    Ok(conn)
}

/// Applies the missing [`MIGRATIONS`], each with its version bump in one transaction. The
/// version is read inside each transaction, so two processes opening at once cannot both apply
/// a step.
fn migrate(conn: &mut Connection) -> Result<(), String> {
    let known = MIGRATIONS.len() as i64;
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| format!("starting a migration: {e}"))?;
        let version = user_version(&tx).map_err(|e| format!("reading the schema version: {e}"))?;
        if version == known {
            return Ok(());
        }
        if !(0..known).contains(&version) {
            return Err(format!(
                "schema version {version} is not one this build knows (0 to {known}); \
                 was it written by a newer tally?"
            ));
        }
        let next = version + 1;
        tx.execute_batch(MIGRATIONS[version as usize])
            .and_then(|()| tx.pragma_update(None, "user_version", next))
            .and_then(|()| tx.commit())
            .map_err(|e| format!("migrating to schema version {next}: {e}"))?;
    }
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Now, RFC 3339 UTC with milliseconds: fixed width, so text order is time order.
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn event_row(row: &Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: row.get(0)?,
        name: row.get(1)?,
        status: row.get(2)?,
        active_camera: row.get(3)?,
        created_at: row.get(4)?,
    })
}

fn camera_row(row: &Row<'_>) -> rusqlite::Result<CameraRow> {
    Ok(CameraRow {
        event: row.get(0)?,
        id: row.get(1)?,
        name: row.get(2)?,
        stream_key: row.get(3)?,
        position: row.get(4)?,
    })
}

fn load_event(conn: &Connection, id: &str) -> Result<EventRow, StoreError> {
    conn.query_row(
        "SELECT id, name, status, active_camera, created_at FROM events WHERE id = ?1",
        [id],
        event_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("event {id}")))
}

fn event_exists(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row("SELECT 1 FROM events WHERE id = ?1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn require_event(conn: &Connection, id: &str) -> Result<(), StoreError> {
    if event_exists(conn, id)? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("event {id}")))
    }
}

fn camera_position(conn: &Connection, event: &str, id: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT position FROM cameras WHERE event = ?1 AND id = ?2",
            params![event, id],
            |row| row.get(0),
        )
        .optional()?)
}

fn camera_exists(conn: &Connection, event: &str, id: &str) -> Result<bool, StoreError> {
    Ok(camera_position(conn, event, id)?.is_some())
}

/// The camera's position; NotFound if the event has no such camera.
fn require_camera(conn: &Connection, event: &str, id: &str) -> Result<i64, StoreError> {
    camera_position(conn, event, id)?
        .ok_or_else(|| StoreError::NotFound(format!("camera {id} in event {event}")))
}

/// The (event, camera) holding a stream key, if any.
fn key_holder(conn: &Connection, key: &str) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT event, id FROM cameras WHERE stream_key = ?1",
            [key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?)
}

/// Inserts a camera after the event's last one. The caller has checked the id and key.
fn insert_camera(
    conn: &Connection,
    event: &str,
    id: &str,
    name: &str,
    stream_key: &str,
) -> Result<CameraRow, StoreError> {
    let position: i64 = conn.query_row(
        "SELECT COALESCE(MAX(position) + 1, 0) FROM cameras WHERE event = ?1",
        [event],
        |row| row.get(0),
    )?;
    conn.execute(
        "INSERT INTO cameras (event, id, name, stream_key, position) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![event, id, name, stream_key, position],
    )?;
    Ok(CameraRow {
        event: event.into(),
        id: id.into(),
        name: name.into(),
        stream_key: stream_key.into(),
        position,
    })
}

const DESTINATION_COLUMNS: &str = "id, event, name, url, stream_key, source, enabled, created_at";

fn destination_row(row: &Row<'_>) -> rusqlite::Result<DestinationRow> {
    Ok(DestinationRow {
        id: row.get(0)?,
        event: row.get(1)?,
        name: row.get(2)?,
        url: row.get(3)?,
        stream_key: row.get(4)?,
        source: row.get(5)?,
        enabled: row.get(6)?,
        created_at: row.get(7)?,
    })
}

fn destination_not_found(event: &str, id: i64) -> StoreError {
    StoreError::NotFound(format!("destination {id} in event {event}"))
}

fn load_destination(conn: &Connection, event: &str, id: i64) -> Result<DestinationRow, StoreError> {
    conn.query_row(
        &format!("SELECT {DESTINATION_COLUMNS} FROM destinations WHERE event = ?1 AND id = ?2"),
        params![event, id],
        destination_row,
    )
    .optional()?
    .ok_or_else(|| destination_not_found(event, id))
}
