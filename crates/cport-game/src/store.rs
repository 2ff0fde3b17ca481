//! Player state in SQLite, on a thread of its own: the tick never waits
//! for the disk. Loads answer through a queue and a packet posted to the
//! engine's completion port; saves are fire-and-forget batches.

use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rusqlite::{params, Connection, OptionalExtension};

/// What is kept of a player between sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The name (the key).
    pub name: String,
    /// Position.
    pub x: i32,
    /// Position.
    pub y: i32,
    /// Units walked.
    pub distance: u64,
    /// Chat lines said.
    pub chats: u64,
    /// Logins.
    pub logins: u64,
}

/// Work for the database thread.
enum Job<T> {
    Load { name: String, then: T },
    Save(Vec<Saved>),
    Flush(Sender<()>),
}

/// The database thread's handle. `T` rides along with a load and comes
/// back with its answer (the engine puts the waiting session in it).
pub struct Store<T: Send + 'static> {
    tx: Option<Sender<Job<T>>>,
    thread: Option<JoinHandle<()>>,
    path: Option<PathBuf>,
}

/// Jobs that may wait for the database thread; past this, saves are
/// dropped (logged) and loads refused rather than queued without bound.
const QUEUE: usize = 4096;

/// The database file inside `--data DIR`.
pub const DB_FILE: &str = "game.sqlite3";

impl<T: Send + 'static> Store<T> {
    /// Opens (or creates) `DIR/game.sqlite3`, or an in-memory database
    /// when `dir` is `None`, and starts the thread. Every load's answer is
    /// handed to `loaded` on that thread.
    ///
    /// # Errors
    /// When the directory or database cannot be opened or set up.
    pub fn open(dir: Option<&Path>, loaded: impl Fn(T, Option<Saved>) + Send + 'static) -> io::Result<Store<T>> {
        let path = dir.map(|d| d.join(DB_FILE));
        if let Some(d) = dir {
            std::fs::create_dir_all(d)?;
        }
        let db = match &path {
            Some(p) => Connection::open(p),
            None => Connection::open_in_memory(),
        }
        .and_then(|db| {
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.pragma_update(None, "synchronous", "NORMAL")?;
            db.execute_batch(
                "CREATE TABLE IF NOT EXISTS players (
                    name TEXT PRIMARY KEY,
                    x INTEGER NOT NULL,
                    y INTEGER NOT NULL,
                    distance INTEGER NOT NULL,
                    chats INTEGER NOT NULL,
                    logins INTEGER NOT NULL,
                    saved_at INTEGER NOT NULL
                )",
            )?;
            Ok(db)
        })
        .map_err(io::Error::other)?;
        let (tx, rx) = bounded(QUEUE);
        let thread = std::thread::Builder::new()
            .name("cport-game-db".into())
            .spawn(move || run(db, rx, loaded))?;
        Ok(Store {
            tx: Some(tx),
            thread: Some(thread),
            path,
        })
    }

    /// The database file, if on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Asks for `name`'s saved state; the answer goes to the `loaded` callback.
    ///
    /// # Errors
    /// Hands `then` back when the queue is full or the thread has stopped.
    pub fn load(&self, name: String, then: T) -> Result<(), T> {
        let Some(tx) = &self.tx else { return Err(then) };
        tx.try_send(Job::Load { name, then }).map_err(|e| match e.into_inner() {
            Job::Load { then, .. } => then,
            _ => unreachable!("a load was sent"),
        })
    }

    /// Saves a batch in one transaction, later. Returns `false` (and logs)
    /// when the queue is full: the batch is dropped.
    pub fn save(&self, batch: Vec<Saved>) -> bool {
        if batch.is_empty() {
            return true;
        }
        let Some(tx) = &self.tx else { return false };
        match tx.try_send(Job::Save(batch)) {
            Ok(()) => true,
            Err(TrySendError::Full(Job::Save(b))) => {
                tracing::warn!(players = b.len(), "game database queue full: save dropped");
                false
            }
            Err(_) => false,
        }
    }

    /// Waits until everything queued so far is written.
    pub fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done_tx, done_rx) = bounded(1);
        if tx.send(Job::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv();
        }
    }

    /// Writes what is queued and stops the thread.
    pub fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl<T: Send + 'static> Drop for Store<T> {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run<T>(mut db: Connection, rx: Receiver<Job<T>>, loaded: impl Fn(T, Option<Saved>)) {
    for job in rx {
        match job {
            Job::Load { name, then } => {
                let got = load(&db, &name).unwrap_or_else(|e| {
                    tracing::error!(error = %e, name, "game database load failed");
                    None
                });
                loaded(then, got);
            }
            Job::Save(batch) => {
                if let Err(e) = save(&mut db, &batch) {
                    tracing::error!(error = %e, players = batch.len(), "game database save failed");
                }
            }
            Job::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

fn load(db: &Connection, name: &str) -> rusqlite::Result<Option<Saved>> {
    db.query_row(
        "SELECT x, y, distance, chats, logins FROM players WHERE name = ?1",
        params![name],
        |r| {
            Ok(Saved {
                name: name.to_owned(),
                x: r.get(0)?,
                y: r.get(1)?,
                distance: r.get::<_, i64>(2)? as u64,
                chats: r.get::<_, i64>(3)? as u64,
                logins: r.get::<_, i64>(4)? as u64,
            })
        },
    )
    .optional()
}

fn save(db: &mut Connection, batch: &[Saved]) -> rusqlite::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let tx = db.transaction()?;
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO players (name, x, y, distance, chats, logins, saved_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(name) DO UPDATE SET x = ?2, y = ?3, distance = ?4, chats = ?5, logins = ?6, saved_at = ?7",
        )?;
        for s in batch {
            st.execute(params![
                s.name,
                s.x,
                s.y,
                s.distance as i64,
                s.chats as i64,
                s.logins as i64,
                now
            ])?;
        }
    }
    tx.commit()
}
