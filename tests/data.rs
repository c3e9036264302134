//! `stackctl data` against the real engine: save → purge → load gives the same bytes back in
//! a data container and a named volume; copy between two stages; a damaged archive, a load
//! into a volume that holds data without `--force`, and Ctrl-C in the middle of a load all
//! leave the target as it was; `data ls --json`; unknown names.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{busybox_image, docker, docker_ok, stage_objects, TestStack};

/// The fixture every test starts from: one service mounting a named volume `vol` at /vol
/// and the data container `store` (its volume /store).
fn stack_yaml() -> String {
    let image = busybox_image();
    format!(
        r#"
services:
  app:
    image: {image}
    init: true
    command: [sleep, "3600"]
    volumes: ["vol:/vol"]
    volumes_from: [store]
    healthcheck: {{ test: [CMD, "true"], interval: 500ms, retries: 20 }}
volumes:
  vol: {{}}
data_containers:
  store:
    image: {image}
    volumes: [/store]
"#
    )
}

/// A project with the fixture stack on its stage, up, with `mib` MiB of random data (plus
/// small files, a directory, a symlink, odd modes) in both the volume and the data container.
fn fixture(name: &str, mib: u32) -> TestStack {
    let t = TestStack::new(name);
    t.stack(&stack_yaml());
    t.cmd().arg("up").assert().success();
    populate(&t, &t.stage, mib);
    t
}

fn populate(t: &TestStack, stage: &str, mib: u32) {
    let app = format!("{stage}-{}--app", t.project);
    let script = format!(
        "set -e; for d in /vol /store; do \
           mkdir -p $d/sub/deeper; echo hello-$d > $d/hello.txt; : > $d/empty; \
           dd if=/dev/urandom of=$d/sub/random.bin bs=1024 count=300 2>/dev/null; \
           echo secret > $d/sub/deeper/mode600; chmod 600 $d/sub/deeper/mode600; \
           ln -sf hello.txt $d/link; done; \
         dd if=/dev/urandom of=/vol/big.bin bs=1048576 count={mib} 2>/dev/null; sync"
    );
    docker_ok(&["exec", &app, "sh", "-c", &script]);
}

/// Every path of the stage's volume and data container with its mode, owner, size and type,
/// and the sha256 of every file, read from a throwaway container (works with the stage's
/// services stopped or gone).
fn fingerprint(t: &TestStack, stage: &str) -> String {
    let store = format!("{stage}-{}--store", t.project);
    let volume = format!("{stage}-{}_vol", t.project);
    docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--volumes-from",
        &store,
        "-v",
        &format!("{volume}:/vol"),
        busybox_image(),
        "sh",
        "-c",
        "cd / && find vol store | sort | xargs stat -c '%n %a %u %s %F' \
         && find vol store -type f | sort | xargs sha256sum",
    ])
}

/// Names of leftovers of a load (staging volumes and containers `…-load-…`, helpers).
fn leftovers(t: &TestStack) -> Vec<String> {
    stage_objects(&t.project, &t.stage)
        .into_iter()
        .filter(|o| o.contains("-load-") || o.contains("--task-data-"))
        .collect()
}

fn app_state(t: &TestStack, stage: &str) -> String {
    docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Status}} {{.State.Health.Status}}",
        &format!("{stage}-{}--app", t.project),
    ])
    .trim()
    .to_string()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn save_purge_load_gives_byte_identical_files_in_the_volume_and_the_data_container() {
    let t = fixture("roundtrip", 2);
    let before = fingerprint(&t, &t.stage);
    assert!(before.contains("store/sub/random.bin"), "{before}");
    let archive = t.path("backup.tar.zst");
    t.cmd()
        .args(["data", "save", "-o"])
        .arg(&archive)
        .assert()
        .success();
    // The services were stopped for the read and are running (healthy) again.
    assert_eq!(app_state(&t, &t.stage), "running healthy");
    t.cmd().args(["purge", "--yes"]).assert().success();
    assert_eq!(stage_objects(&t.project, &t.stage), Vec::<String>::new());

    let out = t
        .cmd()
        .args(["data", "load", "-i"])
        .arg(&archive)
        .assert()
        .success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("checksums of the archive"), "{err}");
    assert_eq!(fingerprint(&t, &t.stage), before);
    assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
    // The stage runs on the loaded data.
    t.cmd().arg("up").assert().success();
    assert_eq!(fingerprint(&t, &t.stage), before);
}

