//! The executor against a fake target: ordering, parallelism, partial failure and interrupts,
//! without a daemon. The fake records what it is asked, in order, and can fail an action or
//! throw the interrupt switch while one runs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::target::{Phase, Readiness, Target};
use super::{build_images, execute, ApplyOptions, Interrupt};
use crate::error::Interrupted;
use crate::observed::Observed;
use crate::plan::image::ImageSpec;
use crate::plan::up::{plan, Action, Plan, PlanOptions};

#[derive(Default)]
struct Fake {
    /// `begin X` / `end X` / `wait X` in the order they happened.
    log: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// Services whose action fails.
    failing: HashSet<String>,
    /// Throw this switch while applying this service (after its create, before its start).
    interrupt_during: Option<(String, tokio::sync::watch::Sender<bool>)>,
}

impl Fake {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn position(&self, entry: &str) -> usize {
        self.log()
            .iter()
            .position(|e| e == entry)
            .unwrap_or_else(|| panic!("`{entry}` not in {:?}", self.log()))
    }

    fn record(&self, entry: String) {
        self.log.lock().unwrap().push(entry);
    }
}

fn service_of(action: &Action) -> Option<&str> {
    match action {
        Action::Service { service, .. } => Some(service),
        _ => None,
    }
}

impl Target for Fake {
    async fn observe(&self) -> Result<Observed> {
        Ok(Observed::default())
    }

    async fn build(&self, image: &ImageSpec, _output: &(dyn Fn(&str) + Send + Sync)) -> Result<()> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.record(format!("build {}", image.tag));
        Ok(())
    }

    async fn pull(
        &self,
        image: &str,
        _owner: &str,
        _progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<u64> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.record(format!("pull {image}"));
        Ok(0)
    }

    async fn apply(&self, action: &Action, phase: Phase<'_>) -> Result<()> {
        let Some(service) = service_of(action) else {
            self.record(format!("infra {}", action.describe().1));
            return Ok(());
        };
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        self.record(format!("begin {service}"));
        let result = async {
            phase("creating")?;
            // Let every other runnable action start before this one ends.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            if let Some((during, switch)) = &self.interrupt_during {
                if during == service {
                    let _ = switch.send(true);
                }
            }
            if self.failing.contains(service) {
                return Err(anyhow!("service `{service}` failed to start"));
            }
            phase("starting")?;
            self.record(format!("started {service}"));
            Ok(())
        }
        .await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.record(format!("end {service}"));
        result
    }

    async fn wait(
        &self,
        service: &str,
        _container: &str,
        readiness: Readiness,
        _deadline: Instant,
    ) -> Result<()> {
        self.record(format!("wait {service} {readiness:?}"));
        Ok(())
    }
}

/// db ← api ← web (api waits for db healthy), and three services nobody depends on.
const STACK: &str = r#"
services:
  db:
    image: busybox:latest
    healthcheck: { test: [CMD, "true"] }
  api:
    image: busybox:latest
    depends_on: { db: { condition: service_healthy } }
  web:
    image: busybox:latest
    depends_on: [api]
  one: { image: busybox:latest }
  two: { image: busybox:latest }
  three: { image: busybox:latest }
"#;

fn the_plan() -> Plan {
    let loaded = crate::plan::test_stack(STACK, "demo", "dev", "/srv/demo");
    let images =
        std::collections::HashMap::from([("busybox:latest".to_string(), "sha256:1".to_string())]);
    let observed = Observed {
        images: images.clone(),
        ..Default::default()
    };
    plan(&loaded, &images, &observed, &PlanOptions::default()).expect("plan")
}

fn quiet_progress() -> crate::output::Progress {
    let quiet = crate::output::Settings {
        quiet: true,
        ..Default::default()
    };
    crate::output::Printer::new(quiet, "dev").progress()
}

fn options(parallel: usize, interrupt: Interrupt) -> ApplyOptions {
    ApplyOptions {
        wait: true,
        timeout: Duration::from_secs(5),
        parallel,
        parallel_builds: 2,
        parallel_pulls: 2,
        interrupt,
    }
}

