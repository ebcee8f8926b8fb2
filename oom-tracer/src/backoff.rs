//! The kubelet's container restart back-off (CrashLoopBackOff).
//!
//! The kubelet waits `initial` before restarting a container that exited,
//! doubles the wait after each further exit up to `max`, and starts again
//! from `initial` once a container ran for `reset_after` without exiting
//! (Kubernetes defaults: 10s, 300s, 10 min). Clusters with KEP-4603/5593
//! settings change these numbers, hence the flags.
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
        }
    }
}

/// Back-off state of one container.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    policy: BackoffPolicy,
    last: Option<Duration>,
}

impl Backoff {
    pub(crate) fn new(policy: BackoffPolicy) -> Self {
        Self { policy, last: None }
    }

    /// The wait before the next restart of a container that ran for `ran`.
    pub(crate) fn next_delay(&mut self, ran: Duration) -> Duration {
        let delay = match self.last {
            Some(prev) if ran < self.policy.reset_after => {
                prev.saturating_mul(2).min(self.policy.max)
            }
            _ => self.policy.initial.min(self.policy.max),
        };
        self.last = Some(delay);
        delay
    }

    /// The delay `next_delay` would return for a further short run,
    /// without changing the state (for predictions).
    pub(crate) fn peek_next(&self) -> Duration {
        match self.last {
            Some(prev) => prev.saturating_mul(2).min(self.policy.max),
            None => self.policy.initial.min(self.policy.max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_secs(1);

    #[test]
    fn kubelet_defaults_double_to_five_minutes() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let got: Vec<u64> = (0..8).map(|_| b.next_delay(SHORT).as_secs()).collect();
        assert_eq!(got, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn resets_after_ten_minutes_of_running() {
        let mut b = Backoff::new(BackoffPolicy::default());
        b.next_delay(SHORT);
        b.next_delay(SHORT);
        assert_eq!(b.peek_next(), Duration::from_secs(40));
        assert_eq!(
            b.next_delay(Duration::from_secs(600)),
            Duration::from_secs(10)
        );
        assert_eq!(
            b.next_delay(Duration::from_secs(599)),
            Duration::from_secs(20)
        );
    }

    #[test]
    fn custom_schedule_and_cap() {
        let mut b = Backoff::new(BackoffPolicy {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(1),
            reset_after: Duration::from_secs(60),
        });
        let got: Vec<u128> = (0..5).map(|_| b.next_delay(SHORT).as_millis()).collect();
        assert_eq!(got, [250, 500, 1000, 1000, 1000]);
        // An initial above the cap is capped.
        let mut b = Backoff::new(BackoffPolicy {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(1),
            reset_after: Duration::from_secs(60),
        });
        assert_eq!(b.next_delay(SHORT), Duration::from_secs(1));
    }
}
