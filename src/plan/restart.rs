//! The `restart` plan, made from the `up` plan of the same services: every service asked for
//! gets [`Change::Restart`] (its existing container is stopped and started again, as it is),
//! the services they depend on are left as they are but still waited for, and nothing is
//! built, pulled, created or removed. The executor then restarts them in dependency order
//! and waits for health exactly as `up` does.

use super::up::{Action, Change, Plan};

/// Services asked for that have no container: `up` creates them, `restart` does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoContainer(pub Vec<String>);

/// Turn the `up` plan of `wanted` (and what they depend on) into the `restart` plan. A
/// container that differs from its stack file is restarted as it is, with a warning naming
/// what differs (`up` recreates it).
pub fn plan(up: Plan, wanted: &[String]) -> Result<Plan, NoContainer> {
    let mut missing = Vec::new();
    let mut warnings = up.warnings;
    let mut healthy = up.healthy;
    let mut actions = Vec::new();
    for action in up.actions {
        let Action::Service {
            service,
            spec,
            change,
            depends_on,
            has_healthcheck,
            one_shot,
        } = action
        else {
            continue;
        };
        let change = if wanted.contains(&service) {
            match &change {
                Change::Create => {
                    // One entry per service, whatever its replicas.
                    if !missing.contains(&service) {
                        missing.push(service.clone());
                    }
                    continue;
                }
                Change::Recreate(fields) => warnings.push(format!(
                    "service `{service}` differs from its stack file ({}): restarted as it is; `stackctl up {service}` recreates it",
                    fields.join(", ")
                )),
                _ => {}
            }
            // Its health is the restarted container's, not the one the list reported
            // (`healthy` holds container names).
            healthy.remove(&spec.name);
            Change::Restart("asked for".into())
        } else {
            match change {
                Change::Unchanged(why) => Change::Unchanged(why),
                Change::Create => Change::Unchanged("no container; not restarted".into()),
                _ => Change::Unchanged("not restarted".into()),
            }
        };
        actions.push(Action::Service {
            service,
            spec,
            change,
            depends_on,
            has_healthcheck,
            one_shot,
        });
    }
    if !missing.is_empty() {
        return Err(NoContainer(missing));
    }
    Ok(Plan {
        actions,
        healthy,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{Observed, ObservedContainer};
    use crate::plan::up::{self as up_plan, PlanOptions};
    use std::collections::HashMap;

    const STACK: &str = r#"
services:
  db:
    image: busybox:latest
    command: [sleep, "3600"]
    healthcheck: { test: [CMD, "true"], interval: 1s }
  api:
    image: busybox:latest
    command: [sleep, "3600"]
    depends_on: { db: { condition: service_healthy } }
  worker:
    image: busybox:latest
    command: [sleep, "3600"]
"#;

    fn setup(
        with_containers: &[&str],
    ) -> (crate::stack::LoadedStack, HashMap<String, String>, Observed) {
        let loaded = crate::plan::test_stack(STACK, "demo", "dev", "/srv/demo");
        let images = HashMap::from([("busybox:latest".to_string(), "sha256:1".to_string())]);
        let mut observed = Observed::default();
        for name in with_containers {
            let service = &loaded.stack.services[*name];
            let spec = crate::plan::container::service(&loaded, name, service, "sha256:1");
            observed.containers.push(ObservedContainer {
                name: spec.name.clone(),
                role: "service".into(),
                service: Some(name.to_string()),
                state: "running".into(),
                status: "Up 1 minute (healthy)".into(),
                health: Some("healthy".into()),
                config_hash: Some(spec.config_hash()),
                networks: vec!["dev-demo_default".into()],
                ..Default::default()
            });
        }
        observed.networks = vec!["dev-demo_default".into()];
        (loaded, images, observed)
    }

    fn changes(plan: &Plan) -> Vec<(String, String)> {
        plan.actions
            .iter()
            .map(|a| {
                let (_, object, verb, _) = a.describe();
                (object, verb.to_string())
            })
            .collect()
    }

    #[test]
    fn issue12_a_named_service_restarts_and_its_dependency_is_only_waited_for() {
        let (loaded, images, observed) = setup(&["db", "api", "worker"]);
        let options = PlanOptions {
            services: vec!["api".into()],
            ..Default::default()
        };
        let up = up_plan::plan(&loaded, &images, &observed, &options).unwrap();
        let plan = plan(up, &["api".to_string()]).unwrap();
        assert_eq!(
            changes(&plan),
            vec![
                ("dev-demo--db".to_string(), "unchanged".to_string()),
                ("dev-demo--api".to_string(), "restart".to_string()),
            ]
        );
        assert!(
            plan.healthy.contains("dev-demo--db"),
            "db need not be waited for"
        );
    }

    #[test]
    fn issue12_restarting_everything_goes_in_dependency_order_and_forgets_old_health() {
        let (loaded, images, observed) = setup(&["db", "api", "worker"]);
        let up = up_plan::plan(&loaded, &images, &observed, &PlanOptions::default()).unwrap();
        let all: Vec<String> = loaded.stack.services.keys().cloned().collect();
        let plan = plan(up, &all).unwrap();
        let verbs: Vec<String> = changes(&plan).into_iter().map(|(_, v)| v).collect();
        assert_eq!(verbs, vec!["restart", "restart", "restart"]);
        let order: Vec<String> = changes(&plan).into_iter().map(|(o, _)| o).collect();
        let db = order.iter().position(|o| o == "dev-demo--db").unwrap();
        let api = order.iter().position(|o| o == "dev-demo--api").unwrap();
        assert!(db < api, "db first: {order:?}");
        assert!(
            plan.healthy.is_empty(),
            "every restarted service is waited for"
        );
        assert!(plan
            .actions
            .iter()
            .all(|a| matches!(a, Action::Service { .. })));
    }

    #[test]
    fn issue12_a_service_without_a_container_is_named_not_created() {
        let (loaded, images, observed) = setup(&["db"]);
        let all: Vec<String> = loaded.stack.services.keys().cloned().collect();
        let up = up_plan::plan(&loaded, &images, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            plan(up, &all),
            Err(NoContainer(vec!["api".into(), "worker".into()]))
        );
    }
}
