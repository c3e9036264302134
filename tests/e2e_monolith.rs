//! The monolith, end to end: two stages of one project (dev-like and qa-like) initialised
//! side by side on one host, each with its own containers, network, volumes and free host
//! port; the cron worker observed writing heartbeats; `test-db` recreating the test database;
//! both stages purged.
mod reference;
mod support;

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

    let started = Instant::now();
    let phase = |what: &str| eprintln!("[{:6.1}s] {what}", started.elapsed().as_secs_f64());
    stackctl(&ts, &dev, &["exec", "init"]).success();
    phase("dev initialised");
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

    // init loaded the dump, migrated and collected the static files, in each stage.
    for stage in [&dev, &qa] {
        let s = status(&ts, stage);
        assert_eq!(s["articles"], 3, "{stage}: {s}");
        assert_eq!(
            s["migrations"],
            serde_json::json!(["0001_heartbeats", "0002_article_slugs"])
        );
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
        "2",
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
