//! Every manifest in deploy/ validates against the real Kubernetes schema
//! (kubernetes-validate, offline), and a broken one is caught.
use std::{path::Path, process::Command};

fn validate(args: &[&str]) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new("bash")
        .arg(root.join("deploy/validate.sh"))
        .args(args)
        .output()
        .expect("running deploy/validate.sh (needs bash, python3 and pip)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn deploy_manifests_are_valid() {
    let (ok, text) = validate(&[]);
    assert!(ok, "{text}");
    for f in [
        "daemonset.yaml",
        "rbac.yaml",
        "namespace.yaml",
        "oom-example-pod.yaml",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with("ok") && l.contains(f)),
            "{f} not validated:\n{text}"
        );
    }
}

#[test]
fn a_broken_manifest_fails() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let good = std::fs::read_to_string(root.join("deploy/daemonset.yaml")).unwrap();
    // Drop the required selector.
    let broken: String = {
        let mut out = Vec::new();
        let mut skipping = false;
        for line in good.lines() {
            if line.starts_with("  selector:") {
                skipping = true;
                continue;
            }
            if skipping && line.starts_with("    ") {
                continue;
            }
            skipping = false;
            out.push(line);
        }
        out.join("\n")
    };
    assert_ne!(broken, good, "the fixture must really remove the selector");
    let path = std::env::temp_dir().join(format!("broken-daemonset-{}.yaml", std::process::id()));
    std::fs::write(&path, broken).unwrap();
    let (ok, text) = validate(&[path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert!(!ok, "a DaemonSet without selector passed:\n{text}");
    assert!(text.contains("selector"), "{text}");
}
