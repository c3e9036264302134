//! Context monitors against the real binary: parallel `up`s of stages sharing a context
//! leave one monitor (RELIABILITY 9); `version -v` lists it; `down` keeps it while another
//! running stage builds from the context, and `purge` of the last one ends it
//! (RELIABILITY 10).

mod support;

use std::path::{Path, PathBuf};

use support::{busybox_image, TestStack};

/// The monitors' cache directory of this test (`XDG_CACHE_HOME`), so only its own monitors
/// are seen; each left running when the test ends is stopped.
struct Monitors {
    cache: PathBuf,
}

impl Monitors {
    fn dir(&self) -> PathBuf {
        self.cache.join("stackctl").join("contexts")
    }

    /// PIDs written in the lock files (running or not).
    fn pids(&self) -> Vec<i32> {
        std::fs::read_dir(self.dir())
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "lock"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .filter_map(|text| text.lines().next()?.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Monitors {
    fn drop(&mut self) {
        for pid in self.pids() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("__monitor-context") {
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
    }
}

fn run(t: &TestStack, cache: &Path, stage: &str, args: &[&str]) -> String {
    let out = t
        .std_cmd()
        .env("STACKCTL_ENV", stage)
        .env("STACKCTL_CONTEXT_MONITOR", "on")
        .env("XDG_CACHE_HOME", cache)
        .args(args)
        .output()
        .expect("run stackctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?} on {stage}: {text}");
    text
}

/// The `monitors` lines of `version -v`: the count, and the contexts listed.
fn listed(t: &TestStack, cache: &Path) -> (String, Vec<String>) {
    let text = run(t, cache, &t.stage, &["-v", "version"]);
    let mut lines = text.lines().skip_while(|l| !l.starts_with("monitors"));
    let head = lines.next().unwrap_or_default().to_string();
    let contexts = lines
        .map(|l| l.split_whitespace().last().unwrap_or_default().to_string())
        .collect();
    (head, contexts)
}

#[test]
fn reliability9_10_one_monitor_per_context_listed_and_ended_with_the_last_stage_using_it() {
    let t = TestStack::new("monitors");
    let monitors = Monitors {
        cache: t.root.path().join("cache"),
    };
    let cache = monitors.cache.clone();
    let base = busybox_image();
    t.write("app/Dockerfile", &format!("FROM {base}\nCOPY . /ctx\n"))
        .write("app/hello.txt", "hello\n");
    let yaml =
        "services:\n  app:\n    build: app\n    command: [sleep, \"3600\"]\n    init: true\n";
    let stages: Vec<String> = (0..3).map(|n| format!("{}m{n}", t.stage)).collect();
    for stage in &stages {
        t.write(&format!("stacks/{stage}.yml"), yaml);
    }
    // Three stages of one context, `up` at once: one monitor.
    std::thread::scope(|scope| {
        for stage in &stages {
            let (t, cache) = (&t, &cache);
            scope.spawn(move || run(t, cache, stage, &["up"]));
        }
    });
    let context = t.path("app").display().to_string();
    let (head, contexts) = listed(&t, &cache);
    assert_eq!(
        head, "monitors  1 context monitor(s) running",
        "{contexts:?}"
    );
    assert_eq!(contexts, vec![context.clone()]);

    // `down` of two: the third still runs and builds from it.
    for stage in &stages[..2] {
        let said = run(&t, &cache, stage, &["down"]);
        assert!(!said.contains("ended the context monitor"), "{said}");
    }
    assert_eq!(listed(&t, &cache).1, vec![context.clone()]);
    // `purge` of the last: ended.
    let said = run(&t, &cache, &stages[2], &["purge", "--yes"]);
    assert!(
        said.contains(&format!("ended the context monitor of `{context}`")),
        "{said}"
    );
    let (head, contexts) = listed(&t, &cache);
    assert_eq!(
        head, "monitors  0 context monitor(s) running",
        "{contexts:?}"
    );
    for stage in &stages[..2] {
        run(&t, &cache, stage, &["purge", "--yes"]);
    }
}
