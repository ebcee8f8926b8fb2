//! oom-tracer: what happens, at kernel level, when a container runs out of memory.
//!
//! Where things are (docs/how-it-works.md, "Layout" and "How a record
//! flows", says more):
//! - the modes: `run/` (the local kubelet), `agent/` (the DaemonSet),
//!   `check.rs` (what this kernel offers), `report/` (pictures); their
//!   flags in `cli/`, the only module they share that nothing else reads;
//! - the one record pipeline: `bpf/` (load, attach, ring buffer) →
//!   `pipeline/` (decode, translate, enrich, lifecycle) → `analyse/`
//!   (verdicts, exits, cycles) → `sinks/` (stdout, metrics, Events);
//! - enrichment: `pods/` (who a cgroup belongs to), `kubepath.rs` (the
//!   kubelet's cgroup paths);
//! - the output types: `schema/` (docs/schema.md);
//! - below them: `cgroup/`, `host/`, `tracefs.rs`, `quantity.rs`,
//!   `backoff.rs`, `errors.rs`, `logging.rs`, `health/`.
#[cfg(feature = "agent")]
mod agent;
mod analyse;
mod backoff;
mod bpf;
mod cgroup;
mod check;
mod cli;
mod errors;
mod health;
mod host;
#[cfg(feature = "agent")]
mod kubepath;
mod logging;
mod pipeline;
mod pods;
mod quantity;
mod report;
mod run;
mod schema;
mod sinks;
mod symbols;
mod tracefs;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // The breakdown check's child: answered before any flag is parsed.
    if std::env::args_os().nth(1).as_deref() == Some(pipeline::statcheck::SUBCOMMAND.as_ref()) {
        return pipeline::statcheck::serve_child();
    }
    let cli = cli::Cli::parse();
    logging::init(&cli.log, cli.log_format());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = match cli.command {
        cli::Command::Check(args) => {
            let report = rt.block_on(async { check::check(&args) });
            check::print(
                &report,
                args.output.format_or(sinks::stdout::Format::Pretty),
            );
            if report.ok {
                Ok(())
            } else {
                // The report says why; the exit status says it failed.
                return ExitCode::FAILURE;
            }
        }
        cli::Command::Report(args) => report::run(&args).map_err(Into::into),
        #[cfg(feature = "agent")]
        cli::Command::Agent(args) => rt.block_on(agent::run(args)).map_err(Into::into),
        #[cfg(not(feature = "agent"))]
        cli::Command::Agent(_) => Err(anyhow::anyhow!(
            "this oom-tracer was built without the node agent (`cargo xtask demo` builds it so); \
             `cargo build -p oom-tracer` builds it with"
        )),
        cli::Command::Run(args) => rt.block_on(run::run(args)).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
