//! How a container ended, in the runtime's words. Both modes use these, so
//! `run` and `agent` cannot disagree about a reason.
use crate::schema::ExitReason;

/// The container's exit code as the runtime reports it: the status of a
/// process that exited, 128 + the signal for one that was killed (137 for
/// SIGKILL).
pub(crate) fn container_exit_code(signal: Option<u32>, status: Option<u32>) -> i32 {
    match (signal, status) {
        (Some(s), _) => 128 + s as i32,
        (None, Some(c)) => c as i32,
        (None, None) => 0,
    }
}

/// Kubernetes' reason for a container's end. Like containerd's CRI, it is
/// `OOMKilled` whenever the OOM killer killed a process of the container
/// during its life, whatever the main process then died of (a shell that
/// reports its child's kill with `exit 137`, a supervisor that exits 1);
/// else `Completed` for 0 and `Error` for anything else.
pub(crate) fn exit_reason(oom_killed_in_container: bool, exit_code: i32) -> ExitReason {
    if oom_killed_in_container {
        ExitReason::OomKilled
    } else if exit_code == 0 {
        ExitReason::Completed
    } else {
        ExitReason::Error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_reasons() {
        assert_eq!(container_exit_code(Some(9), None), 137);
        assert_eq!(container_exit_code(None, Some(3)), 3);
        assert_eq!(exit_reason(true, 137), ExitReason::OomKilled);
        // The agent used to require SIGKILL here: a parent that exits 137
        // after its child's OOM kill is still OOMKilled, as containerd says.
        assert_eq!(
            exit_reason(true, 137),
            exit_reason(true, container_exit_code(None, Some(137)))
        );
        assert_eq!(exit_reason(true, 1), ExitReason::OomKilled);
        assert_eq!(exit_reason(false, 137), ExitReason::Error);
        assert_eq!(exit_reason(false, 0), ExitReason::Completed);
    }
}
