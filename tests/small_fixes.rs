//! Smaller fixes from the first-hour tries, against the real binary and engine: an `up` whose
//! new published port is taken fails before it stops the running service; `ls` in a Compose
//! project names the Compose file; `--no-color`.

mod support;

use std::net::TcpListener;

use support::{busybox_image, docker_ok, on_terminal, TestStack};

fn inspect(container: &str, format: &str) -> String {
    docker_ok(&["inspect", "--format", format, container])
        .trim()
        .to_string()
}

#[test]
fn a_taken_new_port_fails_the_up_and_leaves_the_service_running() {
    let t = TestStack::new("port-taken");
    let image = busybox_image();
    t.stack(&format!(
        "services:\n  web:\n    image: {image}\n    command: [sleep, \"3600\"]\n    stop_signal: SIGKILL\n    ports: [\"127.0.0.1:${{WEB_PORT}}:80\"]\n"
    ));
    // A port free now (the engine takes it), and one this test holds.
    let free = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let held = TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let taken = held.local_addr().expect("address").port();

    t.cmd()
        .arg("up")
        .env("WEB_PORT", free.to_string())
        .assert()
        .success();
    let container = t.container("web");
    let id = inspect(&container, "{{.Id}}");

    let out = t
        .cmd()
        .arg("up")
        .env("WEB_PORT", taken.to_string())
        .output()
        .expect("run stackctl");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("port {taken} is already allocated")),
        "{stderr}"
    );
    assert!(stderr.contains("hint: set WEB_PORT"), "{stderr}");
    // Nothing was stopped: the same container, still running.
    assert_eq!(inspect(&container, "{{.Id}}"), id);
    assert_eq!(inspect(&container, "{{.State.Running}}"), "true");
    drop(held);
}

#[test]
fn ls_in_a_compose_project_names_the_compose_file() {
    let t = TestStack::new("ls-compose");
    std::fs::remove_dir(t.path("stacks")).expect("no stacks/");
    t.write(
        "compose.yaml",
        &format!(
            "services:\n  web:\n    image: {}\n    command: [sleep, \"3600\"]\n",
            busybox_image()
        ),
    );
    let out = t
        .cmd()
        .args(["--json", "ls"])
        .output()
        .expect("run stackctl");
    assert!(out.status.success(), "{out:?}");
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per stage"))
        .collect();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["stage"], t.stage.as_str());
    assert_eq!(rows[0]["file"], "compose.yaml");
    assert_eq!(rows[0]["state"], "absent");

    let out = t.cmd().arg("ls").output().expect("run stackctl");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("compose.yaml"), "{table}");
}

#[test]
fn no_color_turns_colours_off_before_or_after_the_command() {
    let t = TestStack::new("no-color");
    t.stack(&format!(
        "services:\n  web:\n    image: {}\n",
        busybox_image()
    ));
    // On a terminal, NO_COLOR empty: the warning is coloured.
    let colour = std::ffi::OsStr::new("");
    let (coloured, code) = on_terminal(&t, "build web", &[("NO_COLOR", colour)]);
    assert_eq!(code, 0, "{coloured}");
    assert!(coloured.contains("\x1b[33mwarning"), "{coloured:?}");
    for args in ["--no-color build web", "build web --no-color"] {
        let (plain, code) = on_terminal(&t, args, &[("NO_COLOR", colour)]);
        assert_eq!(code, 0, "{plain}");
        assert!(
            plain.contains("warning: `web` has no `build:`"),
            "{plain:?}"
        );
        assert!(!plain.contains('\x1b'), "{args}: {plain:?}");
    }
}
