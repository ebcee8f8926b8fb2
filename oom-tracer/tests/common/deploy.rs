//! `deploy/` as a user applies it: the files that `kustomization.yaml`
//! lists (what `kubectl apply -k deploy/` sends), and the example pod.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The workspace root.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Every object of a YAML file (all its documents), as JSON values.
pub(crate) fn load(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// The objects `kubectl apply -k deploy/` creates: the resources listed in
/// deploy/kustomization.yaml, in order. A kustomization that does more than
/// list resources (patches, images, name prefixes, ...) would change what
/// is applied in ways this reader does not: it fails, naming the field.
pub(crate) fn kustomization() -> Vec<Value> {
    let dir = workspace().join("deploy");
    let kust = load(&dir.join("kustomization.yaml"));
    assert_eq!(kust.len(), 1, "kustomization.yaml: one document");
    let kust = kust[0].as_object().expect("kustomization.yaml: a mapping");
    for key in kust.keys() {
        assert!(
            ["apiVersion", "kind", "resources"].contains(&key.as_str()),
            "kustomization.yaml: field `{key}` is not applied by this test's reader \
             (it only reads `resources`): extend oom-tracer/tests/common/deploy.rs"
        );
    }
    assert_eq!(kust["kind"], "Kustomization");
    let resources = kust["resources"]
        .as_array()
        .expect("kustomization.yaml: resources");
    resources
        .iter()
        .flat_map(|r| {
            let file = r.as_str().expect("resources: file names");
            load(&dir.join(file))
        })
        .collect()
}

/// The object of `kind` named `name` among `objects`.
pub(crate) fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/"))
}

/// The single object of `kind` among `objects`.
pub(crate) fn only<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind} in deploy/");
    found[0]
}

/// The changes a kustomize overlay of `deploy/` (`deploy/<name>/`, as
/// `kubectl apply -k deploy/<name>/` applies it) makes to the DaemonSet's
/// pod template: its JSON-patch `add` operations, as (path below
/// `/spec/template`, value). An overlay that does anything else fails,
/// naming it (this reader would not apply it).
pub(crate) fn overlay_adds(name: &str) -> Vec<(String, Value)> {
    let file = workspace()
        .join("deploy")
        .join(name)
        .join("kustomization.yaml");
    let kust = load(&file);
    assert_eq!(kust.len(), 1, "{}: one document", file.display());
    let kust = kust[0].as_object().expect("a mapping");
    for key in kust.keys() {
        assert!(
            ["apiVersion", "kind", "resources", "patches"].contains(&key.as_str()),
            "{}: field `{key}` is not applied by this test's reader: extend \
             oom-tracer/tests/common/deploy.rs",
            file.display()
        );
    }
    assert_eq!(
        kust["resources"],
        serde_json::json!(["../"]),
        "{}",
        file.display()
    );
    let mut adds = Vec::new();
    for p in kust["patches"].as_array().expect("patches") {
        assert_eq!(p["target"]["kind"], "DaemonSet", "{p}");
        let ops: Vec<Value> = serde_saphyr::from_str(p["patch"].as_str().expect("an inline patch"))
            .unwrap_or_else(|e| panic!("{}: the patch is not YAML: {e}", file.display()));
        for op in ops {
            assert_eq!(op["op"], "add", "only `add` is applied here: {op}");
            let path = op["path"].as_str().expect("a path");
            let below = path
                .strip_prefix("/spec/template")
                .unwrap_or_else(|| panic!("a patch outside the pod template: {path}"));
            adds.push((below.to_owned(), op["value"].clone()));
        }
    }
    adds
}

/// Applies a JSON-patch `add` at `path` (`/-` appends to an array).
pub(crate) fn add_at(doc: &mut Value, path: &str, value: Value) {
    let mut tokens: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let last = tokens.pop().expect("a path");
    let mut at = doc;
    for t in tokens {
        at = match at {
            Value::Array(a) => &mut a[t.parse::<usize>().expect("an index")],
            v => v
                .get_mut(t)
                .unwrap_or_else(|| panic!("no `{t}` on the way to {path}")),
        };
    }
    match (at, last) {
        (Value::Array(a), "-") => a.push(value),
        (Value::Object(o), key) => {
            o.insert(key.to_owned(), value);
        }
        (other, _) => panic!("cannot add at {path} in {other}"),
    }
}
