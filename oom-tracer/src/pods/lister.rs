//! The container runtime, listed beside the pipeline: a task of its own
//! owns the CRI client, so that a runtime that is slow, hung or gone never
//! holds up the drain of the ring buffer. The pipeline asks for a listing
//! ([`CriLister::request`], never waits) and picks the newest answer up
//! when it has one ([`CriLister::poll`]).
//!
//! At most one listing is in flight; requests made meanwhile fold into one
//! more. While the runtime answers slowly or not at all (a listing that
//! took over [`SLOW`], a timeout), listings back off (doubling up to
//! [`MAX_BACKOFF`]); one that refuses at once is asked again after
//! [`FIRST_BACKOFF`]. Every up/down transition is logged once.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{Notify, watch};

use super::cri::{Cri, Snapshot};

/// Minimum time between two listings, whatever asks.
const MIN_INTERVAL: Duration = Duration::from_millis(20);
/// A listing that took longer than this counts as the runtime being slow:
/// the next one waits (back-off), as after a failure.
const SLOW: Duration = Duration::from_secs(1);
/// The first back-off after a slow listing (and the only one after a
/// quick failure); it doubles up to [`MAX_BACKOFF`] while listings stay
/// slow and resets after one that was not.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The pipeline's end of the listing task.
pub(crate) struct CriLister {
    want: Arc<Notify>,
    answers: watch::Receiver<Arc<Snapshot>>,
    /// [`CriLister::changed`] saw a listing that `poll` has not handed on.
    fresh: bool,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CriLister {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Up/down state of the runtime, logging each transition once.
#[derive(Debug, Default)]
struct Health {
    down_since: Option<Instant>,
}

impl Health {
    fn ok(&mut self, what: &str) {
        if let Some(t) = self.down_since.take() {
            tracing::info!("{what} recovered after {:.1}s", t.elapsed().as_secs_f64());
        }
    }

    fn failed(&mut self, what: &str, e: &dyn std::error::Error) {
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(
                "{what} unavailable, records lack its metadata until it is back: {}",
                crate::errors::chain(e)
            );
        }
    }
}

impl CriLister {
    /// Starts the listing task on the current runtime. Nothing is listed
    /// until the first [`CriLister::request`].
    pub(crate) fn spawn(cri: Cri) -> Self {
        let want = Arc::new(Notify::new());
        let (tx, answers) = watch::channel(Arc::new(Snapshot::default()));
        let task = tokio::spawn(run(cri, want.clone(), tx));
        Self {
            want,
            answers,
            fresh: false,
            task,
        }
    }

    /// Asks for a listing; returns at once. Requests made while one is in
    /// flight or backing off fold into one.
    pub(crate) fn request(&self) {
        self.want.notify_one();
    }

    /// The newest listing, if one came since the last call.
    pub(crate) fn poll(&mut self) -> Option<Arc<Snapshot>> {
        let changed = self.answers.has_changed().unwrap_or(false);
        if !std::mem::take(&mut self.fresh) && !changed {
            return None;
        }
        Some(self.answers.borrow_and_update().clone())
    }

    /// Completes when a new listing is there for [`CriLister::poll`]
    /// (never, once the task is gone).
    pub(crate) async fn changed(&mut self) {
        // `changed` marks the listing seen: `poll` must still hand it on.
        if self.answers.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        self.fresh = true;
    }
}

/// The listing task: one listing per wake-up, spaced by the back-off.
async fn run(mut cri: Cri, want: Arc<Notify>, tx: watch::Sender<Arc<Snapshot>>) {
    let what = format!("CRI source ({})", cri.socket().display());
    let mut health = Health::default();
    let mut backoff = None::<Duration>;
    loop {
        want.notified().await;
        let started = Instant::now();
        let res = cri.snapshot().await;
        let took = started.elapsed();
        match res {
            Ok(s) => {
                health.ok(&what);
                if tx.send(Arc::new(s)).is_err() {
                    return;
                }
                backoff = (took > SLOW).then(|| {
                    tracing::debug!("{what} slow: a listing took {took:?}");
                    next(backoff)
                });
            }
            Err(e) => {
                health.failed(&what, &e);
                // A runtime that refuses at once (down, restarting) costs
                // nothing to ask again soon; one that hangs is let be.
                backoff = Some(if took > SLOW {
                    next(backoff)
                } else {
                    FIRST_BACKOFF
                });
            }
        }
        tokio::time::sleep(backoff.unwrap_or(MIN_INTERVAL)).await;
    }
}

fn next(backoff: Option<Duration>) -> Duration {
    backoff.map_or(FIRST_BACKOFF, |b| (b * 2).min(MAX_BACKOFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        let mut b = None;
        let mut seen = Vec::new();
        for _ in 0..7 {
            b = Some(next(b));
            seen.push(b.unwrap().as_millis());
        }
        assert_eq!(seen, [250, 500, 1000, 2000, 2000, 2000, 2000]);
    }

    /// A runtime that accepts and never answers: a request returns at
    /// once, and no listing ever comes.
    #[tokio::test]
    async fn a_hung_runtime_never_blocks_the_caller() {
        let dir = std::env::temp_dir().join(format!("oom-tracer-lister-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("hung.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let mut l = CriLister::spawn(Cri::new(sock.clone()));
        let t = Instant::now();
        for _ in 0..100 {
            l.request();
            assert!(l.poll().is_none());
        }
        assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(l.poll().is_none());
        hold.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
