//! Deploys of new commits against the real engine: with a per-commit image tag
//! (`image: …:${TAG}`), an `up` of a commit that changes nothing keeps every container, and
//! one that changes a build context recreates only the services built from it; services
//! sharing one build context build it once.

mod support;

use support::{busybox_image, docker_ok, TestStack};

fn stack(t: &TestStack) {
    let base = busybox_image();
    t.stack(&format!(
        r#"services:
  db:
    image: "{project}/db:${{TAG}}"
    build: db
    command: [sleep, "3600"]
    stop_signal: SIGKILL
  app:
    image: "{project}/app:${{TAG}}"
    build: app
    command: [sleep, "3600"]
    stop_signal: SIGKILL
  app-cron:
    build: app
    command: [sleep, "3601"]
    stop_signal: SIGKILL
"#,
        project = t.project
    ));
    t.write(
        "db/Dockerfile",
        &format!("FROM {base}\nCOPY schema.sql /\n"),
    )
    .write("db/schema.sql", "create table t (id int);\n")
    .write(
        "app/Dockerfile",
        &format!("FROM {base}\nCOPY index.html /\n"),
    )
    .write("app/index.html", "<p>one</p>\n");
}

/// `up` with `TAG=tag`, as JSON events: (object, action) of each.
fn up(t: &TestStack, tag: &str) -> Vec<(String, String)> {
    let out = t
        .cmd()
        .args(["--json", "up"])
        .env("TAG", tag)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8_lossy(&out)
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).expect("one JSON event per line");
            (
                e["object"].as_str().unwrap_or_default().to_string(),
                e["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn id(t: &TestStack, service: &str) -> String {
    docker_ok(&["inspect", "--format", "{{.Id}}", &t.container(service)])
        .trim()
        .to_string()
}

fn ids(t: &TestStack) -> [String; 3] {
    [id(t, "db"), id(t, "app"), id(t, "app-cron")]
}

fn image_id(reference: &str) -> String {
    docker_ok(&["image", "inspect", "--format", "{{.Id}}", reference])
        .trim()
        .to_string()
}

#[test]
fn a_new_tag_keeps_what_did_not_change_and_a_shared_context_builds_once() {
    let t = TestStack::new("deploy-tags");
    stack(&t);

    let first = up(&t, "c1");
    let builds: Vec<&String> = first
        .iter()
        .filter(|(_, action)| action == "building")
        .map(|(object, _)| object)
        .collect();
    let app = format!("{}/app:c1", t.project);
    let cron = format!("{}/app-cron:{}", t.project, t.stage);
    // app and app-cron share their context: one build, both tags.
    assert_eq!(builds.len(), 2, "{first:?}");
    assert_eq!(image_id(&app), image_id(&cron));
    let before = ids(&t);

    // A new commit with no change: the images are built again under the new tag, and are
    // the same images; no container is recreated.
    let second = up(&t, "c2");
    assert!(
        !second
            .iter()
            .any(|(_, action)| action == "recreate" || action == "create"),
        "{second:?}"
    );
    assert_eq!(ids(&t), before, "{second:?}");
    assert_eq!(
        image_id(&format!("{}/app:c2", t.project)),
        image_id(&app),
        "identical builds under two tags are one image"
    );

    // A change to the app's code: app and app-cron are recreated, the database is not.
    t.write("app/index.html", "<p>two</p>\n");
    let third = up(&t, "c3");
    let [db, app_id, cron_id] = ids(&t);
    assert_eq!(db, before[0], "{third:?}");
    assert_ne!(app_id, before[1], "{third:?}");
    assert_ne!(cron_id, before[2], "{third:?}");
    assert_eq!(
        image_id(&format!("{}/app:c3", t.project)),
        image_id(&cron),
        "{third:?}"
    );

    // The tags stackctl gave go with `purge`, the old commits' too.
    t.cmd().args(["purge", "--yes"]).assert().success();
    for tag in ["db:c1", "db:c2", "db:c3", "app:c1", "app:c2", "app:c3"] {
        let reference = format!("{}/{tag}", t.project);
        assert!(
            support::docker(&["image", "inspect", "--format", "{{.Id}}", &reference])
                .trim()
                .is_empty(),
            "purge left {reference}"
        );
    }
}
