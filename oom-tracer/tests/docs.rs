//! The docs' commands, checked against the programs they name, so that a
//! renamed flag fails here and not in a user's terminal.
//!
//! Read: README.md, every `docs/**/*.md`, deploy/README.md and
//! scripts/README.md. Checked:
//! - every line of a `sh`/`bash`/`shell`/`console` block and every inline
//!   `` `oom-tracer …` `` or `` `cargo xtask …` ``: `oom-tracer <sub>` and
//!   `cargo xtask <sub> [<sub>]` exist and take each `--flag` given (from
//!   their own `--help`); a script exists and reads each `VAR=` set before
//!   it; `kubectl`'s files, namespace, labels and names are in `deploy/`;
//!   any other program must be one of the external tools listed below;
//! - every flag table headed `` (`oom-tracer <sub>`) ``: its flags and
//!   variables belong to that subcommand;
//! - every `OOM_TRACER_*` variable named anywhere: a flag's (in some
//!   `--help`) or one the sources read.
//!
//! Nothing here needs root: the commands are checked, not run (the ones
//! that can run here are run by the other tests and by xtask).
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

#[path = "docs/check.rs"]
mod check;

use check::{Doc, Problem, check_doc};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate is in the workspace")
        .to_owned()
}

/// README.md, docs/**/*.md, deploy/README.md, scripts/README.md.
fn doc_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let root = root();
    let mut files = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut files);
    files.push(root.join("deploy/README.md"));
    files.push(root.join("scripts/README.md"));
    files
}

/// What a program's `--help` offers: subcommands, long flags, variables.
#[derive(Default, Debug)]
pub(crate) struct Help {
    pub(crate) subcommands: BTreeSet<String>,
    pub(crate) flags: BTreeSet<String>,
    /// The flags that take a value (`--log <LOG>`).
    pub(crate) valued: BTreeSet<String>,
    pub(crate) env: BTreeSet<String>,
}

impl Help {
    fn parse(text: &str) -> Self {
        let mut h = Help::default();
        let mut in_commands = false;
        for line in text.lines() {
            if line.starts_with("Commands:") {
                in_commands = true;
                continue;
            }
            if in_commands {
                match line.strip_prefix("  ") {
                    Some(rest) if !rest.starts_with(' ') => {
                        let name = rest.split_whitespace().next().unwrap_or_default();
                        if name != "help" {
                            h.subcommands.insert(name.to_owned());
                        }
                    }
                    Some(_) => {}
                    None => in_commands = !line.trim().is_empty() && line.starts_with(' '),
                }
            }
            // An option's line: `  -h, --help` or `      --memory-limit <…>`.
            let opt = line.trim_start();
            let opt = opt
                .strip_prefix('-')
                .and_then(|o| o.get(1..))
                .and_then(|o| o.strip_prefix(", "))
                .unwrap_or(opt);
            if let Some(rest) = opt.strip_prefix("--") {
                let flag: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if rest[flag.len()..].starts_with(" <") {
                    h.valued.insert(flag.clone());
                }
                h.flags.insert(flag);
            }
            for (i, _) in line.match_indices("[env: ") {
                let var: String = line[i + 6..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                h.env.insert(var);
            }
        }
        h
    }
}

/// Runs `bin args… --help` and parses it; a failure is a missing command.
fn help_of(bin: &Path, args: &[&str]) -> Option<Help> {
    let out = Command::new(bin)
        .args(args)
        .arg("--help")
        .env_remove("OOM_TRACER_LOG")
        .output()
        .unwrap_or_else(|e| panic!("running {} --help: {e}", bin.display()));
    out.status
        .success()
        .then(|| Help::parse(&String::from_utf8_lossy(&out.stdout)))
}

/// The xtask binary: the one `cargo xtask test` runs (it says which in
/// OOM_TRACER_XTASK), else target/debug/xtask if it is not older than its
/// sources.
fn xtask_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OOM_TRACER_XTASK") {
        return PathBuf::from(p);
    }
    let bin = root().join("target/debug/xtask");
    let built = std::fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}): run this test through `cargo xtask test`, or \
                 `cargo build -p xtask` first",
                bin.display()
            )
        });
    let newest = std::fs::read_dir(root().join("xtask/src"))
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
        .max()
        .unwrap();
    assert!(
        built >= newest,
        "{} is older than xtask/src: `cargo build -p xtask`, or run `cargo xtask test`",
        bin.display()
    );
    bin
}

/// The two command lines the docs use, as their `--help` describes them.
pub(crate) struct Clis {
    /// `oom-tracer` and each subcommand's help, by subcommand ("" = top).
    pub(crate) tracer: BTreeMap<String, Help>,
    /// `cargo xtask` by subcommand path ("minikube images"; "" = top).
    pub(crate) xtask: BTreeMap<String, Help>,
    /// Every file of the sources that may read an environment variable.
    pub(crate) sources: String,
}

