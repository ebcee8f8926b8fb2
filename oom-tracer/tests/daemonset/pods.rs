//! The pods of `deploy/`, translated as the kubelet would (`podspec`):
//! the agent's, from the DaemonSet's template (with the DaemonSet's own
//! fields checked), and the example pod.

use serde_json::{Value, json};

use crate::{
    cluster::Cluster,
    common::{
        deploy,
        podspec::{self, PodPlan},
    },
};

/// The agent's pod: the DaemonSet's template as the DaemonSet controller
/// makes it into a Pod, translated. `edit` changes the template first.
pub(crate) fn agent_pod(cluster: &Cluster, edit: impl FnOnce(&mut Value)) -> PodPlan {
    let objects = deploy::kustomization();
    let ds = deploy::only(&objects, "DaemonSet");
    let namespace = check_daemonset(ds, &objects);
    let mut template = ds["spec"]["template"].clone();
    edit(&mut template);
    let pod = podspec::pod_from_template(
        &template,
        &namespace,
        &format!("{}-", ds["metadata"]["name"].as_str().unwrap()),
        ds,
    );
    podspec::translate(&pod, &cluster.node, "deploy/daemonset.yaml").unwrap_or_else(|fields| {
        panic!(
            "deploy/daemonset.yaml: fields of the pod template that the kubelet translation \
             (oom-tracer/tests/common/podspec/) does not handle:\n  {}",
            fields.join("\n  ")
        )
    })
}

/// The DaemonSet's own fields, and what it needs from the other objects
/// of the kustomization; returns its namespace.
fn check_daemonset(ds: &Value, objects: &[Value]) -> String {
    let ledger = podspec::Ledger::default();
    {
        let top = podspec::Fields::new(ds, "", &ledger);
        top.skip("apiVersion", "apps/v1");
        top.skip("kind", "DaemonSet");
        let md = top.obj("metadata").unwrap();
        md.skip("name", "the pods' name prefix (pod_from_template)");
        md.skip("labels", "the DaemonSet's own labels");
        md.skip("namespace", "read below");
        let spec = top.obj("spec").unwrap();
        spec.skip(
            "updateStrategy",
            "the DaemonSet controller's rollout; one pod on one node here",
        );
        spec.skip("template", "translated as the pod");
        // The API server rejects a selector that does not match the
        // template's labels.
        let selector = spec.obj("selector").unwrap();
        let labels = &ds["spec"]["template"]["metadata"]["labels"];
        for (k, v) in selector.string_map("matchLabels") {
            assert_eq!(
                labels[&k], v,
                "selector {k}={v} does not match the template"
            );
        }
    }
    let unhandled = ledger.unhandled();
    assert!(
        unhandled.is_empty(),
        "deploy/daemonset.yaml: DaemonSet fields this test does not handle: {unhandled:?}"
    );
    let namespace = ds["metadata"]["namespace"].as_str().unwrap().to_owned();
    deploy::find(objects, "Namespace", &namespace);
    let sa = ds["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap();
    let account = deploy::find(objects, "ServiceAccount", sa);
    assert_eq!(account["metadata"]["namespace"], namespace.as_str());
    // The agent lists and watches pods: its role must allow that.
    let binding = objects
        .iter()
        .find(|o| {
            o["kind"] == "ClusterRoleBinding"
                && o["subjects"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["name"] == sa))
        })
        .expect("a ClusterRoleBinding for the agent's service account");
    let role = deploy::find(
        objects,
        "ClusterRole",
        binding["roleRef"]["name"].as_str().unwrap(),
    );
    let allows = |verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            r["resources"].as_array().unwrap().contains(&json!("pods"))
                && r["verbs"].as_array().unwrap().contains(&json!(verb))
        })
    };
    assert!(allows("list") && allows("watch"), "{role}");
    namespace
}

/// The example pod, translated.
pub(crate) fn example_pod(cluster: &Cluster) -> PodPlan {
    let objects = deploy::load(&deploy::workspace().join("deploy/oom-example-pod.yaml"));
    assert_eq!(objects.len(), 1);
    podspec::translate(&objects[0], &cluster.node, "deploy/oom-example-pod.yaml").unwrap_or_else(
        |fields| {
            panic!(
                "deploy/oom-example-pod.yaml: fields the kubelet translation does not \
                 handle:\n  {}",
                fields.join("\n  ")
            )
        },
    )
}
