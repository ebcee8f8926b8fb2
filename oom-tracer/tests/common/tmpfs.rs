//! A tmpfs, mounted for a test and unmounted however it ends.
use std::{path::PathBuf, process::Command};

pub(crate) struct Tmpfs(pub(crate) PathBuf);

impl Tmpfs {
    pub(crate) fn mount(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("oom-tracer-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("running mount (util-linux)");
        assert!(st.success(), "mounting a tmpfs at {}", dir.display());
        Self(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}