fn load_clis() -> Clis {
    let tracer_bin = PathBuf::from(env!("CARGO_BIN_EXE_oom-tracer"));
    let mut tracer = BTreeMap::new();
    let top = help_of(&tracer_bin, &[]).expect("oom-tracer --help");
    for sub in &top.subcommands {
        tracer.insert(sub.clone(), help_of(&tracer_bin, &[sub]).unwrap());
    }
    tracer.insert(String::new(), top);
    let xtask_bin = xtask_bin();
    let mut xtask = BTreeMap::new();
    let top = help_of(&xtask_bin, &[]).expect("xtask --help");
    for sub in &top.subcommands {
        let h = help_of(&xtask_bin, &[sub]).unwrap();
        for subsub in &h.subcommands {
            let nested = help_of(&xtask_bin, &[sub, subsub]).unwrap();
            xtask.insert(format!("{sub} {subsub}"), nested);
        }
        xtask.insert(sub.clone(), h);
    }
    xtask.insert(String::new(), top);
    let mut sources = String::new();
    for dir in ["xtask/src", "oom-tracer/src", "scripts", "deploy", "tests"] {
        read_all(&root().join(dir), &mut sources);
    }
    sources.push_str(&std::fs::read_to_string(root().join("oom-tracer/build.rs")).unwrap());
    Clis {
        tracer,
        xtask,
        sources,
    }
}

fn read_all(dir: &Path, out: &mut String) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            read_all(&p, out);
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            out.push_str(&text);
            out.push('\n');
        }
    }
}

fn clis() -> &'static Clis {
    static CLIS: OnceLock<Clis> = OnceLock::new();
    CLIS.get_or_init(load_clis)
}

fn report(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}:{}: {}\n    {}", p.file, p.line, p.what, p.text))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_command_in_the_docs_is_one_the_programs_take() {
    let root = root();
    let mut problems = Vec::new();
    let mut checked = 0;
    for path in doc_files() {
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let name = path.strip_prefix(&root).unwrap().display().to_string();
        let doc = Doc {
            name: &name,
            text: &text,
        };
        let (n, found) = check_doc(&doc, clis(), &root);
        checked += n;
        problems.extend(found);
    }
    assert!(
        problems.is_empty(),
        "{} of the docs' commands do not match the programs:\n{}",
        problems.len(),
        report(&problems)
    );
    eprintln!("checked {checked} commands, flag table cells and variables");
    // The README alone has a few dozen; fewer means the extraction broke.
    assert!(checked > 50, "only {checked} commands found in the docs");
}

/// The checker itself: a wrong flag, subcommand, variable or path in a
/// doc is found, wherever it is written.
#[test]
fn a_wrong_flag_fails() {
    let doc = "\
# x

```sh
sudo target/release/oom-tracer run --memory-limt 50Mi
cargo xtask demo --restart 2
cargo xtask minikube upp
sudo OOM_TRACER_NO_SUCH=1 oom-tracer check
sudo KERNEL_PKGS=x scripts/qemu-v2.sh target/release
kubectl apply -f deploy/no-such.yaml
frobnicate --now
```

Use `oom-tracer run --max-restart 2` here.

| flag (`oom-tracer run`) | env | default |
|---|---|---|
| `--memory-limit` | `OOM_TRACER_MEMORY_LIMITS` | `50Mi` |
";
    let (_, problems) = check_doc(
        &Doc {
            name: "wrong.md",
            text: doc,
        },
        clis(),
        &root(),
    );
    let text = report(&problems);
    for wrong in [
        "--memory-limt",
        "--restart",
        "upp",
        "OOM_TRACER_NO_SUCH",
        "KERNEL_PKGS",
        "deploy/no-such.yaml",
        "frobnicate",
        "--max-restart",
        "OOM_TRACER_MEMORY_LIMITS",
    ] {
        assert!(text.contains(wrong), "{wrong} not found wrong in:\n{text}");
    }
    // The table's variable is wrong twice: for the table, and for the
    // sources.
    assert_eq!(problems.len(), 10, "{text}");
    let right = "\
```sh
sudo target/release/oom-tracer run --memory-limit 50Mi --max-restarts 2 -- stress --step 5Mi
cargo xtask minikube up
sudo OOM_TRACER_LOG=debug oom-tracer --log-format json check --format json
kubectl -n oom-tracer logs -l app.kubernetes.io/name=oom-tracer -f
```

| flag (`oom-tracer agent`) | env |
|---|---|
| `--cri-socket` / `--no-cri` | `OOM_TRACER_CRI_SOCKET` / `OOM_TRACER_NO_CRI` |
";
    let (n, problems) = check_doc(
        &Doc {
            name: "right.md",
            text: right,
        },
        clis(),
        &root(),
    );
    assert!(problems.is_empty(), "{}", report(&problems));
    assert!(n >= 6, "{n} commands checked");
}
