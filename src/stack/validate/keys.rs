//! Every key of the Compose specification, at each place it can be written: supported, or
//! "not supported yet" (with the reason when there is a specific one). A key found in
//! neither list is unknown (a typo: "did you mean"). The places follow the Compose JSON
//! schema (`schema/compose-spec.json` of compose-spec/compose-spec): a place is the path
//! of keys from the top of the file, `*` standing for a name (a service, a network …) and
//! `[]` for a list item. The unit test below walks a copy of that schema and checks that
//! every property it declares is known at its place.

/// One place of a stack file where a map of keys is written.
pub struct Place {
    pub path: &'static str,
    pub supported: &'static [&'static str],
    pub unsupported: &'static [&'static str],
    /// Whether `x-` extension keys are allowed here (as the schema says).
    pub extensions: bool,
}

const fn place(
    path: &'static str,
    supported: &'static [&'static str],
    unsupported: &'static [&'static str],
) -> Place {
    Place {
        path,
        supported,
        unsupported,
        extensions: true,
    }
}

/// The same, at a place where the schema allows no `x-` keys.
const fn strict(
    path: &'static str,
    supported: &'static [&'static str],
    unsupported: &'static [&'static str],
) -> Place {
    Place {
        path,
        supported,
        unsupported,
        extensions: false,
    }
}

pub const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "volumes",
    "volumes_from",
    "networks",
    "depends_on",
    "healthcheck",
    "restart",
    "labels",
    "working_dir",
    "user",
    "init",
    "stop_signal",
    "stop_grace_period",
    "mem_limit",
    "cpus",
    "profiles",
    "hostname",
    "extra_hosts",
    "pull_policy",
    "container_name",
    "expose",
    "secrets",
    "configs",
    "stdin_open",
    "tty",
    "network_mode",
    "read_only",
    "ulimits",
    "links",
    "deploy",
    "scale",
    "logging",
    "tmpfs",
    "cap_add",
    "cap_drop",
    "devices",
    "security_opt",
    "shm_size",
    "sysctls",
    "pid",
    "ipc",
    "platform",
    "privileged",
    "dns",
    "dns_search",
    "dns_opt",
    "group_add",
    "runtime",
    "mem_reservation",
    "pids_limit",
    "cpu_shares",
    "cpuset",
    "cpu_quota",
    "cpu_period",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "oom_score_adj",
    "oom_kill_disable",
    "mem_swappiness",
    "memswap_limit",
    "domainname",
    "userns_mode",
    "uts",
    "cgroup_parent",
    "cgroup",
    "storage_opt",
    "device_cgroup_rules",
    "external_links",
    "blkio_config",
    "label_file",
    "gpus",
    "pre_start",
    "post_start",
    "pre_stop",
    "extends",
    "develop",
];

/// Compose service keys stackctl does not implement yet: an error, never ignored.
const SERVICE_UNSUPPORTED: &[&str] = &[
    "annotations",
    "attach",
    "cpu_count",
    "cpu_percent",
    "credential_spec",
    "isolation",
    "mac_address",
    "models",
    "provider",
    "pull_refresh_after",
    "stop_timeout",
    "use_api_socket",
    "volume_driver",
];

