//! What the bench made on the node goes, however the bench ends: every
//! pod sandbox in its namespace (stopping a sandbox stops its containers
//! and their shims) and the pod cgroups the runtime made for them
//! (/kubepods/burstable/pod<uid> in every hierarchy; runc removes a
//! container's own cgroup, never its pod's, which is the kubelet's job).
//! A guard does it when it is dropped, after a panic as after a pass; a
//! thread does it on SIGINT or SIGTERM (Ctrl-C on `cargo xtask bench`).

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::common::kubelet::Kubelet;

/// The pods of one bench run: its namespace and the uids of the pods it
/// asked the runtime for (registered before the call, so that a pod whose
/// sandbox failed half-way is cleaned too).
#[derive(Clone)]
pub(crate) struct Made {
    namespace: String,
    uids: Arc<Mutex<Vec<String>>>,
}

impl Made {
    pub(crate) fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            uids: Arc::default(),
        }
    }

    /// A fresh pod uid, remembered for the clean-up.
    pub(crate) fn new_uid(&self) -> String {
        let uid = crate::common::kubelet::new_uid();
        self.uids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(uid.clone());
        uid
    }

    /// Removes every sandbox of the namespace, then every pod cgroup of
    /// the registered uids; says on stderr what it did and what is left.
    pub(crate) fn clean(&self) {
        let left = std::thread::scope(|s| {
            // Its own runtime, on its own thread: this runs inside a
            // panicking runtime, or from a signal.
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(120), self.remove_sandboxes())
                        .await
                        .ok()
                })
            })
            .join()
            .ok()
            .flatten()
        });
        let uids = self.uids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (mut removed, mut busy) = (0, 0);
        for uid in &uids {
            let (r, b) = remove_pod_cgroups(uid);
            removed += r;
            busy += b;
        }
        match left {
            Some(n) => eprintln!(
                "node bench: clean-up: {n} pod sandboxes of {} removed, {removed} pod cgroups \
                 removed, {busy} still in use",
                self.namespace
            ),
            None => eprintln!(
                "node bench: clean-up: the runtime did not answer: pod sandboxes of {} may be \
                 left (tests/containerd/teardown.sh removes them); {removed} pod cgroups \
                 removed, {busy} still in use",
                self.namespace
            ),
        }
    }

    /// StopPodSandbox + RemovePodSandbox of every sandbox in the namespace.
    async fn remove_sandboxes(&self) -> usize {
        let mut k = Kubelet::connect().await;
        let Ok(sandboxes) = k.sandboxes_in(&self.namespace).await else {
            return 0;
        };
        for (id, _) in &sandboxes {
            k.remove_sandbox(id).await;
        }
        sandboxes.len()
    }

    /// Cleans up on SIGINT or SIGTERM, then exits as the signal would.
    pub(crate) fn on_signals(&self) {
        let made = self.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the signal thread");
            let sig = rt.block_on(async {
                use tokio::signal::unix::{SignalKind, signal};
                let (Ok(mut int), Ok(mut term)) = (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) else {
                    return None;
                };
                tokio::select! {
                    _ = int.recv() => Some(2),
                    _ = term.recv() => Some(15),
                }
            });
            if let Some(sig) = sig {
                eprintln!("node bench: signal {sig}: cleaning up");
                made.clean();
                std::process::exit(128 + sig);
            }
        });
    }
}

/// Removes /kubepods/burstable/pod<uid> (and any cgroup left below it) in
/// every hierarchy: (removed, still in use).
fn remove_pod_cgroups(uid: &str) -> (usize, usize) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return (0, 0);
    };
    let rel = format!("kubepods/burstable/pod{uid}");
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join(&rel)];
    dirs.extend(
        hierarchies
            .filter_map(Result::ok)
            .map(|h| h.path().join(&rel)),
    );
    let (mut removed, mut busy) = (0, 0);
    for d in dirs.iter().filter(|d| d.is_dir()) {
        if rmdir_tree(d) {
            removed += 1;
        } else {
            busy += 1;
        }
    }
    (removed, busy)
}

/// rmdir of `d` after its sub-cgroups, deepest first; false if any is in use.
fn rmdir_tree(d: &Path) -> bool {
    if let Ok(children) = std::fs::read_dir(d) {
        for c in children.filter_map(Result::ok) {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&c.path());
            }
        }
    }
    std::fs::remove_dir(d).is_ok()
}

/// Cleans up when dropped (a pass or a panic).
pub(crate) struct Guard(pub(crate) Made);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.clean();
    }
}
