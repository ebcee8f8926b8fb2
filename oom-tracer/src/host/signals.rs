//! The signals that stop oom-tracer: SIGINT (Ctrl-C), SIGTERM (the
//! kubelet stopping the agent, `docker stop`), SIGHUP (its terminal went
//! away) and SIGQUIT (Ctrl-\). Every mode installs them here, before it
//! creates anything, so that every way out but SIGKILL runs its clean-up
//! and ends with a `stop` record.
use tokio::signal::unix::{Signal, SignalKind, signal};

#[derive(Debug, thiserror::Error)]
#[error("installing the {what} handler")]
pub(crate) struct SignalError {
    what: &'static str,
    #[source]
    source: std::io::Error,
}

pub(crate) struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
    quit: Signal,
}

impl Signals {
    pub(crate) fn install() -> Result<Self, SignalError> {
        let mk = |kind, what| signal(kind).map_err(|source| SignalError { what, source });
        Ok(Self {
            int: mk(SignalKind::interrupt(), "SIGINT")?,
            term: mk(SignalKind::terminate(), "SIGTERM")?,
            hup: mk(SignalKind::hangup(), "SIGHUP")?,
            quit: mk(SignalKind::quit(), "SIGQUIT")?,
        })
    }

    /// The next stop signal, by name.
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
            _ = self.quit.recv() => "SIGQUIT",
        }
    }
}
