//! One SQLite file whose writes commit in groups: the broker's store and the
//! user's voucher book both keep every paid request on disk before they go
//! on, and both serve many concurrent requests.
//!
//! A step queues up; whoever finds the connection free becomes the leader
//! and runs every queued step one after the other in one transaction, each
//! in its own savepoint (a failed step undoes only its own writes), commits,
//! and answers them all. So a step is durable before its caller goes on, at
//! one commit per group instead of one per step, with no thread hop per
//! statement (the cost that dominated through an async driver) and none at
//! all for a step that finds the connection free.
//!
//! Durability: WAL with synchronous=NORMAL survives a killed process (the OS
//! has every committed page); only a power cut can lose the newest groups.
//! Checkpoints (copying the WAL into the file, with its fsync) run on a
//! thread of their own, so no step ever waits for one.

use std::{
    collections::VecDeque,
    path::Path,
    sync::{
        Arc, Mutex, MutexGuard, TryLockError, Weak,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
    },
    time::Duration,
};

pub use rusqlite;
use rusqlite::Connection;
use tokio::sync::oneshot;

/// Most steps committed together.
const MAX_GROUP: usize = 256;
/// How often the checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Bytes per database page, for new files.
const PAGE_SIZE: u32 = 1024;
/// How long a step waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The writer is gone or its group did not commit: the step did not happen.
#[derive(Debug, thiserror::Error)]
#[error("the database is not available: {0}")]
pub struct Stopped(pub String);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database has schema version {found}, newer than this program's {known}")]
    Newer { found: usize, known: usize },
    #[error("could not start the database thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The database and the steps waiting for it.
pub struct Writer {
    shared: Arc<Shared>,
    /// Dropped with the writer: tells the checkpointer to stop.
    _checkpoints: Option<Sender<()>>,
}

/// What the callers and the checkpointer share.
struct Shared {
    db: Mutex<Connection>,
    queue: Mutex<VecDeque<Box<dyn Job>>>,
    /// The last group held more than one step: steps are arriving together.
    crowded: AtomicBool,
}

impl Writer {
    /// Opens (creating if needed) the database at `path` (`:memory:` for a
    /// private one) and brings its schema to `migrations.len()`: entry i is
    /// the SQL of version i + 1 (`PRAGMA user_version`). Blocking: call it
    /// from `spawn_blocking` in async code.
    pub fn open(path: &Path, migrations: &[&str]) -> Result<Self, OpenError> {
        let memory = path.as_os_str() == ":memory:";
        let mut db = if memory {
            Connection::open_in_memory()?
        } else {
            Connection::open(path)?
        };
        db.busy_timeout(BUSY_TIMEOUT)?;
        // Small pages: a commit writes each page it dirtied whole into the
        // WAL, and a paid request dirties a few index leaves (new files only).
        db.pragma_update(None, "page_size", PAGE_SIZE)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&mut db, migrations)?;
        // Checkpoints are the checkpointer's (a private database has none).
        db.pragma_update(None, "wal_autocheckpoint", 0)?;
        let shared = Arc::new(Shared {
            db: Mutex::new(db),
            queue: Mutex::default(),
            crowded: AtomicBool::new(false),
        });
        let checkpoints = if memory {
            None
        } else {
            let checkpointer = Connection::open(path)?;
            checkpointer.busy_timeout(BUSY_TIMEOUT)?;
            let (stop, stopped) = mpsc::channel();
            let writer = Arc::downgrade(&shared);
            std::thread::Builder::new()
                .name("zg-sqlite-checkpoint".into())
                .spawn(move || checkpoint(checkpointer, writer, stopped))?;
            Some(stop)
        };
        Ok(Self {
            shared,
            _checkpoints: checkpoints,
        })
    }

    /// Runs `work` in the next group's transaction and answers once that
    /// group committed. An error from `work` undoes its writes only. The
    /// caller that finds the connection free runs the group on its own
    /// thread (a short block: a group is a few hundred microseconds).
    pub async fn call<T, E>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<Stopped> + Send + 'static,
    {
        self.submit(work).await
    }

    /// As [`Writer::call`], but the step is queued before this returns, so
    /// steps submitted one after the other (under a caller's lock, say)
    /// commit in that order.
    pub fn submit<T, E>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    ) -> impl Future<Output = Result<T, E>> + Send + '_
    where
        T: Send + 'static,
        E: From<Stopped> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let shared = &self.shared;
        shared.queued().push_back(Box::new(Task {
            work: Some(work),
            out: None,
            reply,
        }));
        async move {
            if shared.worth_waiting() {
                tokio::task::yield_now().await;
            }
            shared.lead();
            answer
                .await
                .map_err(|_| Stopped("the step was dropped unanswered".into()))?
        }
    }
}

