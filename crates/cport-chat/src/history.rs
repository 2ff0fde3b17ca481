//! The message history in SQLite (rusqlite, bundled SQLite), on a thread
//! of its own: SQLite calls block, so no worker of the completion port
//! ever makes one. Workers hand messages to the thread through a bounded
//! channel and never wait on it (a full channel drops the write and
//! counts it); the thread writes them in batches, one transaction each,
//! and applies the size and age limits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rusqlite::{params, Connection};

use crate::messenger::Entry;

/// The database file's name under the data directory.
pub const DB_FILE: &str = "chat.sqlite3";

/// Limits on the stored history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Messages kept per room; older ones are deleted (0: no limit).
    pub max_per_room: u64,
    /// Messages older than this are deleted (`None`: kept forever).
    pub max_age: Option<Duration>,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            max_per_room: 10_000,
            max_age: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// Writes queued at most; past it, writes are dropped (and counted).
const QUEUE: usize = 64 * 1024;

/// The history store: a writer thread and its queue.
#[derive(Debug)]
pub struct History {
    tx: Option<Sender<Entry>>,
    thread: Option<JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
    path: PathBuf,
}

/// Milliseconds since the Unix epoch.
#[must_use]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl History {
    /// Opens (or creates) `dir/chat.sqlite3`, applies the limits, loads the
    /// last `per_room` messages of the `rooms` most recently active rooms
    /// (oldest first), and starts the writer thread. Runs on the calling
    /// thread, before any session exists.
    ///
    /// # Errors
    /// When the directory or the database cannot be opened.
    pub fn open(
        dir: &Path,
        limits: HistoryLimits,
        per_room: usize,
        rooms: usize,
    ) -> rusqlite::Result<(History, Vec<Entry>)> {
        std::fs::create_dir_all(dir).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let path = dir.join(DB_FILE);
        let db = Connection::open(&path)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS messages (
                 id INTEGER PRIMARY KEY,
                 room TEXT NOT NULL,
                 at_ms INTEGER NOT NULL,
                 nick TEXT NOT NULL,
                 text TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id);",
        )?;
        prune_age(&db, limits)?;
        let recent = load_recent(&db, per_room, rooms)?;
        let (tx, rx) = bounded(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name("cport-chat-history".into())
            .spawn(move || writer(db, rx, limits))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok((
            History {
                tx: Some(tx),
                thread: Some(thread),
                dropped,
                path,
            },
            recent,
        ))
    }

    /// Queues `e` to be stored. Never blocks: with the queue full the
    /// message is not stored (counted in [`dropped`](History::dropped)).
    pub fn store(&self, e: Entry) {
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_)) = tx.try_send(e) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Messages not stored because the writer fell behind.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for History {
    /// Writes what is queued, then stops the thread.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn load_recent(db: &Connection, per_room: usize, rooms: usize) -> rusqlite::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut by_activity = db.prepare("SELECT room FROM messages GROUP BY room ORDER BY MAX(id) DESC LIMIT ?1")?;
    let names: Vec<String> = by_activity
        .query_map([rooms as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut last = db.prepare(
        "SELECT room, at_ms, nick, text FROM
           (SELECT id, room, at_ms, nick, text FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT ?2)
         ORDER BY id",
    )?;
    // Least active first, so a bounded cache keeps the most active ones.
    for room in names.iter().rev() {
        let rows = last.query_map(params![room, per_room as i64], |r| {
            Ok(Entry {
                room: r.get(0)?,
                at_ms: r.get(1)?,
                nick: r.get(2)?,
                text: r.get(3)?,
            })
        })?;
        for e in rows {
            out.push(e?);
        }
    }
    Ok(out)
}

fn prune_age(db: &Connection, limits: HistoryLimits) -> rusqlite::Result<()> {
    if let Some(age) = limits.max_age {
        let cutoff = now_ms() - age.as_millis() as i64;
        db.execute("DELETE FROM messages WHERE at_ms < ?1", [cutoff])?;
    }
    Ok(())
}

/// The writer thread: batches of queued messages, one transaction each.
fn writer(mut db: Connection, rx: Receiver<Entry>, limits: HistoryLimits) {
    let mut last_age_prune = Instant::now();
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        if let Err(e) = write_batch(&mut db, &batch, limits) {
            tracing::warn!(error = %e, messages = batch.len(), "chat history: write failed");
        }
        batch.clear();
        if last_age_prune.elapsed() >= Duration::from_secs(60) {
            last_age_prune = Instant::now();
            if let Err(e) = prune_age(&db, limits) {
                tracing::warn!(error = %e, "chat history: pruning by age failed");
            }
        }
    }
}

fn write_batch(db: &mut Connection, batch: &[Entry], limits: HistoryLimits) -> rusqlite::Result<()> {
    let tx = db.transaction()?;
    {
        let mut insert = tx.prepare_cached("INSERT INTO messages (room, at_ms, nick, text) VALUES (?1, ?2, ?3, ?4)")?;
        for e in batch {
            insert.execute(params![e.room, e.at_ms, e.nick, e.text])?;
        }
        if limits.max_per_room > 0 {
            let mut rooms: Vec<&str> = batch.iter().map(|e| e.room.as_str()).collect();
            rooms.sort_unstable();
            rooms.dedup();
            let mut prune = tx.prepare_cached(
                "DELETE FROM messages WHERE room = ?1 AND id <=
                   (SELECT id FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )?;
            for room in rooms {
                prune.execute(params![room, limits.max_per_room as i64])?;
            }
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(room: &str, at_ms: i64, text: &str) -> Entry {
        Entry {
            room: room.into(),
            at_ms,
            nick: "ann".into(),
            text: text.into(),
        }
    }

    /// A scratch directory, removed when dropped (also on a panic).
    fn tmp(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("cport-chat-history-{tag}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn history_survives_reopening_within_its_limits() {
        let scratch = tmp("reopen");
        let dir = scratch.path().join("history");
        let limits = HistoryLimits {
            max_per_room: 5,
            max_age: Some(Duration::from_secs(3600)),
        };
        let now = now_ms();
        {
            let (h, recent) = History::open(&dir, limits, 50, 100).unwrap();
            assert!(recent.is_empty());
            for i in 0..8 {
                h.store(entry("a", now + i, &format!("a{i}")));
            }
            h.store(entry("b", now, "b0"));
            h.store(entry("old", now - 7_200_000, "too old"));
        }
        let (_h, recent) = History::open(&dir, limits, 3, 100).unwrap();
        let got: Vec<(&str, &str)> = recent.iter().map(|e| (e.room.as_str(), e.text.as_str())).collect();
        // The per-room cap kept a3..a7; the load shows the last 3; the old
        // message is gone; the most active room comes last.
        assert!(got.contains(&("b", "b0")));
        let a: Vec<&str> = got.iter().filter(|(r, _)| *r == "a").map(|(_, t)| *t).collect();
        assert_eq!(a, vec!["a5", "a6", "a7"]);
        assert!(!got.iter().any(|(r, _)| *r == "old"));
        let db = Connection::open(dir.join(DB_FILE)).unwrap();
        let n: i64 = db
            .query_row("SELECT COUNT(*) FROM messages WHERE room = 'a'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 5);
    }
}
