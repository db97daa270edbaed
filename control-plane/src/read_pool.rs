//! The few threads that run the API's heavy reads of the log store and the audit log: searches,
//! stats, export pages, audit queries and verification.
//!
//! Why not `spawn_blocking`: a full scan pulls hundreds of megabytes through sled's page cache,
//! and glibc keeps what a thread frees in that thread's arena. Scans spread over the blocking
//! pool's rotating threads left each of their arenas holding a cache's worth of freed memory
//! (1 GiB after `scripts/bench-logs`' searches, 150 MiB of it live). A fixed set of threads
//! keeps that in a fixed set of arenas, and bounds how many scans compete with ingest for the
//! CPU: the rest queue, first come first served.

use std::panic::AssertUnwindSafe;

/// A job for a reader thread.
type Job = Box<dyn FnOnce() + Send>;

/// Handle to the reader threads; clones share them. The threads end when the last handle is
/// dropped.
#[derive(Debug, Clone)]
pub struct ReadPool {
    jobs: flume::Sender<Job>,
}

/// The reader threads are gone, or a job panicked.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the read failed on its reader thread")]
pub struct ReadFailed;

impl ReadPool {
    /// Starts `threads` reader threads (at least one).
    ///
    /// # Errors
    /// When a thread cannot be spawned.
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let (jobs, queue) = flume::unbounded::<Job>();
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("reader-{i}"))
                .spawn(move || {
                    for job in queue.iter() {
                        // A panicking job fails its own request (its answer channel is dropped
                        // unanswered), not the thread.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `read` on a reader thread and returns what it returns.
    ///
    /// # Errors
    /// [`ReadFailed`] when `read` panicked or the threads are gone.
    pub async fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ReadFailed> {
        self.submit(read).await
    }

    /// Queues `read` now and returns its answer to await: the read starts as soon as a thread
    /// is free, whether or not the answer is awaited yet (an export reads its next chunk while
    /// the last one is sent).
    pub fn submit<T, F>(&self, read: F) -> impl Future<Output = Result<T, ReadFailed>> + use<T, F>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(read());
        });
        let queued = self.jobs.send(job).map_err(|_| ReadFailed);
        async move {
            queued?;
            answered.await.map_err(|_| ReadFailed)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::BTreeSet,
        sync::{Arc, Mutex},
    };

    use super::*;

    #[tokio::test]
    async fn reads_run_on_the_pools_threads_only() {
        let pool = ReadPool::start(2).expect("threads");
        let names = Arc::new(Mutex::new(BTreeSet::new()));
        let mut reads = Vec::new();
        for i in 0..20u32 {
            let names = names.clone();
            let pool = pool.clone();
            reads.push(tokio::spawn(async move {
                pool.run(move || {
                    let name = std::thread::current().name().map(str::to_owned);
                    names.lock().map(|mut n| n.insert(name)).ok();
                    i * 2
                })
                .await
            }));
        }
        for (i, read) in reads.into_iter().enumerate() {
            assert_eq!(read.await.ok().and_then(Result::ok), Some(i as u32 * 2));
        }
        let names = names.lock().map(|n| n.clone()).unwrap_or_default();
        assert!(
            names
                .iter()
                .all(|n| n.as_deref().is_some_and(|n| n.starts_with("reader-"))),
            "{names:?}"
        );
        assert!(names.len() <= 2, "{names:?}");
    }

    #[tokio::test]
    async fn a_submitted_read_runs_before_its_answer_is_awaited() {
        let pool = ReadPool::start(1).expect("thread");
        let (ran, started) = std::sync::mpsc::channel();
        let answer = pool.submit(move || {
            let _ = ran.send(());
            5
        });
        started
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the read ran without being awaited");
        assert_eq!(answer.await.ok(), Some(5));
    }

    #[tokio::test]
    async fn a_panicking_read_fails_alone_and_its_thread_serves_on() {
        let pool = ReadPool::start(1).expect("thread");
        assert!(pool.run(|| panic!("a bad read")).await.is_err());
        assert_eq!(pool.run(|| 7).await.ok(), Some(7));
    }
}
