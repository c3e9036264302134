//! The starter, end to end, as a user runs it: the repository's templates rendered by
//! `stackctl init` (which runs `up`, `resetdb` and `import`), then the pxcodes API over HTTP,
//! data surviving `down` + `up`, and `purge` leaving nothing with the stage's labels.
mod reference;
mod support;

use std::time::Duration;

use reference::{Request, Response};
use serde_json::json;
use support::TestStack;

const LONG: Duration = Duration::from_secs(600);

struct Starter {
    ts: TestStack,
    api_port: u16,
    db_port: u16,
}

impl Starter {
    fn new() -> Starter {
        reference::base_images();
        let ts = TestStack::new("starter");
        let repo = reference::repo();
        reference::copy_tree(&repo.join("templates"), &ts.path("templates"));
        reference::copy_tree(&repo.join("examples/starter"), &ts.path("examples/starter"));
        Starter {
            ts,
            api_port: reference::free_port(),
            db_port: reference::free_port(),
        }
    }

    /// stackctl in the test project, on its stage, pointed at the offline base images and
    /// the test's own ports (the process environment overrides `.env.STAGE`).
    fn stackctl(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.ts
            .cmd()
            .envs(reference::fixture_env())
            .env("API_PORT", self.api_port.to_string())
            .env("DB_PORT", self.db_port.to_string())
            .args(args)
            .timeout(LONG)
            .assert()
    }

    fn url(&self, rest: &str) -> String {
        format!("http://127.0.0.1:{}/api/v1.0/pxcodes/{rest}", self.api_port)
    }

    fn password(&self) -> String {
        let env = self.ts.path(&format!(".env.{}", self.ts.stage));
        reference::env_value(&env, "ADMIN_PASSWORD")
    }

    fn get(&self, rest: &str) -> Response {
        Request::get(&self.url(rest))
            .auth("admin", &self.password())
            .send()
    }

    /// Wait until the API answers (after `up`, the first request may race the server).
    fn wait_ready(&self) {
        reference::wait_for("the API to answer", Duration::from_secs(60), || {
            Request::get(&self.url(""))
                .auth("admin", &self.password())
                .try_send()
                .filter(|r| r.status == 200)
        });
    }
}