#[test]
fn copy_between_two_stages_streams_the_data_and_ls_json_shows_it() {
    let t = fixture("copy", 1);
    let other = format!("{}b", t.stage);
    t.write(&format!("stacks/{other}.yml"), &stack_yaml());
    let before = fingerprint(&t, &t.stage);

    t.cmd()
        .env("STACKCTL_ENV", &other)
        .args(["data", "copy", "--from", &t.stage])
        .assert()
        .success();
    assert_eq!(fingerprint(&t, &other), before);
    assert_eq!(app_state(&t, &t.stage), "running healthy");

    let ls = |stage: &str| -> Vec<serde_json::Value> {
        let out = t
            .cmd()
            .env("STACKCTL_ENV", stage)
            .args(["--json", "data", "ls"])
            .assert()
            .success();
        String::from_utf8_lossy(&out.get_output().stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    };
    let source = ls(&t.stage);
    let target = ls(&other);
    assert_eq!(source.len(), 2, "{source:?}");
    let vol = &source[0];
    assert_eq!(vol["name"], "vol");
    assert_eq!(vol["kind"], "volume");
    assert_eq!(vol["exists"], true);
    assert_eq!(vol["used_by"], serde_json::json!(["app:/vol"]));
    // 1 MiB + 300 KiB + the small files.
    let size = vol["size"].as_u64().expect("size");
    assert!((1_355_000..1_400_000).contains(&size), "{size}");
    assert_eq!(source[1]["name"], "store");
    assert_eq!(source[1]["kind"], "data");
    assert_eq!(source[1]["path"], "/store");
    for (s, t) in source.iter().zip(&target) {
        assert_eq!(s["size"], t["size"]);
        assert_eq!(s["entries"], t["entries"]);
    }
}

#[test]
fn a_damaged_archive_is_refused_and_the_target_is_untouched() {
    let t = fixture("damaged", 1);
    let plain = t.path("plain.tar");
    let compressed = t.path("packed.tar.zst");
    t.cmd()
        .args(["data", "save", "--no-compress", "-o"])
        .arg(&plain)
        .assert()
        .success();
    t.cmd()
        .args(["data", "save", "-o"])
        .arg(&compressed)
        .assert()
        .success();
    // The layout: the manifest first, the parts, the checksums last.
    let listing = support::lines(&String::from_utf8_lossy(
        &std::process::Command::new("tar")
            .arg("tf")
            .arg(&plain)
            .output()
            .expect("tar")
            .stdout,
    ));
    assert_eq!(
        listing,
        vec![
            "manifest.json",
            "volumes/vol.tar.000000",
            "data/store/0.tar.000000",
            "checksums.json"
        ]
    );
    // New content in the stage after the save: a refused load must not bring the old back.
    populate(&t, &t.stage, 1);
    let before = fingerprint(&t, &t.stage);
    for archive in [&plain, &compressed] {
        let mut bytes = std::fs::read(archive).expect("read archive");
        let middle = bytes.len() / 2;
        for b in &mut bytes[middle..middle + 4] {
            *b ^= 0x5a;
        }
        let damaged = t.path("damaged");
        std::fs::write(&damaged, &bytes).expect("write damaged archive");
        let out = t
            .cmd()
            .args(["data", "load", "--force", "-i"])
            .arg(&damaged)
            .assert()
            .code(1);
        let err = stderr_of(out.get_output());
        assert!(err.contains("is refused"), "{err}");
        assert!(err.contains("left as it was"), "{err}");
        assert_eq!(fingerprint(&t, &t.stage), before, "{}", archive.display());
        assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
        assert_eq!(app_state(&t, &t.stage), "running healthy");
    }
    // Not an archive at all.
    let out = t
        .cmd()
        .args(["data", "load"])
        .write_stdin("hello, this is not an archive")
        .assert()
        .code(1);
    let err = stderr_of(out.get_output());
    assert!(err.contains("not a stackctl data archive"), "{err}");
}

/// RELIABILITY 6: an archive missing only its last 1-4 bytes (the zstd frame's checksum) was
/// loaded as if whole, so a pipeline verifying backups by loading them passed a damaged file.
/// The stream is read to its end: such an archive is refused and the target left as it was.
#[test]
fn reliability6_an_archive_missing_its_last_bytes_is_refused() {
    let t = fixture("cut-end", 0);
    let compressed = t.path("packed.tar.zst");
    let plain = t.path("plain.tar");
    t.cmd()
        .args(["data", "save", "-o"])
        .arg(&compressed)
        .assert()
        .success();
    t.cmd()
        .args(["data", "save", "--no-compress", "-o"])
        .arg(&plain)
        .assert()
        .success();
    populate(&t, &t.stage, 0);
    let before = fingerprint(&t, &t.stage);
    for (archive, cut) in [(&compressed, 1), (&compressed, 4), (&plain, 512)] {
        let bytes = std::fs::read(archive).expect("read archive");
        let damaged = t.path("damaged");
        std::fs::write(&damaged, &bytes[..bytes.len() - cut]).expect("write cut archive");
        let out = t
            .cmd()
            .args(["data", "load", "--force", "-i"])
            .arg(&damaged)
            .assert()
            .code(1);
        let err = stderr_of(out.get_output());
        assert!(
            err.contains("is refused"),
            "{} cut by {cut}: {err}",
            archive.display()
        );
        assert_eq!(
            fingerprint(&t, &t.stage),
            before,
            "{} cut by {cut}",
            archive.display()
        );
        assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
    }
    t.cmd()
        .args(["data", "load", "--force", "-i"])
        .arg(&compressed)
        .assert()
        .success();
}

#[test]
fn load_without_force_into_a_volume_that_holds_data_refuses() {
    let t = fixture("noforce", 1);
    let archive = t.path("backup.tar.zst");
    t.cmd()
        .args(["data", "save", "-o"])
        .arg(&archive)
        .assert()
        .success();
    docker_ok(&[
        "exec",
        &t.container("app"),
        "sh",
        "-c",
        "echo newer > /vol/hello.txt",
    ]);
    let before = fingerprint(&t, &t.stage);
    let out = t
        .cmd()
        .args(["data", "load", "-i"])
        .arg(&archive)
        .assert()
        .code(2);
    let err = stderr_of(out.get_output());
    assert!(err.contains("refusing to overwrite data"), "{err}");
    assert!(err.contains("volume `vol`"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(fingerprint(&t, &t.stage), before);
    assert_eq!(app_state(&t, &t.stage), "running healthy");
    // With --force the saved content comes back.
    t.cmd()
        .args(["data", "load", "--force", "-i"])
        .arg(&archive)
        .assert()
        .success();
    let after = docker_ok(&["exec", &t.container("app"), "cat", "/vol/hello.txt"]);
    assert_eq!(after.trim(), "hello-/vol");
}

/// Run `data load ARGS` on `stage`, write the first `cut` bytes of `archive` into its stdin,
/// interrupt it (stdin still open: the interrupt ends it, not an end of file), and return
/// its exit code and stderr.
fn interrupted_load(
    t: &TestStack,
    stage: &str,
    archive: &Path,
    cut: usize,
    args: &[&str],
) -> (i32, String) {
    let bytes = std::fs::read(archive).expect("read archive");
    let mut child = t
        .std_cmd()
        .env("STACKCTL_ENV", stage)
        .args(["data", "load"])
        .args(args)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run stackctl");
    let mut stdin = child.stdin.take().expect("stdin");
    // The write returns once stackctl has taken the bytes in (a pipe holds 64 KiB): it is
    // then in the middle of the stream, having prepared the stage before reading any data.
    stdin.write_all(&bytes[..cut]).expect("feed the archive");
    stdin.flush().expect("flush");
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "stackctl did not end after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).ok();
    (status.code().unwrap_or(-1), err)
}

#[test]
fn sigint_in_the_middle_of_a_load_leaves_the_target_as_it_was() {
    let t = fixture("sigint", 48);
    let archive = t.path("big.tar");
    t.cmd()
        .args(["data", "save", "--no-compress", "-o"])
        .arg(&archive)
        .assert()
        .success();
    // A stage holding other data (--force: loaded beside it, swapped only at the end).
    docker_ok(&[
        "exec",
        &t.container("app"),
        "sh",
        "-c",
        "rm /vol/big.bin; echo other > /store/hello.txt",
    ]);
    let before = fingerprint(&t, &t.stage);
    let stage = t.stage.clone();
    let (code, err) = interrupted_load(&t, &stage, &archive, 24 << 20, &["--force"]);
    assert_eq!(code, 130, "{err}");
    assert_eq!(fingerprint(&t, &t.stage), before, "{err}");
    assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
    assert_eq!(app_state(&t, &t.stage), "running healthy");

    // An empty stage (its volume is loaded in place): emptied again.
    let other = format!("{}b", t.stage);
    t.write(&format!("stacks/{other}.yml"), &stack_yaml());
    t.cmd()
        .env("STACKCTL_ENV", &other)
        .arg("up")
        .assert()
        .success();
    let empty = fingerprint(&t, &other);
    let (code, err) = interrupted_load(&t, &other, &archive, 24 << 20, &[]);
    assert_eq!(code, 130, "{err}");
    assert_eq!(fingerprint(&t, &other), empty, "{err}");
    assert_eq!(app_state(&t, &other), "running healthy");
    let staged: Vec<String> = stage_objects(&t.project, &other)
        .into_iter()
        .filter(|o| o.contains("-load-") || o.contains("--task-data-"))
        .collect();
    assert!(staged.is_empty(), "{staged:?}");
}

#[test]
fn sigint_in_the_middle_of_a_save_leaves_no_archive_and_the_services_running() {
    let t = fixture("sigintsave", 48);
    let archive = t.path("backup.tar");
    let mut child = t
        .std_cmd()
        .args(["data", "save", "--no-compress", "-o"])
        .arg(&archive)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run stackctl");
    // In the middle of the stream: its temporary file holds some of it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let partial = loop {
        let found = std::fs::read_dir(&t.dir)
            .expect("read project dir")
            .flatten()
            .find(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".backup.tar.partial-")
            })
            .filter(|e| e.metadata().map(|m| m.len() > 8 << 20).unwrap_or(false));
        if let Some(entry) = found {
            break entry.path();
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "stackctl ended before it wrote 8 MiB"
        );
        assert!(Instant::now() < deadline, "no partial archive appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "stackctl did not end after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).ok();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(!partial.exists(), "the partial archive is left: {err}");
    assert!(!archive.exists(), "an archive appeared: {err}");
    assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
    assert_eq!(app_state(&t, &t.stage), "running healthy");
}

#[test]
fn unknown_names_exit_2_with_the_known_ones() {
    let t = TestStack::new("names");
    t.stack(&stack_yaml());
    let out = t
        .cmd()
        .args(["data", "save", "nope", "-o", "x.tar"])
        .assert()
        .code(2);
    let err = stderr_of(out.get_output());
    assert!(err.contains("no volume or data container `nope`"), "{err}");
    assert!(err.contains("known: vol, store"), "{err}");
    let out = t
        .cmd()
        .args(["data", "copy", "--from", "elsewhere"])
        .assert()
        .code(2);
    let err = stderr_of(out.get_output());
    assert!(err.contains("stage `elsewhere` has no stack file"), "{err}");
    // `--json` events and the archive would share stdout.
    let out = t.cmd().args(["--json", "data", "save"]).assert().code(2);
    let err = stderr_of(out.get_output());
    assert!(err.contains("`--json` prints events on stdout"), "{err}");
    // Each subcommand's help shows an example.
    for sub in [
        &["data"][..],
        &["data", "ls"],
        &["data", "save"],
        &["data", "load"],
        &["data", "copy"],
    ] {
        let out = t.cmd().args(sub).arg("--help").assert().success();
        let help = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(help.contains("Example"), "{sub:?}: {help}");
    }
    // An archive of another project (a hand-made one: its manifest is all that is read).
    let manifest = br#"{"format":"stackctl-data/1","project":"other","stage":"dev","stackctl_version":"0","created":"2026-01-01T00:00:00Z","compression":"none","items":[]}"#;
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "manifest.json", &manifest[..])
        .expect("tar");
    let foreign = builder.into_inner().expect("tar");
    let out = t
        .cmd()
        .args(["data", "load"])
        .write_stdin(foreign)
        .assert()
        .code(2);
    let err = stderr_of(out.get_output());
    assert!(err.contains("holds data of project `other`"), "{err}");
    // Nothing was created on the engine.
    assert!(docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=io.stackctl.project={}", t.project)
    ])
    .trim()
    .is_empty());
}