/// Every place, by path.
pub const PLACES: &[Place] = &[
    place(
        "",
        &[
            "name",
            "services",
            "networks",
            "volumes",
            "secrets",
            "configs",
            "data_containers",
            "tasks",
            "version",
            "include",
            "engine",
        ],
        &["models"],
    ),
    // `include` and `extends` are applied while loading, before these checks.
    strict("include[]", &["path", "env_file", "project_directory"], &[]),
    place("services.*", SERVICE_KEYS, SERVICE_UNSUPPORTED),
    place(
        "services.*.build",
        &[
            "context",
            "dockerfile",
            "dockerfile_inline",
            "args",
            "target",
            "labels",
            "cache_from",
            "network",
            "shm_size",
            "no_cache",
            "pull",
        ],
        &[
            "additional_contexts",
            "cache_to",
            "entitlements",
            "extra_hosts",
            "isolation",
            "platforms",
            "privileged",
            "provenance",
            "sbom",
            "secrets",
            "ssh",
            "tags",
            "ulimits",
        ],
    ),
    place(
        "services.*.build.secrets[]",
        &[],
        &["source", "target", "uid", "gid", "mode"],
    ),
    place("services.*.build.ulimits.*", &[], &["hard", "soft"]),
    strict(
        "services.*.blkio_config",
        &[
            "device_read_bps",
            "device_read_iops",
            "device_write_bps",
            "device_write_iops",
            "weight",
            "weight_device",
        ],
        &[],
    ),
    strict(
        "services.*.blkio_config.device_read_bps[]",
        &["path", "rate"],
        &[],
    ),
    strict(
        "services.*.blkio_config.device_read_iops[]",
        &["path", "rate"],
        &[],
    ),
    strict(
        "services.*.blkio_config.device_write_bps[]",
        &["path", "rate"],
        &[],
    ),
    strict(
        "services.*.blkio_config.device_write_iops[]",
        &["path", "rate"],
        &[],
    ),
    strict(
        "services.*.blkio_config.weight_device[]",
        &["path", "weight"],
        &[],
    ),
    place(
        "services.*.configs[]",
        &["source", "target", "uid", "gid", "mode"],
        &[],
    ),
    place(
        "services.*.secrets[]",
        &["source", "target", "uid", "gid", "mode"],
        &[],
    ),
    place(
        "services.*.credential_spec",
        &[],
        &["config", "file", "registry"],
    ),
    place(
        "services.*.depends_on.*",
        &["condition", "required", "restart"],
        &[],
    ),
    place(
        "services.*.deploy",
        &["mode", "replicas", "resources", "restart_policy"],
        &[
            "endpoint_mode",
            "labels",
            "placement",
            "rollback_config",
            "update_config",
        ],
    ),
    place(
        "services.*.deploy.rollback_config",
        &[],
        &[
            "parallelism",
            "delay",
            "failure_action",
            "monitor",
            "max_failure_ratio",
            "order",
        ],
    ),
    place(
        "services.*.deploy.update_config",
        &[],
        &[
            "parallelism",
            "delay",
            "failure_action",
            "monitor",
            "max_failure_ratio",
            "order",
        ],
    ),
    place(
        "services.*.deploy.resources",
        &["limits", "reservations"],
        &[],
    ),
    place(
        "services.*.deploy.resources.limits",
        &["cpus", "memory", "pids"],
        &[],
    ),
    place(
        "services.*.deploy.resources.reservations",
        &["memory", "devices"],
        &["cpus", "generic_resources"],
    ),
    place(
        "services.*.deploy.resources.reservations.generic_resources[]",
        &[],
        &["discrete_resource_spec"],
    ),
    place(
        "services.*.deploy.resources.reservations.generic_resources[].discrete_resource_spec",
        &[],
        &["kind", "value"],
    ),
    place(
        "services.*.deploy.resources.reservations.devices[]",
        &["capabilities", "count", "device_ids", "driver", "options"],
        &[],
    ),
    place(
        "services.*.deploy.restart_policy",
        &["condition", "max_attempts"],
        &["delay", "window"],
    ),
    place(
        "services.*.deploy.placement",
        &[],
        &["constraints", "preferences", "max_replicas_per_node"],
    ),
    place(
        "services.*.deploy.placement.preferences[]",
        &[],
        &["spread"],
    ),
    place("services.*.develop", &["watch"], &[]),
    place(
        "services.*.develop.watch[]",
        &[
            "ignore",
            "include",
            "path",
            "action",
            "target",
            "exec",
            "initial_sync",
        ],
        &[],
    ),
    place(
        "services.*.develop.watch[].exec",
        &[
            "command",
            "user",
            "privileged",
            "working_dir",
            "environment",
        ],
        &[],
    ),
    place(
        "services.*.devices[]",
        &["source", "target", "permissions"],
        &[],
    ),
    strict(
        "services.*.env_file[]",
        &["path", "required", "format"],
        &[],
    ),
    strict("services.*.extends", &["service", "file"], &[]),
    strict(
        "services.*.gpus[]",
        &["capabilities", "count", "device_ids", "driver", "options"],
        &[],
    ),
    place(
        "services.*.healthcheck",
        &[
            "test",
            "interval",
            "timeout",
            "retries",
            "start_period",
            "start_interval",
            "disable",
        ],
        &[],
    ),
    place("services.*.logging", &["driver", "options"], &[]),
    place("services.*.models.*", &[], &["endpoint_var", "model_var"]),
    place(
        "services.*.networks.*",
        &["aliases", "ipv4_address", "ipv6_address"],
        &[
            "driver_opts",
            "gw_priority",
            "interface_name",
            "link_local_ips",
            "mac_address",
            "priority",
        ],
    ),
    place(
        "services.*.ports[]",
        &[
            "target",
            "published",
            "host_ip",
            "protocol",
            "mode",
            "name",
            "app_protocol",
        ],
        &[],
    ),
    place(
        "services.*.post_start[]",
        &[
            "command",
            "user",
            "privileged",
            "working_dir",
            "environment",
        ],
        &[],
    ),
    place(
        "services.*.pre_start[]",
        &[
            "task",
            "image",
            "command",
            "user",
            "privileged",
            "working_dir",
            "environment",
            "per_replica",
        ],
        &[],
    ),
    place(
        "services.*.pre_stop[]",
        &[
            "command",
            "user",
            "privileged",
            "working_dir",
            "environment",
        ],
        &[],
    ),
    place("services.*.provider", &[], &["type", "options"]),
    place("services.*.ulimits.*", &["soft", "hard"], &[]),
    place(
        "services.*.volumes[]",
        &[
            "type",
            "source",
            "target",
            "read_only",
            "consistency",
            "bind",
            "volume",
            "tmpfs",
        ],
        &["image"],
    ),
    place(
        "services.*.volumes[].bind",
        &["propagation", "create_host_path", "selinux"],
        &["recursive"],
    ),
    place(
        "services.*.volumes[].volume",
        &["nocopy"],
        &["labels", "subpath"],
    ),
    place("services.*.volumes[].tmpfs", &["size", "mode"], &[]),
    place("services.*.volumes[].image", &[], &["subpath"]),
    place(
        "models.*",
        &[],
        &["name", "model", "context_size", "runtime_flags"],
    ),
    place(
        "networks.*",
        &[
            "external",
            "name",
            "driver",
            "labels",
            "attachable",
            "driver_opts",
            "enable_ipv6",
            "internal",
            "ipam",
        ],
        &["enable_ipv4"],
    ),
    place("networks.*.ipam", &["driver", "config", "options"], &[]),
    place(
        "networks.*.ipam.config[]",
        &["subnet", "ip_range", "gateway", "aux_addresses"],
        &[],
    ),
    place("networks.*.external", &[], &["name"]),
    place(
        "volumes.*",
        &["external", "name", "driver", "labels", "driver_opts"],
        &[],
    ),
    place("volumes.*.external", &[], &["name"]),
    place(
        "secrets.*",
        &["file", "environment", "name"],
        &[
            "external",
            "labels",
            "driver",
            "driver_opts",
            "template_driver",
        ],
    ),
    strict("secrets.*.external", &[], &["name"]),
    place(
        "configs.*",
        &["file", "environment", "content", "name"],
        &["external", "labels", "template_driver"],
    ),
    strict("configs.*.external", &[], &["name"]),
];

