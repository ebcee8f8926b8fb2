//! Finding the commands in a markdown page and checking each one.
use std::path::Path;

use super::{Clis, Help};

/// Programs the docs may name that are not this repository's: they are
/// not checked, only allowed.
const EXTERNAL: &[&str] = &[
    "minikube",
    "apt-cache",
    "apt-get",
    "python3",
    "curl",
    "jq",
    "git",
    "rustup",
    "cat",
    "ls",
    "tail",
    "head",
    "grep",
    "echo",
    "cd",
    "export",
    "mkdir",
    "kill",
    "ctr",
    "docker",
    "buildah",
    "bpftool",
    "bpftrace",
    "tee",
    "less",
    "time",
    "crictl",
    "journalctl",
    "systemctl",
    "kind",
    "k3s",
    "unshare",
    "nsenter",
    "mount",
    "umount",
    "findmnt",
    "stat",
    "readlink",
    "uname",
    "id",
    "dpkg",
    "find",
    "sed",
    "awk",
    "wc",
    "sort",
    "cp",
    "tar",
];

pub(crate) struct Doc<'a> {
    pub(crate) name: &'a str,
    pub(crate) text: &'a str,
}

#[derive(Debug)]
pub(crate) struct Problem {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) what: String,
    pub(crate) text: String,
}

/// Checks every command of `doc`; returns how many it checked and what
/// is wrong.
pub(crate) fn check_doc(doc: &Doc<'_>, clis: &Clis, root: &Path) -> (usize, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut checked = 0;
    let mut add = |line: usize, text: &str, found: Vec<String>| {
        for what in found {
            problems.push(Problem {
                file: doc.name.to_owned(),
                line,
                what,
                text: text.to_owned(),
            });
        }
    };
    let mut fence: Option<String> = None;
    let mut pending = String::new();
    let mut table_sub: Option<String> = None;
    for (n, line) in doc.text.lines().enumerate() {
        let n = n + 1;
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            fence = match fence {
                None => Some(lang.trim().to_owned()),
                Some(_) => None,
            };
            continue;
        }
        match fence.as_deref() {
            Some("sh" | "bash" | "shell") => {
                pending.push_str(trimmed.strip_suffix('\\').unwrap_or(trimmed));
                pending.push(' ');
                if trimmed.ends_with('\\') {
                    continue;
                }
                let cmd = std::mem::take(&mut pending);
                for part in commands(&cmd) {
                    checked += 1;
                    add(n, &cmd, check_command(&part, clis, root));
                }
            }
            Some("console") => {
                if let Some(cmd) = trimmed.strip_prefix("$ ") {
                    for part in commands(cmd) {
                        checked += 1;
                        add(n, cmd, check_command(&part, clis, root));
                    }
                }
            }
            Some(_) => {}
            None => {
                table_sub = table_context(trimmed, table_sub);
                for span in code_spans(line) {
                    if let Some(sub) = &table_sub {
                        checked += 1;
                        add(n, line, check_table_cell(span, sub, clis));
                    }
                    if is_inline_command(span) {
                        // `a | b | c` in prose lists alternatives: the first
                        // is the command.
                        let first = span.split(" | ").next().unwrap_or(span);
                        checked += 1;
                        add(n, line, check_command(&words(first), clis, root));
                    }
                }
            }
        }
        if fence.is_none() {
            add(n, line, check_variables(line, clis));
        }
    }
    (checked, problems)
}

/// The `oom-tracer` subcommand a flag table is about (its header says
/// `` (`oom-tracer run`) ``), while inside that table.
fn table_context(line: &str, current: Option<String>) -> Option<String> {
    if !line.starts_with('|') {
        return None;
    }
    if let Some(i) = line.find("(`oom-tracer ") {
        let sub: String = line[i + 13..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        return Some(sub);
    }
    current
}

fn is_inline_command(span: &str) -> bool {
    ["oom-tracer ", "cargo xtask ", "sudo "]
        .iter()
        .any(|p| span.starts_with(p))
}

/// The text between backticks on one line.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// One shell line as commands (split at `|`, `&&`, `||`, `;`), each as
/// words, without comments.
fn commands(line: &str) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    for w in words(line) {
        match w.as_str() {
            "|" | "||" | "&&" | ";" => out.push(Vec::new()),
            _ => out.last_mut().unwrap().push(w),
        }
    }
    out.retain(|c| !c.is_empty());
    out
}