fn run(fake: &Fake, parallel: usize, interrupt: Interrupt) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(execute(
        fake,
        &the_plan(),
        &options(parallel, interrupt),
        &quiet_progress(),
    ))
}

#[test]
fn dependencies_are_applied_and_awaited_before_their_dependents() {
    let fake = Fake::default();
    run(&fake, 16, Interrupt::switch().1).expect("run");
    // The stage network comes before any service.
    assert!(fake.position("infra dev-demo_default") < fake.position("begin db"));
    assert!(fake.position("end db") < fake.position("wait db Healthy"));
    assert!(fake.position("wait db Healthy") < fake.position("begin api"));
    assert!(fake.position("end api") < fake.position("begin web"));
    for service in ["db", "api", "web", "one", "two", "three"] {
        fake.position(&format!("started {service}"));
    }
}

#[test]
fn independent_services_run_at_once_within_the_bound() {
    let fake = Fake::default();
    run(&fake, 16, Interrupt::switch().1).expect("run");
    // db, one, two and three have no dependencies: all four in flight together.
    assert_eq!(fake.most_in_flight.load(Ordering::SeqCst), 4);

    let bounded = Fake::default();
    run(&bounded, 2, Interrupt::switch().1).expect("run");
    assert_eq!(bounded.most_in_flight.load(Ordering::SeqCst), 2);
    assert_eq!(
        bounded
            .log()
            .iter()
            .filter(|e| e.starts_with("started"))
            .count(),
        6
    );
}

#[test]
fn a_failure_skips_its_dependents_lets_the_others_finish_and_names_it() {
    let fake = Fake {
        failing: HashSet::from(["db".to_string()]),
        ..Default::default()
    };
    let err = run(&fake, 16, Interrupt::switch().1).expect_err("db fails");
    let message = format!("{err:#}");
    assert_eq!(message, "service `db` failed to start");
    let log = fake.log();
    assert!(
        !log.iter().any(|e| e == "begin api" || e == "begin web"),
        "{log:?}"
    );
    for service in ["one", "two", "three"] {
        assert!(log.contains(&format!("started {service}")), "{log:?}");
    }
}

#[test]
fn after_an_interrupt_nothing_new_starts_and_the_run_ends_interrupted() {
    let (switch, interrupt) = Interrupt::switch();
    let fake = Fake {
        interrupt_during: Some(("db".to_string(), switch)),
        ..Default::default()
    };
    let err = run(&fake, 16, interrupt).expect_err("interrupted");
    assert!(err.downcast_ref::<Interrupted>().is_some(), "{err:#}");
    assert_eq!(crate::error::exit::INTERRUPTED, 130);
    let log = fake.log();
    // db was created when the signal came: it is not started, and nothing after it begins.
    assert!(!log.contains(&"started db".to_string()), "{log:?}");
    assert!(
        !log.iter().any(|e| e == "begin api" || e == "begin web"),
        "{log:?}"
    );
    assert!(!log.iter().any(|e| e.starts_with("wait")), "{log:?}");
}

#[test]
fn r5_an_interrupt_during_the_last_creates_starts_nothing_and_ends_interrupted() {
    // R5: the signal arrives while the last creates run; everything already began, yet the
    // run must not end as a success.
    let (switch, interrupt) = Interrupt::switch();
    let fake = Fake {
        interrupt_during: Some(("web".to_string(), switch)),
        ..Default::default()
    };
    let err = run(&fake, 16, interrupt).expect_err("interrupted");
    assert!(err.downcast_ref::<Interrupted>().is_some(), "{err:#}");
    assert!(!fake.log().contains(&"started web".to_string()));
}