/// Keys not supported on one engine that a Swarm stage supports, by place.
const SWARM_KEYS: &[(&str, &[&str])] = &[
    (
        "services.*.deploy",
        &[
            "endpoint_mode",
            "labels",
            "placement",
            "rollback_config",
            "update_config",
        ],
    ),
    (
        "services.*.deploy.rollback_config",
        &[
            "parallelism",
            "delay",
            "failure_action",
            "monitor",
            "max_failure_ratio",
            "order",
        ],
    ),
    (
        "services.*.deploy.update_config",
        &[
            "parallelism",
            "delay",
            "failure_action",
            "monitor",
            "max_failure_ratio",
            "order",
        ],
    ),
    ("services.*.deploy.restart_policy", &["delay", "window"]),
    ("services.*.deploy.resources.reservations", &["cpus"]),
    (
        "services.*.deploy.placement",
        &["constraints", "preferences", "max_replicas_per_node"],
    ),
    ("services.*.deploy.placement.preferences[]", &["spread"]),
];

/// Whether `key` at `path`, not supported on one engine, is supported on a Swarm.
pub fn swarm_supported(path: &str, key: &str) -> bool {
    SWARM_KEYS
        .iter()
        .any(|(place, keys)| *place == path && keys.contains(&key))
}

/// The place at `path`, if it is one.
pub fn place_at(path: &str) -> Option<&'static Place> {
    PLACES.iter().find(|p| p.path == path)
}