/// Shell words: quotes kept together (without the quotes), `#` to the end
/// of the line dropped.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut depth = 0; // inside $( )
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => {
                depth += 1;
                cur.push(c);
            }
            (None, ')') => {
                depth -= 1;
                cur.push(c);
            }
            (None, '#') if cur.is_empty() && depth == 0 => break,
            (None, c) if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

/// What is wrong with one command (its words).
fn check_command(words: &[String], clis: &Clis, root: &Path) -> Vec<String> {
    let mut i = 0;
    let mut vars = Vec::new();
    while i < words.len() {
        let w = words[i].as_str();
        if w == "sudo" || w == "env" || (i > 0 && words[i - 1] == "sudo" && w.starts_with('-')) {
            i += 1;
        } else if is_assignment(w) {
            vars.push(w.split_once('=').unwrap().0.to_owned());
            i += 1;
        } else {
            break;
        }
    }
    let Some(prog) = words.get(i) else {
        return Vec::new();
    };
    let args = &words[i + 1..];
    if prog == "oom-tracer" || prog.ends_with("/oom-tracer") {
        check_tracer(args, &vars, clis)
    } else if prog == "cargo" {
        match args.first().map(String::as_str) {
            Some("xtask") => check_xtask(&args[1..], clis),
            _ => Vec::new(), // cargo's own commands
        }
    } else if prog.ends_with(".sh") {
        check_script(prog, &vars, root)
    } else if prog == "kubectl" {
        check_kubectl(args, root)
    } else if EXTERNAL.contains(&prog.as_str()) {
        Vec::new()
    } else {
        vec![format!(
            "`{prog}`: not this repository's program nor a known external tool (tests/docs/check.rs EXTERNAL)"
        )]
    }
}

/// The long flag a word names (`--memory-limit=1Gi` → `memory-limit`).
fn flag(w: &str) -> Option<&str> {
    let f = w.strip_prefix("--")?;
    let f = f.split(['=', '/']).next().unwrap_or(f);
    (!f.is_empty()).then_some(f)
}

fn check_flags(args: &[String], help: &Help, what: &str) -> Vec<String> {
    args.iter()
        .take_while(|w| *w != "--")
        .filter_map(|w| flag(w))
        .filter(|f| !help.flags.contains(*f))
        .map(|f| format!("`{what}` has no flag --{f}"))
        .collect()
}

fn check_tracer(args: &[String], vars: &[String], clis: &Clis) -> Vec<String> {
    let top = &clis.tracer[""];
    // The subcommand: the first word that is neither a flag nor its value.
    let mut at = 0;
    while let Some(w) = args.get(at).filter(|w| w.starts_with('-')) {
        let takes_value = flag(w).is_some_and(|f| top.valued.contains(f)) && !w.contains('=');
        at += if takes_value { 2 } else { 1 };
    }
    if at >= args.len() {
        return check_flags(args, top, "oom-tracer");
    }
    let sub = args[at].as_str();
    let Some(help) = clis.tracer.get(sub).filter(|_| !sub.is_empty()) else {
        return vec![format!("`oom-tracer` has no subcommand {sub}")];
    };
    let name = format!("oom-tracer {sub}");
    let mut found = check_flags(&args[..at], top, "oom-tracer");
    found.extend(check_flags(&args[at + 1..], help, &name));
    for v in vars.iter().filter(|v| v.starts_with("OOM_TRACER_")) {
        if !help.env.contains(v) {
            found.push(format!("`{name}` reads no variable {v}"));
        }
    }
    found
}

fn check_xtask(args: &[String], clis: &Clis) -> Vec<String> {
    let mut path = String::new();
    let mut at = 0;
    // `…` in prose: any of them.
    while let Some(w) = args.get(at).filter(|w| !w.starts_with('-') && *w != "…") {
        let help = &clis.xtask[&path];
        if help.subcommands.is_empty() {
            break;
        }
        if !help.subcommands.contains(w) {
            return vec![format!("`cargo xtask {path}` has no subcommand {w}")];
        }
        path = if path.is_empty() {
            w.clone()
        } else {
            format!("{path} {w}")
        };
        at += 1;
    }
    if path.is_empty() {
        return vec!["`cargo xtask` without a subcommand".to_owned()];
    }
    if args.get(at).is_some_and(|w| w == "…") {
        return Vec::new();
    }
    check_flags(
        &args[at..],
        &clis.xtask[&path],
        &format!("cargo xtask {path}"),
    )
}