impl Shared {
    /// Whether a step should let the other ready tasks queue theirs before
    /// it leads, for one commit for more of them. On a one-thread runtime
    /// that costs a reschedule; on a multi-thread one it also wakes an idle
    /// worker (about 25 µs of CPU per step at one connection), so there only
    /// while steps have lately been arriving together.
    fn worth_waiting(&self) -> bool {
        self.crowded.load(Ordering::Relaxed)
            || tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
    }

    /// Runs groups while steps are queued and nobody else is running them.
    /// A step queued while another caller leads is seen by that leader (or
    /// while the checkpointer holds the connection, by the checkpointer): it
    /// looks at the queue again after letting go of the connection.
    fn lead(&self) {
        loop {
            let db = match self.db.try_lock() {
                Ok(db) => db,
                // A step that panicked leaves the transaction to the next BEGIN's failure.
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            loop {
                let mut group: Vec<Box<dyn Job>> = {
                    let mut queue = self.queued();
                    let n = queue.len().min(MAX_GROUP);
                    queue.drain(..n).collect()
                };
                if group.is_empty() {
                    break;
                }
                self.crowded.store(group.len() > 1, Ordering::Relaxed);
                commit_group(&db, &mut group);
            }
            drop(db);
            if self.queued().is_empty() {
                return;
            }
        }
    }

    fn queued(&self) -> MutexGuard<'_, VecDeque<Box<dyn Job>>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Brings the schema to the newest version, one transaction per migration.
fn migrate(db: &mut Connection, migrations: &[&str]) -> Result<(), OpenError> {
    let version: usize = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > migrations.len() {
        return Err(OpenError::Newer {
            found: version,
            known: migrations.len(),
        });
    }
    for (i, sql) in migrations.iter().enumerate().skip(version) {
        let tx = db.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// A step waiting for the writer thread.
trait Job: Send {
    /// Runs inside the group's transaction; false if it failed.
    fn run(&mut self, db: &Connection) -> bool;
    /// Answers the caller once the group committed, or with why it did not.
    fn finish(self: Box<Self>, committed: Result<(), &str>);
}

struct Task<T, E, F> {
    work: Option<F>,
    out: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<T, E, F> Job for Task<T, E, F>
where
    T: Send,
    E: From<Stopped> + Send,
    F: FnOnce(&Connection) -> Result<T, E> + Send,
{
    fn run(&mut self, db: &Connection) -> bool {
        let out = match self.work.take() {
            Some(work) => work(db),
            None => Err(Stopped("a step ran twice".into()).into()),
        };
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), &str>) {
        let out = match (committed, self.out) {
            (Ok(()), Some(out)) => out,
            (Ok(()), None) => Err(Stopped("a step never ran".into()).into()),
            (Err(why), _) => Err(Stopped(format!("the commit failed: {why}")).into()),
        };
        // A caller that went away (its client disconnected) needs no answer.
        let _ = self.reply.send(out);
    }
}

/// Runs one group in one transaction and answers its steps.
fn commit_group(db: &Connection, group: &mut Vec<Box<dyn Job>>) {
    let committed = run_group(db, group).map_err(|e| e.to_string());
    if committed.is_err() && !db.is_autocommit() {
        let _ = db.execute_batch("ROLLBACK");
    }
    let committed = committed.as_ref().map(|_| ()).map_err(String::as_str);
    for job in group.drain(..) {
        job.finish(committed);
    }
}

fn run_group(db: &Connection, group: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    db.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    for job in group.iter_mut() {
        db.prepare_cached("SAVEPOINT step")?.execute([])?;
        if !job.run(db) {
            db.prepare_cached("ROLLBACK TO step")?.execute([])?;
        }
        db.prepare_cached("RELEASE step")?.execute([])?;
    }
    db.prepare_cached("COMMIT")?.execute([])?;
    Ok(())
}

/// Copies the WAL into the database file now and then, until told to stop
/// (the last checkpoint happens when the writer's connection closes).
///
/// Each round copies what the log holds without holding up the writer,
/// then holds the writer for the few frames it added meanwhile and copies
/// those: a log wholly copied starts over at the next commit. (Under steady
/// load a passive checkpoint alone never catches up, and the log grows
/// without end.) Steps that queued while the writer was held run here.
fn checkpoint(db: Connection, writer: Weak<Shared>, stop: Receiver<()>) {
    let copy = |db: &Connection| {
        if let Err(e) = db.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            eprintln!("zg-sqlite: checkpoint failed (will retry): {e}");
        }
    };
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        copy(&db);
        let Some(writer) = writer.upgrade() else {
            return;
        };
        {
            let _held = writer.db.lock().unwrap_or_else(|p| p.into_inner());
            copy(&db);
        }
        writer.lead();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OptionalExtension;

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error(transparent)]
        Sqlite(#[from] rusqlite::Error),
        #[error(transparent)]
        Stopped(#[from] Stopped),
        #[error("refused")]
        Refused,
    }

    const SCHEMA: &[&str] = &["CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL);"];

    fn put(
        w: &Writer,
        k: &'static str,
        v: i64,
        fail: bool,
    ) -> impl Future<Output = Result<(), TestError>> {
        w.call(move |db| {
            db.execute("INSERT INTO t VALUES (?1, ?2)", (k, v))?;
            if fail {
                Err(TestError::Refused)
            } else {
                Ok(())
            }
        })
    }

    async fn get(w: &Writer, k: &'static str) -> Option<i64> {
        w.call(move |db| {
            db.query_row("SELECT v FROM t WHERE k = ?1", [k], |r| r.get(0))
                .optional()
                .map_err(TestError::from)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_failed_step_undoes_only_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::open(&dir.path().join("db"), SCHEMA).unwrap();
        let (a, b, c) = tokio::join!(
            put(&w, "a", 1, false),
            put(&w, "b", 2, true),
            put(&w, "c", 3, false)
        );
        assert!(a.is_ok() && c.is_ok());
        assert!(matches!(b, Err(TestError::Refused)));
        assert_eq!(get(&w, "a").await, Some(1));
        assert_eq!(get(&w, "b").await, None);
        assert_eq!(get(&w, "c").await, Some(3));
        // A constraint error is a failed step too.
        assert!(matches!(
            put(&w, "a", 9, false).await,
            Err(TestError::Sqlite(_))
        ));
        assert_eq!(get(&w, "a").await, Some(1));
    }

    /// Without the checkpointer's held round a log under steady writes is
    /// never wholly copied, never starts over, and holds every frame
    /// written since the file was opened.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_starts_over_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let w = Writer::open(&path, &["CREATE TABLE b (v BLOB NOT NULL);"]).unwrap();
        let started = std::time::Instant::now();
        let mut commits = 0u64;
        while started.elapsed() < Duration::from_millis(2000) || commits < 1000 {
            // A row of most of a page: every commit writes at least one frame
            // (three, with the table's inner pages).
            w.call(|db| {
                db.execute("INSERT INTO b VALUES (zeroblob(900))", [])
                    .map(drop)
                    .map_err(TestError::from)
            })
            .await
            .unwrap();
            commits += 1;
        }
        // The frames in the log now, as a checkpoint reports them (-1 while
        // the checkpointer's own round is running).
        let reader = Connection::open(&path).unwrap();
        let frames = loop {
            let frames: i64 = reader
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                .unwrap();
            if frames >= 0 {
                break frames;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // Rounds every 250 ms: the log holds what came after the newest.
        assert!(
            (frames as u64) < commits,
            "the log holds {frames} frames after {commits} commits of a frame or more each"
        );
    }

    #[tokio::test]
    async fn committed_steps_survive_a_reopen_and_newer_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let w = Writer::open(&path, SCHEMA).unwrap();
            put(&w, "k", 7, false).await.unwrap();
        }
        let w = Writer::open(&path, SCHEMA).unwrap();
        assert_eq!(get(&w, "k").await, Some(7));
        drop(w);
        assert!(matches!(
            Writer::open(&path, &[]),
            Err(OpenError::Newer { found: 1, known: 0 })
        ));
    }
}