/// The place of a child key (`services.*` + `build` → `services.*.build`).
pub fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Why a key is not supported yet, when there is more to say than "not yet".
pub fn reason(path: &str, key: &str) -> String {
    let swarm = "it is a Swarm setting, and this stage runs containers on one engine (`engine: { mode: swarm }` deploys to a Swarm)";
    let classic = "stackctl's BuildKit builds do not offer it yet (it needs the build session's secrets, ssh or extra contexts, or an exporter), and the classic builder has no such option";
    let text = match (path, key) {
        ("services.*.build", "additional_contexts" | "secrets" | "ssh" | "cache_to")
        | ("services.*.build", "entitlements" | "provenance" | "sbom" | "platforms") => classic,
        ("services.*.build", "privileged" | "ulimits" | "tags" | "isolation" | "extra_hosts") => {
            "not in stackctl's build requests yet"
        }
        ("services.*.deploy", _)
        | ("services.*.deploy.placement", _)
        | ("services.*.deploy.update_config", _)
        | ("services.*.deploy.rollback_config", _) => swarm,
        ("services.*.deploy.restart_policy", _) => {
            "the engine's restart policy has no delay or window (only the condition and a maximum count)"
        }
        ("services.*.deploy.resources.reservations", "cpus") => {
            "the engine has no CPU reservation for a single container; use `limits.cpus`"
        }
        ("services.*.deploy.resources.reservations", _) => {
            "generic resources are a Swarm setting; for GPUs use `devices`"
        }
        ("services.*.volumes[].volume", "subpath") | ("services.*.volumes[].image", _) => {
            "it needs engine API 1.45; stackctl speaks API 1.41 to the engine"
        }
        ("services.*.volumes[]", "image") => {
            "image mounts need engine API 1.47; stackctl speaks API 1.41 to the engine"
        }
        ("services.*.volumes[].bind", "recursive") => {
            "it needs engine API 1.44; stackctl speaks API 1.41 to the engine"
        }
        ("", "models") | ("services.*", "models") | ("services.*", "provider") => {
            "stackctl runs containers only"
        }
        ("secrets.*", "external") | ("configs.*", "external") => {
            "external secrets and configs live in a Swarm store; give `file`, `environment` or `content`"
        }
        ("secrets.*", _) | ("configs.*", _) => "they only apply to Swarm",
        ("networks.*", "enable_ipv4") => {
            "turning IPv4 off needs engine API 1.47; stackctl speaks API 1.41 to the engine"
        }
        ("networks.*.external" | "volumes.*.external", _) => {
            "write `external: true` and the engine's name as `name:`"
        }
        ("services.*", "credential_spec" | "isolation" | "cpu_count" | "cpu_percent") => {
            "it is a Windows container setting"
        }
        ("services.*", "annotations") => {
            "container annotations need engine API 1.43; stackctl speaks API 1.41 to the engine"
        }
        ("services.*", "volume_driver") => {
            "the engine request stackctl sends has no volume driver field; give the volume a `driver` under the top-level `volumes:`"
        }
        ("services.*", "attach") => {
            "`up` never attaches to service output; `stackctl logs -f` follows it"
        }
        ("services.*", "use_api_socket") => {
            "stackctl does not hand the engine's socket or your credentials to a container"
        }
        ("services.*", "mac_address") => {
            "the engine takes a MAC address per network endpoint from API 1.44 on; stackctl speaks API 1.41 to the engine"
        }
        _ => "",
    };
    if text.is_empty() {
        "remove the key, or run this stack with Docker Compose".to_string()
    } else {
        format!("{text}; remove the key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value as Json;

    /// Every object schema with `properties`, with the place it describes.
    fn objects<'s>(
        schema: &'s Json,
        node: &'s Json,
        path: &str,
        seen: &mut Vec<(String, String)>,
        out: &mut Vec<(String, Vec<String>, bool)>,
    ) {
        let Some(node) = node.as_object() else {
            return;
        };
        if let Some(reference) = node.get("$ref").and_then(Json::as_str) {
            let name = reference.rsplit('/').next().unwrap_or_default();
            if seen.contains(&(name.to_string(), path.to_string())) {
                return;
            }
            seen.push((name.to_string(), path.to_string()));
            objects(schema, &schema["definitions"][name], path, seen, out);
            return;
        }
        if let Some(properties) = node.get("properties").and_then(Json::as_object) {
            let extensions = node
                .get("patternProperties")
                .and_then(Json::as_object)
                .is_some_and(|p| p.contains_key("^x-"));
            out.push((
                path.to_string(),
                properties.keys().cloned().collect(),
                extensions,
            ));
            for (key, sub) in properties {
                objects(schema, sub, &child_path(path, key), seen, out);
            }
        }
        for combinator in ["oneOf", "anyOf", "allOf"] {
            for sub in node
                .get(combinator)
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                objects(schema, sub, path, seen, out);
            }
        }
        if let Some(items) = node.get("items") {
            objects(schema, items, &format!("{path}[]"), seen, out);
        }
        if let Some(sub) = node.get("additionalProperties").filter(|v| v.is_object()) {
            objects(schema, sub, &format!("{path}.*"), seen, out);
        }
        for (pattern, sub) in node
            .get("patternProperties")
            .and_then(Json::as_object)
            .into_iter()
            .flatten()
        {
            if !pattern.starts_with("^x-") {
                objects(schema, sub, &format!("{path}.*"), seen, out);
            }
        }
    }

    #[test]
    fn every_key_of_the_compose_schema_is_known_at_its_place() {
        let text = include_str!("../../../tests/data/compose-spec/compose-spec.json");
        let schema: Json = serde_json::from_str(text).expect("the schema is JSON");
        let mut found = Vec::new();
        objects(&schema, &schema, "", &mut Vec::new(), &mut found);
        assert!(found.len() > 50, "the walk found {} places", found.len());
        let mut problems = Vec::new();
        for (path, keys, extensions) in &found {
            let Some(place) = place_at(path) else {
                problems.push(format!("no place `{path}` (keys {keys:?})"));
                continue;
            };
            for key in keys {
                let known = place.supported.contains(&key.as_str())
                    || place.unsupported.contains(&key.as_str());
                if !known {
                    problems.push(format!("`{key}` is unknown at `{path}`"));
                }
            }
            if place.extensions != *extensions {
                problems.push(format!(
                    "`{path}`: x- extensions allowed here: schema {extensions}, stackctl {}",
                    place.extensions
                ));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn no_key_is_both_supported_and_unsupported() {
        for place in PLACES {
            for key in place.supported {
                assert!(
                    !place.unsupported.contains(key),
                    "`{key}` at `{}`",
                    place.path
                );
            }
        }
    }
}