/// A script of this repository: it exists (a bare `./name.sh` is one of
/// `scripts/` copied elsewhere), and it reads each variable set for it.
fn check_script(prog: &str, vars: &[String], root: &Path) -> Vec<String> {
    let rel = prog.trim_start_matches("./");
    let path = [root.join(rel), root.join("scripts").join(rel)]
        .into_iter()
        .find(|p| p.is_file());
    let Some(path) = path else {
        return vec![format!("no script {prog} in the repository")];
    };
    let text = std::fs::read_to_string(&path).unwrap();
    vars.iter()
        .filter(|v| !text.contains(v.as_str()))
        .map(|v| format!("{prog} does not read {v}"))
        .collect()
}

/// kubectl's files exist; its namespace, labels and names are in deploy/.
fn check_kubectl(args: &[String], root: &Path) -> Vec<String> {
    let mut manifests = String::new();
    for e in std::fs::read_dir(root.join("deploy")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            manifests.push_str(&std::fs::read_to_string(p).unwrap());
        }
    }
    let mut found = Vec::new();
    let mut want = |what: &str, text: String| {
        if what == "file" {
            if !root.join(text.trim_end_matches('/')).exists() {
                found.push(format!("no file {text}"));
            }
        } else if !manifests.contains(&text) {
            found.push(format!("no {what} `{text}` in deploy/*.yaml"));
        }
    };
    // `-f` is a file for these; for `logs` it means follow.
    let takes_files = args
        .first()
        .is_some_and(|a| ["apply", "create", "delete", "diff", "kustomize"].contains(&a.as_str()));
    for pair in args.windows(2) {
        let (opt, val) = (pair[0].as_str(), pair[1].as_str());
        match opt {
            "-f" | "-k" | "--filename" | "--kustomize" if takes_files => {
                want("file", val.to_owned());
            }
            "-n" | "--namespace" => want("namespace", format!("namespace: {val}")),
            "-l" | "--selector" => {
                let (k, v) = val.split_once('=').unwrap_or((val, ""));
                want("label", format!("{k}: {v}"));
            }
            "pod" | "pods" if !val.starts_with('-') => want("name", format!("name: {val}")),
            _ => {}
        }
    }
    for w in args {
        if let Some((kind, name)) = w.split_once('/')
            && ["daemonset", "pod", "deployment"].contains(&kind)
        {
            want("name", format!("name: {name}"));
        }
    }
    found
}

/// A flag table's cell: its flags and variables are the subcommand's.
fn check_table_cell(span: &str, sub: &str, clis: &Clis) -> Vec<String> {
    let Some(help) = clis.tracer.get(sub) else {
        return vec![format!(
            "a table for `oom-tracer {sub}`, which does not exist"
        )];
    };
    let mut found = Vec::new();
    for w in span.split([' ', ',']) {
        if let Some(f) = flag(w)
            && !help.flags.contains(f)
        {
            found.push(format!("`oom-tracer {sub}` has no flag --{f}"));
        }
        if let Some(v) = w.strip_prefix("OOM_TRACER_").map(|_| w)
            && !env_known(v, &help.env)
        {
            found.push(format!("`oom-tracer {sub}` reads no variable {v}"));
        }
    }
    found
}

/// `NAME`, or `PREFIX_*` as a prefix of some variable.
fn env_known<'a>(v: &str, known: impl IntoIterator<Item = &'a String>) -> bool {
    let mut known = known.into_iter();
    match v.strip_suffix('*') {
        Some(prefix) => known.any(|k| k.starts_with(prefix)),
        None => known.any(|k| k == v),
    }
}

/// Every `OOM_TRACER_*` variable a line names is a flag's or one the
/// sources read.
fn check_variables(line: &str, clis: &Clis) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in line.match_indices("OOM_TRACER_") {
        let v: String = line[i..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_' || *c == '*')
            .collect();
        if v == "OOM_TRACER_*" {
            continue;
        }
        let flags = clis.tracer.values().flat_map(|h| &h.env);
        let in_sources = v
            .strip_suffix('*')
            .map_or_else(|| has_word(&clis.sources, &v), |p| clis.sources.contains(p));
        if !env_known(&v, flags) && !in_sources {
            found.push(format!("no flag or source reads {v}"));
        }
    }
    found
}

/// Whether `text` holds `word` not followed by more of a variable name.
fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        !text[i + word.len()..]
            .starts_with(|c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}
