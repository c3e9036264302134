//! The monolith, end to end: two stages of one project (dev-like and qa-like) initialised
//! side by side on one host, each with its own containers, network, volumes and free host
//! port; the app never serving before its `pre_start` migration ran (on the first `up` and
//! on an `up` bringing a new migration), seen by a request loop running through both; the
//! cron worker observed writing heartbeats; `test-db` recreating the test database; both
//! stages purged.
mod reference;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reference::Request;
use support::TestStack;

const LONG: Duration = Duration::from_secs(600);

/// The monolith copied into a fresh test project; `stage` is one of its stages.
fn stackctl(ts: &TestStack, stage: &str, args: &[&str]) -> assert_cmd::assert::Assert {
    ts.cmd()
        .env("STACKCTL_ENV", stage)
        .envs(reference::fixture_env())
        .args(args)
        .timeout(LONG)
        .assert()
}

fn container(ts: &TestStack, stage: &str, service: &str) -> String {
    format!("{stage}-{}--{service}", ts.project)
}

fn base_url(ts: &TestStack, stage: &str) -> String {
    format!(
        "http://{}",
        reference::published(&container(ts, stage, "app"), 8000)
    )
}

fn status(ts: &TestStack, stage: &str) -> serde_json::Value {
    let response = Request::get(&format!("{}/api/status", base_url(ts, stage))).send();
    assert_eq!(response.status, 200, "{}", response.body);
    response.json()
}

/// Rows of a query in one of the stage's databases, through `exec` into the running
/// postgres service.
fn query(ts: &TestStack, stage: &str, database: &str, sql: &str) -> String {
    let out = stackctl(
        ts,
        stage,
        &[
            "exec", "postgres", "--", "psql", "-U", "monolith", "-d", database, "-tAc", sql,
        ],
    )
    .success();
    String::from_utf8_lossy(&out.get_output().stdout)
        .trim()
        .to_string()
}

/// Requests `GET /api/status` on `url` again and again until stopped; every answer the app
/// gave (status and body), in order. Refused connections (no container listening yet, or a
/// recreate in progress) are not answers.
struct RequestLoop {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(u16, String)>>,
}

impl RequestLoop {
    fn start(url: String) -> RequestLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut answers = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match Request::get(&url).try_send() {
                    Some(r) => answers.push((r.status, r.body)),
                    // Nothing listens yet: ask again soon, without spinning.
                    None => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            answers
        });
        RequestLoop { stop, thread }
    }

    fn finish(self) -> Vec<(u16, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("request loop")
    }
}

/// Every answer is a 200 whose status lists no pending migration and `applied` as the
/// applied ones, and there is at least one.
fn assert_served_migrated(what: &str, answers: &[(u16, String)], applied: &[&str]) {
    assert!(!answers.is_empty(), "{what}: the app never answered");
    for (n, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{what}: answer {n}: {body}");
        let s: serde_json::Value = serde_json::from_str(body).expect("status JSON");
        assert_eq!(
            s["pending"],
            serde_json::json!([]),
            "{what}: answer {n} of {} was served before the migration ran: {s}",
            answers.len()
        );
        let migrations: Vec<&str> = s["migrations"]
            .as_array()
            .expect("migrations[]")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        for name in applied {
            assert!(migrations.contains(name), "{what}: answer {n}: {s}");
        }
        assert_eq!(
            s["articles"], 3,
            "{what}: answer {n}: the dump is loaded: {s}"
        );
    }
}