/// RELIABILITY 7: a data container whose image has no `CMD` (a `FROM scratch` image of files,
/// never meant to run) failed `up` with the engine's "No command specified". It is created
/// with a placeholder command (it is never started); its files reach the services that take
/// its volumes, and the next `up` keeps it (the placeholder is not part of its config hash).
#[test]
fn reliability7_a_data_container_whose_image_has_no_command_is_created() {
    let t = TestStack::new("data-no-cmd");
    let image = busybox_image();
    t.write(
        "seed/Dockerfile",
        "FROM scratch\nCOPY seed.txt /seed/seed.txt\n",
    );
    t.write("seed/seed.txt", "seeded\n");
    t.stack(&format!(
        r#"
services:
  app:
    image: {image}
    init: true
    command: [sleep, "3600"]
    volumes_from: [seed]
data_containers:
  seed:
    build: seed
    volumes: [/seed]
"#
    ));
    let out = t.cmd().arg("up").output().expect("run stackctl");
    assert!(out.status.success(), "{}", stderr_of(&out));
    let seeded = docker_ok(&["exec", &t.container("app"), "cat", "/seed/seed.txt"]);
    assert_eq!(seeded.trim(), "seeded");
    let id = |name: &str| docker_ok(&["inspect", "--format", "{{.Id}}", name]);
    let before = id(&t.container("seed"));
    let out = t.cmd().arg("up").output().expect("run stackctl");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        id(&t.container("seed")),
        before,
        "the data container was kept"
    );
}