#[test]
fn defect11_up_builds_missing_images_in_parallel_within_the_bound() {
    let loaded = crate::plan::test_stack(
        "services:\n  a: { build: ./a }\n  b: { build: ./b }\n  c: { build: ./c }\n",
        "demo",
        "dev",
        "/srv/demo",
    );
    let plan = plan(
        &loaded,
        &Default::default(),
        &Observed::default(),
        &PlanOptions::default(),
    )
    .expect("plan");
    assert_eq!(plan.builds().count(), 3);
    let fake = Fake::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let built = runtime
        .block_on(build_images(
            &fake,
            &plan,
            &options(16, Interrupt::switch().1),
            &quiet_progress(),
            false,
        ))
        .expect("builds");
    assert_eq!(built.len(), 3);
    assert_eq!(fake.most_in_flight.load(Ordering::SeqCst), 2);
}

#[test]
fn pulls_run_beside_builds_within_their_bound_and_a_shared_image_is_pulled_once() {
    let loaded = crate::plan::test_stack(
        "services:\n  a: { build: ./a }\n  b: { build: ./b }\n  c: { build: ./c }\n  p: { image: 'r:1' }\n  q: { image: 'r:2' }\n  s: { image: 'r:3' }\n  t: { image: 'r:1' }\n",
        "demo",
        "dev",
        "/srv/demo",
    );
    let plan = plan(
        &loaded,
        &Default::default(),
        &Observed::default(),
        &PlanOptions::default(),
    )
    .expect("plan");
    assert_eq!(plan.fetches().count(), 6, "{plan}");
    let fake = Fake::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let fetched = runtime
        .block_on(build_images(
            &fake,
            &plan,
            &options(16, Interrupt::switch().1),
            &quiet_progress(),
            false,
        ))
        .expect("fetches");
    assert_eq!(fetched.len(), 6);
    // Two builds and two pulls at once, side by side.
    assert_eq!(fake.most_in_flight.load(Ordering::SeqCst), 4);
    let pulls: Vec<String> = fake
        .log()
        .into_iter()
        .filter(|e| e.starts_with("pull "))
        .collect();
    assert_eq!(pulls.len(), 3, "{pulls:?}");
    // Replanned with what was fetched: nothing is pulled again.
    let again = plan_with_built(&loaded, fetched);
    assert_eq!(again.fetches().count(), 0, "{again}");
}

fn plan_with_built(loaded: &crate::stack::LoadedStack, built: HashSet<String>) -> Plan {
    let images = built
        .iter()
        .map(|i| (i.clone(), format!("sha256:{i}")))
        .collect();
    plan(
        loaded,
        &images,
        &Observed::default(),
        &PlanOptions {
            built,
            ..Default::default()
        },
    )
    .expect("plan")
}

#[test]
fn replicas_start_after_the_one_that_runs_the_pre_start_steps() {
    let run_stack = |yaml: &str| {
        let loaded = crate::plan::test_stack(yaml, "demo", "dev", "/srv/demo");
        let images = std::collections::HashMap::from([(
            "busybox:latest".to_string(),
            "sha256:1".to_string(),
        )]);
        let observed = Observed {
            images: images.clone(),
            ..Default::default()
        };
        let plan = plan(&loaded, &images, &observed, &PlanOptions::default()).expect("plan");
        let fake = Fake::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime
            .block_on(execute(
                &fake,
                &plan,
                &options(16, Interrupt::switch().1),
                &quiet_progress(),
            ))
            .expect("run");
        fake.log()
    };
    let plain = "services:\n  api:\n    image: busybox:latest\n    scale: 3\n";
    let log = run_stack(plain);
    let begins = |log: &[String]| -> Vec<usize> {
        log.iter()
            .enumerate()
            .filter(|(_, e)| *e == "begin api")
            .map(|(i, _)| i)
            .collect()
    };
    let first_end = |log: &[String]| log.iter().position(|e| e == "end api").expect("end");
    // Without steps the replicas start side by side ...
    assert!(begins(&log).iter().all(|b| *b < first_end(&log)), "{log:?}");
    // ... with steps the others wait for the one that runs them.
    let log = run_stack(&format!(
        "{plain}    pre_start:\n      - command: [echo, one]\n"
    ));
    let starts = begins(&log);
    assert_eq!(starts.len(), 3, "{log:?}");
    assert!(starts[0] < first_end(&log), "{log:?}");
    assert!(starts[1..].iter().all(|b| *b > first_end(&log)), "{log:?}");
}