#[test]
fn monolith_stages_run_side_by_side_with_cron_and_test_db() {
    reference::base_images();
    let ts = TestStack::new("monolith");
    reference::copy_tree(&reference::repo().join("examples/monolith"), &ts.dir);
    let dev = ts.stage.clone();
    let qa = format!("{}qa", ts.stage);

    // The full profile (images from a registry) is a valid stack file too.
    stackctl(&ts, &dev, &["init", "--env", &dev, "--no-run"]).success();
    let services = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["config", "--services"];
        args.extend_from_slice(extra);
        let out = stackctl(&ts, &dev, &args).success();
        support::lines(&String::from_utf8_lossy(&out.get_output().stdout))
    };
    assert_eq!(
        services(&[]),
        ["postgres", "redis", "front", "app", "app-cron"],
        "the registry-only services stay out by default"
    );
    assert_eq!(
        services(&["--profile", "full"]),
        [
            "postgres",
            "redis",
            "front",
            "app",
            "app-cron",
            "clickhouse",
            "mail",
            "proxy"
        ]
    );

    // dev's app on a known port, so a request loop can run from before the first `up`.
    let port = reference::free_port();
    let env_file = ts.dir.join(format!(".env.{dev}"));
    let env = std::fs::read_to_string(&env_file).expect("read .env");
    assert!(env.contains("\nAPP_PORT=\n"), "{env}");
    std::fs::write(
        &env_file,
        env.replace("\nAPP_PORT=\n", &format!("\nAPP_PORT={port}\n")),
    )
    .expect("write .env");
    let status_url = format!("http://127.0.0.1:{port}/api/status");

    let started = Instant::now();
    let phase = |what: &str| eprintln!("[{:6.1}s] {what}", started.elapsed().as_secs_f64());
    let requests = RequestLoop::start(status_url.clone());
    let init = stackctl(&ts, &dev, &["exec", "init"]).success();
    phase("dev initialised");
    // `up` returned once app was healthy: the loop has answers; it ran since before `up`.
    reference::wait_for("an answer from dev's app", Duration::from_secs(30), || {
        Request::get(&status_url).try_send().map(|_| ())
    });
    let answers = requests.finish();
    assert_served_migrated(
        "first up",
        &answers,
        &["0001_heartbeats", "0002_article_slugs"],
    );
    phase(&format!(
        "{} answers during the first up, all migrated",
        answers.len()
    ));
    // The up's own lines show the steps.
    let output = String::from_utf8_lossy(&init.get_output().stderr).to_string()
        + &String::from_utf8_lossy(&init.get_output().stdout);
    for step in [
        "pre_start 1/2 (task migrate) done",
        "pre_start 2/2 (task collect-static) done",
    ] {
        assert!(output.contains(step), "{step}: {output}");
    }
    // The app's own test suite, as the CI example's job runs it (issue 22): a one-off
    // container of the app's image on the stage network, its exit code kept.
    let tests = stackctl(&ts, &dev, &["exec", "tests"]).success();
    let output = String::from_utf8_lossy(&tests.get_output().stderr).to_string();
    assert!(
        output.contains("Ran 4 tests") && output.contains("\nOK"),
        "{output}"
    );

    // A new migration: `up` rebuilds the image, migrates in a one-off container of the new
    // image while the old app serves, and only then swaps the containers.
    let migrations = ts.dir.join("app/migrations.py");
    let code = std::fs::read_to_string(&migrations).expect("read migrations.py");
    let code = code.trim_end().strip_suffix(']').expect("MIGRATIONS ends the file").to_string()
        + "    (\"0003_article_views\", \"ALTER TABLE articles ADD COLUMN views integer NOT NULL DEFAULT 0\"),\n]\n";
    std::fs::write(&migrations, code).expect("write migrations.py");
    let requests = RequestLoop::start(status_url.clone());
    stackctl(&ts, &dev, &["up"]).success();
    reference::wait_for("the new app's answer", Duration::from_secs(30), || {
        let r = Request::get(&status_url).try_send()?;
        r.body.contains("0003_article_views").then_some(())
    });
    let answers = requests.finish();
    assert_served_migrated(
        "up with a new migration",
        &answers,
        &["0001_heartbeats", "0002_article_slugs"],
    );
    assert!(
        answers
            .iter()
            .any(|(_, b)| b.contains("0003_article_views")),
        "the new app answered"
    );
    phase(&format!(
        "{} answers during the migrating up, none pending",
        answers.len()
    ));
    // dev's app-cron has been running since before this instant.
    let dev_ready = Instant::now();
    stackctl(&ts, &qa, &["init", "--env", &qa]).success();
    phase("qa initialised");

    // Both stages run at once, each with its own containers and host port.
    for stage in [&dev, &qa] {
        for service in ["postgres", "redis", "app", "app-cron"] {
            let name = container(&ts, stage, service);
            let state = support::docker_ok(&["inspect", "-f", "{{.State.Status}}", &name]);
            assert_eq!(state.trim(), "running", "{name}");
        }
        let front = support::docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            &container(&ts, stage, "front"),
        ]);
        assert_eq!(front.trim(), "exited 0", "the front builder ran once");
    }
    assert_ne!(base_url(&ts, &dev), base_url(&ts, &qa));

    // In each stage the database was created from the dump, and app's pre_start migrated
    // it (qa's image has the third migration from the start) and collected the static files.
    for stage in [&dev, &qa] {
        let s = status(&ts, stage);
        assert_eq!(s["articles"], 3, "{stage}: {s}");
        assert_eq!(
            s["migrations"],
            serde_json::json!([
                "0001_heartbeats",
                "0002_article_slugs",
                "0003_article_views"
            ]),
            "{stage}"
        );
        assert_eq!(s["pending"], serde_json::json!([]), "{stage}");
        let files: Vec<&str> = s["static"]
            .as_array()
            .expect("static[]")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(files.contains(&"front/manifest.json"), "{files:?}");
        assert!(files.contains(&"app/site.css"), "{files:?}");
        let css = files
            .iter()
            .find(|f| f.starts_with("front/app.") && f.ends_with(".css"))
            .expect("the built stylesheet");
        let page = Request::get(&format!("{}/", base_url(&ts, stage))).send();
        assert_eq!(page.status, 200);
        assert!(
            page.body.contains("Welcome to the monolith"),
            "{}",
            page.body
        );
        assert!(page.body.contains(&format!("/static/{css}")));
        let served = Request::get(&format!("{}/static/{css}", base_url(&ts, stage))).send();
        assert_eq!(served.status, 200);
    }

    // Each stage has its own Redis: visits count separately.
    let visits = |stage: &str| -> String {
        let body = Request::get(&format!("{}/", base_url(&ts, stage)))
            .send()
            .body;
        body.split("visits: ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .expect("visit counter")
            .to_string()
    };
    let dev_before: u64 = visits(&dev).parse().expect("number");
    let qa_before: u64 = visits(&qa).parse().expect("number");
    assert_eq!(visits(&dev), (dev_before + 1).to_string());
    assert_eq!(visits(&qa), (qa_before + 1).to_string());

    phase("both stages checked");

    // test-db drops, creates and loads the test database: a stray row disappears.
    stackctl(&ts, &dev, &["exec", "test-db"]).success();
    assert_eq!(
        query(&ts, &dev, "monolith_test", "SELECT count(*) FROM articles"),
        "3"
    );
    query(
        &ts,
        &dev,
        "monolith_test",
        "INSERT INTO articles (title, body) VALUES ('stray', 'row')",
    );
    assert_eq!(
        query(&ts, &dev, "monolith_test", "SELECT count(*) FROM articles"),
        "4"
    );
    stackctl(&ts, &dev, &["exec", "test-db"]).success();
    assert_eq!(
        query(&ts, &dev, "monolith_test", "SELECT count(*) FROM articles"),
        "3"
    );
    assert_eq!(
        query(
            &ts,
            &dev,
            "monolith_test",
            "SELECT count(*) FROM schema_migrations"
        ),
        "3",
        "the test database is migrated"
    );
    assert_eq!(
        query(&ts, &qa, "monolith", "SELECT count(*) FROM articles"),
        "3",
        "qa's database is untouched"
    );

    phase("test-db checked");

    // The cron worker runs every minute: a heartbeat appears within a minute of cron's start
    // (plus the job's own run time), and cron started before `dev_ready`.
    let remaining = Duration::from_secs(90).saturating_sub(dev_ready.elapsed());
    reference::wait_for(
        "a cron heartbeat in stage dev",
        remaining.max(Duration::from_secs(5)),
        || {
            let s = status(&ts, &dev);
            (s["heartbeats"].as_u64().unwrap_or(0) >= 1).then_some(())
        },
    );

    phase("heartbeat seen");

    // purge each stage: nothing with its labels is left, and the other stage is untouched
    // until its own purge.
    stackctl(&ts, &dev, &["purge", "--yes"]).success();
    let labels = |stage: &str| support::stage_objects(&ts.project, stage);
    assert!(labels(&dev).is_empty(), "purge left {:?}", labels(&dev));
    assert_eq!(status(&ts, &qa)["articles"], 3, "qa still serves");
    stackctl(&ts, &qa, &["purge", "--yes"]).success();
    assert!(labels(&qa).is_empty(), "purge left {:?}", labels(&qa));
    phase("both stages purged");
}