/// RELIABILITY 5: `data load` printed bytes of an untrusted archive raw: a manifest whose
/// project name holds escape sequences set the terminal's title and colour through the error
/// message. Control characters are shown escaped.
#[test]
fn reliability5_an_archives_control_characters_are_escaped_in_messages() {
    let t = TestStack::new("escape");
    t.stack("services: {}\nvolumes:\n  vol: {}\n");
    let manifest = serde_json::json!({
        "format": "stackctl-data/1",
        "project": "\u{1b}]0;PWNED\u{7}\u{1b}[31mevil",
        "stage": "x\ry",
        "stackctl_version": "0",
        "created": "2024-01-01T00:00:00Z",
        "compression": "none",
        "items": [],
    });
    let dir = t.path("archive");
    std::fs::create_dir_all(&dir).expect("archive dir");
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).expect("write manifest");
    let archive = t.path("evil.tar");
    let status = std::process::Command::new("tar")
        .arg("cf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir)
        .arg("manifest.json")
        .status()
        .expect("run tar");
    assert!(status.success());
    let out = t
        .cmd()
        .args(["data", "load", "-i"])
        .arg(&archive)
        .output()
        .expect("run stackctl");
    let err = stderr_of(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("holds data of project"), "{err}");
    assert!(
        !err.contains('\u{1b}') && !err.contains('\u{7}') && !err.contains('\r'),
        "{err:?}"
    );
    assert!(err.contains(r"`\x1b]0;PWNED\x07\x1b[31mevil`"), "{err}");
    assert!(err.contains(r"`x\x0dy`"), "{err}");
}