#[test]
fn starter_serves_pxcodes_keeps_data_and_purges_cleanly() {
    let s = Starter::new();
    let stage = s.ts.stage.clone();
    let started = std::time::Instant::now();
    let phase = |what: &str| eprintln!("[{:6.1}s] {what}", started.elapsed().as_secs_f64());

    // init: render the stage's files, then run the init task (up, resetdb, import).
    s.stackctl(&["init", "--env", &stage]).success();
    assert!(s.ts.path(&format!("stacks/{stage}.yml")).exists());
    let env_file = s.ts.path(&format!(".env.{stage}"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env_file)
            .expect("stat .env")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, ".env.{stage} must be private");
    }
    s.wait_ready();
    phase("initialised");

    // All 100 codes on one page, with full URLs.
    let all = s.get("");
    assert_eq!(all.status, 200, "{}", all.body);
    let body = all.json();
    let items = body["items"].as_array().expect("items[]");
    assert_eq!(items.len(), 100);
    assert_eq!(
        items[0]["pxcode"], "039",
        "codes keep their leading zeros, in order"
    );
    assert_eq!(items[0]["procedure"], "EXTRACRANIAL PROCEDURES W/O CC/MCC");
    assert_eq!(items[0]["url"], s.url("039"));
    let meta = &body["meta"];
    assert_eq!(meta["page"], 1);
    assert_eq!(meta["pages"], 1);
    assert_eq!(meta["per_page"], 100);
    assert_eq!(meta["total"], 100);
    assert_eq!(meta["first"], s.url("?page=1&per_page=100"));
    assert_eq!(meta["last"], s.url("?page=1&per_page=100"));
    assert!(meta["next"].is_null() && meta["prev"].is_null());

    // Page 2 of 30 per page.
    let page2 = s.get("?page=2&per_page=30").json();
    assert_eq!(page2["items"].as_array().expect("items[]").len(), 30);
    assert_eq!(page2["meta"]["page"], 2);
    assert_eq!(page2["meta"]["pages"], 4);
    assert_eq!(page2["meta"]["per_page"], 30);
    assert_eq!(page2["meta"]["next"], s.url("?page=3&per_page=30"));
    assert_eq!(page2["meta"]["prev"], s.url("?page=1&per_page=30"));
    assert_eq!(page2["meta"]["last"], s.url("?page=4&per_page=30"));
    let last = s.get("?page=4&per_page=30").json();
    assert_eq!(last["items"].as_array().expect("items[]").len(), 10);
    assert!(last["meta"]["next"].is_null());
    assert_eq!(s.get("?page=abc").status, 400);

    // Basic auth: none, or a wrong password, is 401 with a challenge.
    let anonymous = Request::get(&s.url("")).send();
    assert_eq!(anonymous.status, 401);
    assert!(anonymous
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Basic")));
    assert_eq!(anonymous.json()["error"], "unauthorized");
    let wrong = Request::get(&s.url("")).auth("admin", "wrong").send();
    assert_eq!(wrong.status, 401);

    // ETag: the same representation is 304, a changed one is not.
    let etag = all.header("etag").expect("ETag header").to_string();
    let cached = Request::get(&s.url(""))
        .auth("admin", &s.password())
        .header("If-None-Match", &etag)
        .send();
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());

    // CRUD on one code.
    let create = |code: &str, procedure: &str| {
        Request::new("POST", &s.url(""))
            .auth("admin", &s.password())
            .json(&json!({"pxcode": code, "procedure": procedure}))
            .send()
    };
    let created = create("999", "TEST PROCEDURE");
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("location"), Some(s.url("999").as_str()));
    assert_eq!(create("999", "AGAIN").status, 409);
    assert_eq!(create("", "NO CODE").status, 400);
    assert_eq!(s.get("999").json()["procedure"], "TEST PROCEDURE");
    let updated = Request::new("PUT", &s.url("999"))
        .auth("admin", &s.password())
        .json(&json!({"procedure": "UPDATED PROCEDURE"}))
        .send();
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(s.get("999").json()["procedure"], "UPDATED PROCEDURE");
    let changed = Request::get(&s.url(""))
        .auth("admin", &s.password())
        .header("If-None-Match", &etag)
        .send();
    assert_eq!(changed.status, 200, "a changed list has a new ETag");
    let deleted = Request::new("DELETE", &s.url("999"))
        .auth("admin", &s.password())
        .send();
    assert_eq!(deleted.status, 204);
    assert_eq!(s.get("999").status, 404);
    assert_eq!(
        Request::new("DELETE", &s.url("999"))
            .auth("admin", &s.password())
            .send()
            .status,
        404
    );

    phase("API checked");

    // Data lives in the data container: it survives `down` + `up`.
    assert_eq!(create("998", "KEPT ACROSS DOWN AND UP").status, 201);
    s.stackctl(&["down"]).success();
    assert!(
        Request::get(&s.url("")).try_send().is_none(),
        "the API still answers after down"
    );
    let left = s.ts.containers();
    assert_eq!(
        left,
        vec![s.ts.container("postgres_data")],
        "down keeps only the data container"
    );
    s.stackctl(&["up"]).success();
    s.wait_ready();
    assert_eq!(s.get("").json()["meta"]["total"], 101);
    assert_eq!(s.get("998").json()["procedure"], "KEPT ACROSS DOWN AND UP");

    phase("down and up");

    // purge: nothing with this stage's labels is left on the engine, nor the data
    // container's (anonymous) volume.
    let data_volume = support::docker_ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Name}}{{end}}",
        &s.ts.container("postgres_data"),
    ])
    .trim()
    .to_string();
    assert!(!data_volume.is_empty(), "the data container holds a volume");
    s.stackctl(&["purge", "--yes"]).success();
    assert!(
        support::docker(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={data_volume}")
        ])
        .trim()
        .is_empty(),
        "purge left the data volume {data_volume}"
    );
    let filter = s.ts.filter();
    for kind in [
        &["ps", "-a", "-q"][..],
        &["volume", "ls", "-q"][..],
        &["network", "ls", "-q"][..],
        &["images", "-q"][..],
    ] {
        let mut args: Vec<String> = kind.iter().map(|s| s.to_string()).collect();
        args.extend(filter.iter().cloned());
        let left = support::lines(&support::docker(&args));
        assert!(left.is_empty(), "purge left {kind:?}: {left:?}");
    }
    phase("purged");
}
