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
