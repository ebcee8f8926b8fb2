//! The signals that stop oom-tracer: SIGINT (Ctrl-C) and SIGTERM (the
//! kubelet stopping the agent, `docker stop`). Every mode installs them
//! here, before it creates anything, so that every way out but SIGKILL
//! runs its clean-up.
use tokio::signal::unix::{Signal, SignalKind, signal};

#[derive(Debug, thiserror::Error)]
#[error("installing the {what} handler")]
pub struct SignalError {
    what: &'static str,
    #[source]
    source: std::io::Error,
}

pub struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    pub fn install() -> Result<Self, SignalError> {
        let mk = |kind, what| signal(kind).map_err(|source| SignalError { what, source });
        Ok(Self {
            int: mk(SignalKind::interrupt(), "SIGINT")?,
            term: mk(SignalKind::terminate(), "SIGTERM")?,
        })
    }

    /// The next stop signal, by name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
