//! What is the stage's and what is not, with the real binary against the real engine:
//! objects made from a stage's image are the user's, foreign objects holding a stage name
//! are named (never used or duplicated), replaced images do not pile up, and the stack's
//! network and volume settings reach the engine.

mod support;

use support::{busybox_image, docker, docker_ok, lines, TestStack};

/// Removes what the test made by hand (no stackctl labels), on every path.
struct Foreign(Vec<Vec<String>>);

impl Foreign {
    fn new() -> Foreign {
        Foreign(Vec::new())
    }
    fn on_drop(&mut self, args: &[&str]) {
        self.0.push(args.iter().map(|s| s.to_string()).collect());
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        for args in self.0.iter().rev() {
            docker(args);
        }
    }
}

fn image_exists(reference: &str) -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", reference])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn image_id(reference: &str) -> String {
    docker_ok(&["image", "inspect", "--format", "{{.Id}}", reference])
        .trim()
        .to_string()
}

/// A stage with one service built from `api/`.
fn built_stack(name: &str) -> (TestStack, String) {
    let base = busybox_image();
    let t = TestStack::new(name);
    t.write(
        "api/Dockerfile",
        &format!("FROM {base}\nCOPY version.txt /version.txt\nCMD [\"sleep\", \"3600\"]\n"),
    );
    t.write("api/version.txt", "1\n");
    t.stack("services:\n  api:\n    build: api\n    init: true\n");
    let tag = format!("{}/api:{}", t.project, t.stage);
    (t, tag)
}

#[test]
fn r9_objects_made_from_a_stage_image_survive_down_and_purge() {
    let (t, tag) = built_stack("r9-inherit");
    let mut foreign = Foreign::new();
    t.cmd().arg("up").assert().success();

    // A container of the user's from the stage's image, a second tag, and an image built
    // FROM it: all inherit the image's labels.
    let mine = format!("{}-mine", t.project);
    foreign.on_drop(&["rm", "-f", &mine]);
    docker_ok(&["run", "-d", "--name", &mine, &tag, "sleep", "3600"]);
    let labels = docker_ok(&["inspect", "--format", "{{json .Config.Labels}}", &mine]);
    assert!(!labels.contains("\"io.stackctl.project\""), "{labels}");
    let extra = format!("{}-user/extra:1", t.project);
    foreign.on_drop(&["rmi", &extra]);
    docker_ok(&["tag", &tag, &extra]);
    let derived = format!("{}-user/derived:1", t.project);
    foreign.on_drop(&["rmi", &derived]);
    t.write(
        "derived/Dockerfile",
        &format!("FROM {tag}\nCMD [\"true\"]\n"),
    );
    docker_ok(&[
        "build",
        "-q",
        "-t",
        &derived,
        &t.path("derived").to_string_lossy(),
    ]);

    t.cmd().arg("down").assert().success();
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Running}}", &mine]).trim(),
        "true",
        "down stopped a container that is not the stage's"
    );

    t.cmd().args(["purge", "--yes"]).assert().success();
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Running}}", &mine]).trim(),
        "true",
        "purge touched a container that is not the stage's"
    );
    assert!(!image_exists(&tag), "purge left the stage's own tag");
    assert!(image_exists(&extra), "purge removed the user's extra tag");
    assert!(
        image_exists(&derived),
        "purge removed an image built FROM the stage's"
    );
}

#[test]
fn r10_foreign_container_holding_a_stage_name_is_named() {
    let image = busybox_image();
    let t = TestStack::new("r10-name");
    t.stack(&format!(
        "services:\n  api: {{ image: {image}, command: [sleep, \"3600\"] }}\n"
    ));
    let mut foreign = Foreign::new();
    let name = t.container("api");
    foreign.on_drop(&["rm", "-f", &name]);
    docker_ok(&["create", "--name", &name, image, "true"]);

    let out = t.cmd().arg("up").assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("create container `{name}`"))
            && stderr.contains("held by a container that is not this stage's"),
        "{stderr}"
    );
    assert!(stderr.contains("remove or rename it"), "{stderr}");
    assert!(
        !stderr.contains("Conflict."),
        "raw engine conflict: {stderr}"
    );
    // Untouched.
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.Status}}", &name]).trim(),
        "created"
    );
}

