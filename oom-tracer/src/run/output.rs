//! Where the workload's own stdout and stderr go: oom-tracer's stderr
//! (stdout carries nothing but records), or a file. With `--format pretty`
//! the default is a file, so that the timeline on a terminal is not
//! interleaved with the workload's lines; one line at startup names it.
use std::{
    fs::{File, OpenOptions},
    os::{fd::AsFd as _, unix::fs::OpenOptionsExt as _},
    path::Path,
    process::Stdio,
};

use super::RunError;
use crate::{cli::WorkloadOutput, sinks::stdout::Format};

/// The workload's stdout and stderr, for every start of it.
pub(super) struct WorkloadStdio {
    /// None: oom-tracer's stderr.
    file: Option<File>,
}

impl WorkloadStdio {
    /// Resolves `--workload-output` for the records' `format` and opens the
    /// file, if any: a path given is created or truncated; the default file
    /// (`auto` with `pretty`) is a new one, named after the pod's uid.
    pub(super) fn open(
        choice: &WorkloadOutput,
        format: Format,
        pod_uid: &str,
    ) -> Result<Self, RunError> {
        let mut options = OpenOptions::new();
        options.write(true);
        let path = match choice {
            WorkloadOutput::Stderr => return Ok(Self { file: None }),
            WorkloadOutput::Auto if format == Format::Json => return Ok(Self { file: None }),
            WorkloadOutput::Auto => {
                // A shared directory: never follow or reuse a name there,
                // and keep what the workload prints to ourselves.
                options.create_new(true).mode(0o600);
                std::env::temp_dir().join(format!("oom-tracer-workload-{pod_uid}.log"))
            }
            WorkloadOutput::File(path) => {
                options.create(true).truncate(true);
                path.clone()
            }
        };
        let file = options
            .open(&path)
            .map_err(|source| RunError::WorkloadOutput {
                path: path.clone(),
                source,
            })?;
        announce(choice, &path);
        Ok(Self { file: Some(file) })
    }

    /// The (stdout, stderr) of one start of the workload.
    pub(super) fn stdio(&self) -> std::io::Result<(Stdio, Stdio)> {
        match &self.file {
            // Its stdout to our stderr: our stdout stays pure records.
            None => {
                let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
                Ok((Stdio::from(stderr), Stdio::inherit()))
            }
            Some(f) => Ok((Stdio::from(f.try_clone()?), Stdio::from(f.try_clone()?))),
        }
    }
}

fn announce(choice: &WorkloadOutput, path: &Path) {
    if *choice == WorkloadOutput::Auto {
        tracing::info!(
            "the workload's output goes to {} (--workload-output stderr shows it here)",
            path.display()
        );
    } else {
        tracing::info!("the workload's output goes to {}", path.display());
    }
}
