//! The shape of `oom-tracer/src`, checked: no module imports another that
//! imports it back (directly or through others; a parent declaring its
//! children is not an import), only the modes and `main` read `cli`, and
//! `schema` is a leaf. Test code (`tests.rs`, `tests/`, `mod tests {}`)
//! is left out.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// The tree checked: `SRC`, or `OOM_TRACER_LAYERS_SRC` (to show that an
/// older tree fails).
fn src() -> PathBuf {
    std::env::var_os("OOM_TRACER_LAYERS_SRC").map_or_else(|| PathBuf::from(SRC), PathBuf::from)
}
/// The modes: the only modules that may read the flags.
const MODES: [&str; 4] = ["run", "agent", "check", "report"];

/// Module path (`pipeline::translate`, `crate` for main.rs) → source text.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().unwrap() != "tests" {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "rs")
                && p.file_name().unwrap() != "tests.rs"
            {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    let root = src();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            let name = if parts == ["main"] {
                "crate".to_owned()
            } else {
                parts.join("::")
            };
            (name, without_tests(&std::fs::read_to_string(&p).unwrap()))
        })
        .collect()
}

/// The source without its `#[cfg(test)]` items (test modules, test helpers).
fn without_tests(src: &str) -> String {
    let mut out = String::new();
    let mut lines = src.lines().peekable();
    while let Some(l) = lines.next() {
        if l.trim() != "#[cfg(test)]" {
            out.push_str(l);
            out.push('\n');
            continue;
        }
        // Skip the item that follows: to its `;` or its closing brace.
        let mut depth = 0i32;
        for l in lines.by_ref() {
            depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
            let t = l.trim_end();
            if depth <= 0 && (t.ends_with(';') || t.ends_with('}')) {
                break;
            }
        }
    }
    out
}

/// Every path a source names with `crate::` or `super::`, `use` trees expanded.
fn paths(src: &str) -> Vec<String> {
    let code: String = src
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = Vec::new();
    let mut lines = code.lines();
    while let Some(l) = lines.next() {
        let t = l.trim_start();
        let Some(stmt) = ["use ", "pub use ", "pub(crate) use ", "pub(super) use "]
            .iter()
            .find_map(|p| t.strip_prefix(p))
        else {
            continue;
        };
        let mut stmt = stmt.to_owned();
        while !stmt.contains(';') {
            match lines.next() {
                Some(more) => stmt.push_str(more),
                None => break,
            }
        }
        let end = stmt.find(';').unwrap_or(stmt.len());
        expand(stmt[..end].trim(), "", &mut out);
    }
    // Paths written inline (`crate::errors::chain(&e)`).
    for root in ["crate::", "super::"] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(root) {
            let before = rest[..i].chars().last();
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                out.push(tail[..end].trim_end_matches(':').to_owned());
            }
            rest = &tail[root.len()..];
        }
    }
    out.retain(|p| p.starts_with("crate::") || p.starts_with("super::"));
    out
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str, prefix: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    match tree.find('{') {
        None => {
            let t = tree.split(" as ").next().unwrap().trim();
            if !t.is_empty() {
                out.push(format!("{prefix}{t}"));
            }
        }
        Some(open) => {
            let head = &tree[..open];
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&inner[start..i], &format!("{prefix}{head}"), out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            expand(&inner[start..], &format!("{prefix}{head}"), out);
        }
    }
}

/// The module a path lands in: the longest prefix that is a module.
fn target(from: &str, path: &str, mods: &BTreeSet<String>) -> Option<String> {
    let mut parts: Vec<&str> = path.split("::").collect();
    let mut base: Vec<String> = if from == "crate" {
        vec![]
    } else {
        from.split("::").map(str::to_owned).collect()
    };
    match parts.first() {
        Some(&"crate") => {
            base.clear();
            parts.remove(0);
        }
        Some(&"super") => {
            while parts.first() == Some(&"super") {
                parts.remove(0);
                base.pop();
            }
        }
        _ => return None,
    }
    let mut best = if base.is_empty() {
        "crate".to_owned()
    } else {
        base.join("::")
    };
    let mut cur = base;
    for p in parts {
        if p == "self" || p == "*" {
            break;
        }
        cur.push(p.to_owned());
        let name = cur.join("::");
        if mods.contains(&name) {
            best = name;
        } else {
            break;
        }
    }
    Some(best)
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let names: BTreeSet<String> = mods.keys().cloned().collect();
    mods.iter()
        .map(|(m, src)| {
            let deps = paths(src)
                .iter()
                .filter_map(|p| target(m, p, &names))
                .filter(|t| t != m)
                .collect();
            (m.clone(), deps)
        })
        .collect()
}

/// Whether `to` is reachable from `from`, and how.
fn route(g: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> Option<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![vec![from.to_owned()]];
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap().clone();
        if last == to && path.len() > 1 {
            return Some(path);
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for n in g.get(&last).into_iter().flatten() {
            let mut p = path.clone();
            p.push(n.clone());
            stack.push(p);
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let g = graph();
    assert!(
        g.len() > 20,
        "found only {} modules in {}",
        g.len(),
        src().display()
    );
    let mut cycles = Vec::new();
    for (m, deps) in &g {
        for d in deps {
            if let Some(back) = route(&g, d, m) {
                cycles.push(format!("{m} -> {}", back.join(" -> ")));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn only_the_modes_read_the_flags() {
    let top = |m: &str| m.split("::").next().unwrap().to_owned();
    let readers: Vec<String> = graph()
        .into_iter()
        .filter(|(m, deps)| top(m) != "cli" && deps.iter().any(|d| top(d) == "cli"))
        .map(|(m, _)| m)
        .filter(|m| m != "crate" && !MODES.contains(&top(m).as_str()))
        .collect();
    assert!(
        readers.is_empty(),
        "modules below the modes read `cli`: {readers:?}"
    );
}

#[test]
fn the_schema_is_a_leaf() {
    let g = graph();
    for (m, deps) in g.iter().filter(|(m, _)| m.starts_with("schema")) {
        let outside: Vec<_> = deps.iter().filter(|d| !d.starts_with("schema")).collect();
        assert!(outside.is_empty(), "{m} imports {outside:?}");
    }
}

#[test]
fn the_checker_sees_imports() {
    let mods: BTreeSet<String> = ["a", "a::b", "a::c", "d"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut p = Vec::new();
    expand("crate::{a::{b::X, c}, d as e}", "", &mut p);
    assert_eq!(p, ["crate::a::b::X", "crate::a::c", "crate::d"]);
    assert_eq!(
        target("a::b", "super::c::Y", &mods).as_deref(),
        Some("a::c")
    );
    assert_eq!(target("a::b", "super::Z", &mods).as_deref(), Some("a"));
    assert_eq!(target("a", "super::d::Q", &mods).as_deref(), Some("d"));
    assert_eq!(
        paths(&without_tests(
            "#[cfg(test)]\nmod tests {\n use crate::d;\n}\nfn f() { crate::a::b::g(); }"
        )),
        ["crate::a::b::g"]
    );
}
