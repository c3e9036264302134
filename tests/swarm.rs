//! A stage deployed to a three-node Docker Swarm (tests/support/swarm.rs: three dockerd in
//! network namespaces on a lab bridge, joined into one swarm, pulling from a registry on the
//! bridge).

mod support;
#[path = "support/swarm.rs"]
mod swarm_lab;

use swarm_lab::swarm;

#[test]
fn the_lab_forms_a_three_node_swarm() {
    let s = swarm();
    let out = s.docker_ok(&[
        "node",
        "ls",
        "--format",
        "{{.ID}} {{.Status}} {{.ManagerStatus}}",
    ]);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().all(|l| l.contains("Ready")), "{out}");
    // the registry on the bridge takes a push from the manager
    let image = s.push_image(
        "lab/probe",
        "1",
        &format!("FROM {}\nCMD [\"true\"]\n", support::busybox_image()),
    );
    assert!(image.starts_with(&s.registry));
}