#[test]
fn r11_foreign_network_with_the_stage_network_name_is_named() {
    let image = busybox_image();
    let t = TestStack::new("r11-net");
    t.stack(&format!(
        "services:\n  api: {{ image: {image}, command: [sleep, \"3600\"] }}\ntasks:\n  hello: {{ image: {image}, command: [echo, hi] }}\n"
    ));
    let mut foreign = Foreign::new();
    let network = format!("{}-{}_default", t.stage, t.project);
    foreign.on_drop(&["network", "rm", &network]);
    docker_ok(&["network", "create", &network]);

    for args in [&["up"][..], &["exec", "hello"][..]] {
        let out = t.cmd().args(args).assert().failure();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains(&format!(
                "a network that is not this stage's holds the name `{network}`"
            )),
            "{args:?}: {stderr}"
        );
        let same_name = lines(&docker(&[
            "network",
            "ls",
            "--format",
            "{{.Name}}",
            "--filter",
            &format!("name={network}"),
        ]))
        .into_iter()
        .filter(|n| *n == network)
        .count();
        assert_eq!(same_name, 1, "{args:?} made a second network");
    }
    assert!(t.containers().is_empty(), "{:?}", t.containers());
}

#[test]
fn r12_up_build_removes_the_image_it_replaced() {
    let (t, tag) = built_stack("r12-replaced");
    t.cmd().arg("up").assert().success();
    let old = image_id(&tag);
    t.write("api/version.txt", "2\n");
    t.cmd().args(["up", "--build"]).assert().success();
    let new = image_id(&tag);
    assert_ne!(old, new, "the rebuild did not change the image");
    assert!(
        !image_exists(&old),
        "the replaced image {old} is still there"
    );
    let dangling = lines(&docker(&[
        "images",
        "-q",
        "--filter",
        "dangling=true",
        "--filter",
        &format!("label=io.stackctl.image.project={}", t.project),
    ]));
    assert!(dangling.is_empty(), "{dangling:?}");
}

#[test]
fn defect3_network_driver_and_labels_reach_the_engine() {
    let image = busybox_image();
    let t = TestStack::new("d3-objects");
    let stack = |driver: &str, label: &str| {
        format!(
            r#"
services:
  api:
    image: {image}
    command: [sleep, "3600"]
    networks: [back]
    volumes: ["cache:/cache"]
networks:
  back: {{ driver: {driver}, labels: {{ {label}: blue }} }}
volumes:
  cache: {{ labels: {{ team: green }} }}
"#
        )
    };
    t.stack(&stack("bridge", "team"));
    t.cmd().args(["up", "--no-wait"]).assert().success();
    let network = format!("{}-{}_back", t.stage, t.project);
    let volume = format!("{}-{}_cache", t.stage, t.project);
    assert_eq!(
        docker_ok(&[
            "network",
            "inspect",
            "--format",
            "{{.Driver}} {{index .Labels \"team\"}} {{index .Labels \"io.stackctl.stage\"}}",
            &network
        ])
        .trim(),
        format!("bridge blue {}", t.stage)
    );
    assert_eq!(
        docker_ok(&[
            "volume",
            "inspect",
            "--format",
            "{{index .Labels \"team\"}} {{index .Labels \"io.stackctl.stage\"}}",
            &volume
        ])
        .trim(),
        format!("green {}", t.stage)
    );

    // An existing network with another driver is named, not silently kept.
    t.stack(&stack("macvlan", "team"));
    let out = t.cmd().args(["up", "--no-wait"]).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!(
            "network `{network}` exists with driver `bridge`, but networks.back asks for `macvlan`"
        )),
        "{stderr}"
    );

    // So is a volume's.
    t.stack(&stack("bridge", "team").replace(
        "cache: { labels: { team: green } }",
        "cache: { driver: nfs-like, labels: { team: green } }",
    ));
    let out = t.cmd().args(["up", "--no-wait"]).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!(
            "volume `{volume}`: exists with driver `local`, but volumes.cache asks for `nfs-like`"
        )),
        "{stderr}"
    );

    // An ownership label is the stage's own: refused, located.
    t.cmd().arg("down").assert().success();
    t.stack(&stack("bridge", "io.stackctl.stage"));
    for args in [&["up", "--no-wait"][..], &["config"][..]] {
        let out = t.cmd().args(args).assert().code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains(&format!("stacks/{}.yml:", t.stage))
                && stderr.contains("label `io.stackctl.stage` of networks.back"),
            "{args:?}: {stderr}"
        );
    }
    assert!(lines(&docker(&[
        "network",
        "ls",
        "-q",
        "--filter",
        &format!("name={network}")
    ]))
    .is_empty());
}

