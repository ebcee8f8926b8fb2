//! oom-tracer: what happens, at kernel level, when a container runs out of memory.
//!
//! Where things are:
//! - `cli.rs`: flags; `run.rs`: the local kubelet-like cycle; `check.rs`: capability report
//! - `bpf/`: BTF offsets, hooks (capability probe), loader and ring buffer
//! - `translate.rs`: kernel records → output records; `record.rs`: the output schema
//! - `cgroup/`: memory hierarchy detection, pod cgroups, id → path index
//! - `tracefs.rs`, `quantity.rs`, `backoff.rs`, `clock.rs`, `output.rs`
mod agent;
mod backoff;
mod bpf;
mod cgroup;
mod check;
mod cli;
mod clock;
mod cycle;
mod health;
mod host;
mod kubepath;
mod logging;
mod meta;
mod metrics;
mod output;
mod quantity;
mod record;
mod report;
mod run;
mod tracefs;
mod translate;
mod verdict;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(&cli.log, cli.log_format.map(Into::into));

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oom-tracer: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        cli::Command::Check(args) => {
            let report = rt.block_on(async { check::check(&args) });
            check::print(&report, args.format);
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        cli::Command::Report(args) => match report::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let e = anyhow::Error::from(e);
                tracing::error!("{e:#}");
                ExitCode::FAILURE
            }
        },
        cli::Command::Agent(args) => {
            let mut out = output::Output::new(args.trace.format).with_cycles(args.backoff.policy());
            match rt.block_on(agent::run(args, &mut out)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let e = anyhow::Error::from(e);
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        cli::Command::Run(args) => {
            let mut out = output::Output::new(args.trace.format).with_cycles(args.backoff.policy());
            match rt.block_on(run::run(args, &mut out)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let e = anyhow::Error::from(e);
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