/// Spawn `stackctl ARGS` on the test's stage, read its stderr until a line containing
/// `phase`, send `signal`, and return its exit code (None: killed) and all its stderr.
fn signal_at(t: &TestStack, args: &[&str], phase: &str, signal: i32) -> (Option<i32>, String) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = t
        .std_cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stackctl");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = stderr.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "`{phase}` never came: {seen}");
        seen.push_str(&line);
        if line.contains(phase) {
            break;
        }
    }
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    stderr.read_to_string(&mut seen).expect("read stderr");
    let status = child.wait().expect("wait");
    (status.code(), seen)
}

fn partials(t: &TestStack, name: &str) -> Vec<String> {
    std::fs::read_dir(&t.dir)
        .expect("read project dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!(".{name}.partial-")))
        .collect()
}

#[test]
fn reliability2_sigint_while_save_stops_the_services_starts_them_again_and_removes_the_partial() {
    let t = fixture("r2stop", 0);
    // A grace the stop has to wait out: the interrupt comes while it is in flight.
    t.stack(&stack_yaml().replace("    init: true\n", "    stop_grace_period: 2s\n"));
    t.cmd().arg("up").assert().success();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    let (code, err) = signal_at(
        &t,
        &["data", "save", "-o", "x.tar.zst"],
        "app: stopping",
        libc::SIGINT,
    );
    assert_eq!(code, Some(130), "{err}");
    // When stackctl has exited, the stop it had asked for is over and the service was
    // started after it (before the fix it exited at once and the stop ended later).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    let events = docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &format!("{}.{:09}", now.as_secs(), now.subsec_nanos()),
        "--filter",
        &format!("container={}", t.container("app")),
        "--filter",
        "event=die",
        "--filter",
        "event=start",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(support::lines(&events), vec!["die", "start"], "{err}");
    assert_eq!(app_state(&t, &t.stage), "running healthy", "{err}");
    assert_eq!(partials(&t, "x.tar.zst"), Vec::<String>::new(), "{err}");
    assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
}

#[test]
fn reliability3_what_killed_loads_and_saves_leave_the_next_command_removes() {
    let t = fixture("r3kill", 0);
    let archive = t.path("a.tar");
    t.cmd()
        .args(["data", "save", "--no-compress", "-o"])
        .arg(&archive)
        .assert()
        .success();
    docker_ok(&[
        "exec",
        &t.container("app"),
        "sh",
        "-c",
        "echo other > /vol/hello.txt; echo other > /store/hello.txt",
    ]);
    let before = fingerprint(&t, &t.stage);
    // Killed while the staged copies fill: they stay, and `up` removes them.
    let (code, err) = signal_at(
        &t,
        &["data", "load", "--force", "-i", "a.tar"],
        "store: loading",
        libc::SIGKILL,
    );
    assert_eq!(code, None, "{err}");
    assert!(!leftovers(&t).is_empty(), "nothing staged: {err}");
    let out = t.cmd().arg("up").assert().success();
    let said = stderr_of(out.get_output());
    assert!(said.contains("an unfinished copy"), "{said}");
    assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
    assert_eq!(fingerprint(&t, &t.stage), before);
    assert_eq!(app_state(&t, &t.stage), "running healthy");

    // A killed save's partial file: the next save removes it.
    let (code, err) = signal_at(
        &t,
        &["data", "save", "-o", "b.tar.zst"],
        "vol: saving",
        libc::SIGKILL,
    );
    assert_eq!(code, None, "{err}");
    assert_eq!(partials(&t, "b.tar.zst").len(), 1, "{err}");
    t.cmd().arg("up").assert().success();
    let out = t
        .cmd()
        .args(["data", "save", "-o", "b.tar.zst"])
        .assert()
        .success();
    let said = stderr_of(out.get_output());
    assert!(
        said.contains("left by a save that did not finish"),
        "{said}"
    );
    assert_eq!(partials(&t, "b.tar.zst"), Vec::<String>::new());
    assert!(t.path("b.tar.zst").exists());
}

#[test]
fn reliability3_services_a_killed_save_stopped_are_started_by_the_next_up() {
    let t = fixture("r3stopped", 0);
    // A grace the stop has to wait out: the kill comes while it is in flight.
    t.stack(&stack_yaml().replace("    init: true\n", "    stop_grace_period: 2s\n"));
    t.cmd().arg("up").assert().success();
    let unix_now = || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock");
        format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
    };
    let since = unix_now();
    let (code, err) = signal_at(
        &t,
        &["data", "save", "-o", "x.tar.zst"],
        "app: stopping",
        libc::SIGKILL,
    );
    assert_eq!(code, None, "{err}");
    // The next `up` waits out the stop still under way and starts the service: when it
    // has exited, the service died and started again (before, `up` found it still
    // running, did nothing, and the stop ended after it).
    let out = t.cmd().arg("up").assert().success();
    let said = stderr_of(out.get_output());
    assert!(
        said.contains("started again the services it had stopped: app"),
        "{said}"
    );
    let events = docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &unix_now(),
        "--filter",
        &format!("container={}", t.container("app")),
        "--filter",
        "event=die",
        "--filter",
        "event=start",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(
        support::lines(&events).last().map(String::as_str),
        Some("start"),
        "{events}"
    );
    assert_eq!(app_state(&t, &t.stage), "running healthy");
    assert!(leftovers(&t).is_empty(), "{:?}", leftovers(&t));
}