#[test]
fn r9_purge_removes_an_older_versions_image_by_its_stack_tag_only() {
    let (t, tag) = built_stack("r9-legacy");
    let mut foreign = Foreign::new();
    // As an older stackctl labelled its images: the container keys, role `image`.
    let project_label = format!("io.stackctl.project={}", t.project);
    let stage_label = format!("io.stackctl.stage={}", t.stage);
    docker_ok(&[
        "build",
        "-q",
        "-t",
        &tag,
        "--label",
        &project_label,
        "--label",
        &stage_label,
        "--label",
        "io.stackctl.role=image",
        &t.path("api").to_string_lossy(),
    ]);
    let extra = format!("{}-user/old:1", t.project);
    foreign.on_drop(&["rmi", &extra]);
    docker_ok(&["tag", &tag, &extra]);
    let derived = format!("{}-user/derived-old:1", t.project);
    foreign.on_drop(&["rmi", &derived]);
    t.write(
        "derived/Dockerfile",
        &format!("FROM {tag}\nCMD [\"true\"]\n"),
    );
    docker_ok(&[
        "build",
        "-q",
        "-t",
        &derived,
        &t.path("derived").to_string_lossy(),
    ]);

    t.cmd().args(["purge", "--yes"]).assert().success();
    assert!(!image_exists(&tag), "purge left the stage's own tag");
    assert!(image_exists(&extra), "purge removed the user's extra tag");
    assert!(
        image_exists(&derived),
        "purge removed an image built FROM the stage's"
    );
}

#[test]
fn foreign_volume_with_a_stage_volume_name_is_named_not_used() {
    let image = busybox_image();
    let t = TestStack::new("foreign-volume");
    t.stack(&format!(
        r#"
services:
  api: {{ image: {image}, command: [sleep, "3600"], volumes: ["cache:/cache"] }}
tasks:
  hello: {{ image: {image}, command: [echo, hi], volumes: ["cache:/cache"] }}
volumes:
  cache: {{}}
"#
    ));
    let mut foreign = Foreign::new();
    let volume = format!("{}-{}_cache", t.stage, t.project);
    foreign.on_drop(&["volume", "rm", "-f", &volume]);
    docker_ok(&["volume", "create", &volume]);
    for args in [&["up"][..], &["exec", "hello"][..]] {
        let out = t.cmd().args(args).assert().failure();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains(&format!(
                "a volume that is not this stage's holds the name `{volume}`"
            )),
            "{args:?}: {stderr}"
        );
    }
    assert!(t.containers().is_empty(), "{:?}", t.containers());
    // Still the user's, unlabelled.
    assert_eq!(
        docker_ok(&["volume", "inspect", "--format", "{{json .Labels}}", &volume]).trim(),
        "null"
    );
}
