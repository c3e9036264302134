//! Image references and registry credentials, without the engine: which registry an image
//! names, whether a reference is well formed, and the credentials Docker's own
//! `config.json` gives for a registry (`auths`, `credsStore`, `credHelpers`).
//!
//! Credentials never reach any output: [`Credentials`] prints as `Credentials(REGISTRY)`.

use std::fmt;
use std::path::PathBuf;

use docker_credential::{CredentialRetrievalError, DockerCredential};

use crate::error::Failure;

/// The registry host an image reference names (`127.0.0.1:5000/shop/api:1` →
/// `127.0.0.1:5000`), or `None` for Docker Hub (`postgres:16`, `library/redis`).
pub fn registry_of(reference: &str) -> Option<&str> {
    let (first, _) = reference.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// How messages name a reference's registry (the engine's default one when the name holds
/// none).
pub fn registry_name(reference: &str) -> &str {
    registry_of(reference).unwrap_or("the default registry")
}

/// Where the credentials for the reference's registry come from, and how to put them there
/// without the docker CLI (a CI runner often has none): the config file stackctl reads, the
/// variable that moves it, and the `auths` entry it needs.
pub fn login_hint(reference: &str) -> String {
    let config = config_dir()
        .map(|dir| dir.join("config.json").display().to_string())
        .unwrap_or_else(|| "~/.docker/config.json".to_string());
    let (entry, login) = match registry_of(reference) {
        Some(host) => (format!("`{host}`"), format!("docker login {host}")),
        None => (
            "the default registry".to_string(),
            "docker login".to_string(),
        ),
    };
    format!(
        "the credentials come from `{config}` (set DOCKER_CONFIG to use another directory): give it an `auths` entry for {entry} holding base64 of `USER:PASSWORD` (`{login}` writes one where the docker CLI is installed)"
    )
}

/// Split a reference into the repository and the tag (`latest` when there is none). A
/// digest reference keeps its digest in the repository part and has no tag.
pub fn split_tag(reference: &str) -> (&str, Option<&str>) {
    if reference.contains('@') {
        return (reference, None);
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (
            &reference[..last_slash + i],
            Some(&reference[last_slash + i + 1..]),
        ),
        None => (reference, Some("latest")),
    }
}

/// Why a reference is not one Docker accepts, or `None` when it is fine. The rules of
/// Docker's reference grammar: lowercase path components of letters and digits separated by
/// `.`, `_`, `__` or `-`; an optional registry host (with a port); a tag of up to 128
/// letters, digits, `_`, `.` and `-` not starting with `.` or `-`; or a `@sha256:` digest.
pub fn reference_problem(reference: &str) -> Option<String> {
    if reference.is_empty() {
        return Some("the image reference is empty".into());
    }
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        let ok = digest
            .strip_prefix("sha256:")
            .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if !ok {
            return Some(format!(
                "`{digest}` is not a digest (`sha256:` and 64 hex digits)"
            ));
        }
    }
    let (repository, tag) = if digest.is_some() {
        (name, None)
    } else {
        let (repository, tag) = split_tag(name);
        let explicit = name.len() > repository.len();
        (repository, if explicit { tag } else { None })
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Some(format!(
                "tag `{tag}` is not valid: up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
            ));
        }
    }
    let path = match registry_of(repository) {
        Some(host) => {
            let ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if !ok {
                return Some(format!("registry `{host}` is not a host name"));
            }
            &repository[host.len() + 1..]
        }
        None => repository,
    };
    for component in path.split('/') {
        if !valid_component(component) {
            return Some(format!(
                "`{component}` is not a valid repository name component: lowercase letters and digits, separated by `.`, `_`, `__` or `-`"
            ));
        }
    }
    None
}

fn valid_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !component.starts_with(alnum) || !component.ends_with(alnum) {
        return false;
    }
    // Runs of separators between the alphanumerics: `.`, `_`, `__` or any number of `-`.
    component
        .split(alnum)
        .filter(|run| !run.is_empty())
        .all(|run| run == "." || run == "_" || run == "__" || run.chars().all(|c| c == '-'))
}

/// How messages name who needs an image, with where its `image:` is written:
/// `service `db` (stacks/dev.yml:4:12)`. `owner` is a service, data container or task name.
pub fn owner_label(loaded: &crate::stack::LoadedStack, owner: &str) -> String {
    let stack = &loaded.stack;
    let (section, noun) = if stack.services.contains_key(owner) {
        ("services", "service")
    } else if stack.data_containers.contains_key(owner) {
        ("data_containers", "data container")
    } else if stack.tasks.contains_key(owner) {
        ("tasks", "task")
    } else {
        return format!("`{owner}`");
    };
    match loaded
        .locate_value(&[section, owner, "image"])
        .or_else(|| loaded.locate(&[section, owner]))
    {
        Some(at) => format!("{noun} `{owner}` ({at})"),
        None => format!("{noun} `{owner}`"),
    }
}

/// The images a Dockerfile's `FROM` lines name, `$ARG`s resolved from `args` then the
/// `ARG` defaults; stage names (`FROM build AS run` … `FROM build`) and `scratch` left out.
pub fn from_images(
    dockerfile: &str,
    args: &std::collections::HashMap<String, String>,
) -> Vec<String> {
    let mut defaults: std::collections::HashMap<String, String> = Default::default();
    let mut stages: Vec<String> = Vec::new();
    let mut images = Vec::new();
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        if instruction.eq_ignore_ascii_case("ARG") {
            if let Some((name, value)) = words.next().and_then(|d| d.split_once('=')) {
                defaults
                    .entry(name.to_string())
                    .or_insert_with(|| value.trim_matches('"').to_string());
            }
        } else if instruction.eq_ignore_ascii_case("FROM") {
            let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
            let Some(raw) = rest.first() else { continue };
            let mut image = raw.to_string();
            for (name, value) in args.iter().chain(defaults.iter()) {
                image = image
                    .replace(&format!("${{{name}}}"), value)
                    .replace(&format!("${name}"), value);
            }
            let earlier_stage = stages.contains(&image.to_ascii_lowercase());
            if rest.len() >= 3 && rest[1].eq_ignore_ascii_case("AS") {
                stages.push(rest[2].to_ascii_lowercase());
            }
            if image != "scratch" && !earlier_stage && !images.contains(&image) {
                images.push(image);
            }
        }
    }
    images
}

/// Every `image:` of the stack that is not a reference Docker accepts, at its line: checked
/// by the commands that send references to the engine (`up`, `pull`, `push`), before any
/// engine call (`config` still prints the stack as it resolves).
pub fn check_references(
    loaded: &crate::stack::LoadedStack,
) -> Result<(), crate::stack::StackErrors> {
    use crate::stack::model::Task;
    let stack = &loaded.stack;
    let mut images: Vec<(&str, &str, &str, &str)> = Vec::new();
    for (name, service) in &stack.services {
        if let Some(image) = &service.image {
            images.push(("services", "service", name, image));
        }
    }
    for (name, data) in &stack.data_containers {
        if let Some(image) = &data.image {
            images.push(("data_containers", "data container", name, image));
        }
    }
    for (name, task) in &stack.tasks {
        if let Task::Container(task) = task {
            if let Some(image) = &task.image {
                images.push(("tasks", "task", name, image));
            }
        }
    }
    let errors: Vec<crate::stack::StackError> = images
        .into_iter()
        .filter_map(|(section, noun, name, image)| {
            let problem = reference_problem(image)?;
            Some(
                crate::stack::StackError::new(
                    loaded.locate_value(&[section, name, "image"]),
                    format!("{noun} `{name}`: image `{image}` is not a valid reference: {problem}"),
                )
                .with_hint("write `[REGISTRY[:PORT]/]NAME[:TAG]` in lowercase, e.g. `127.0.0.1:5000/shop/api:1.2`"),
            )
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(crate::stack::StackErrors(errors))
    }
}

/// Credentials for one registry. Debug and Display show the registry only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The registry they are for (`127.0.0.1:5000`, or Docker Hub's key).
    pub server: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub identity_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({})", self.server)
    }
}

/// A credential lookup that failed for a reason the user must fix (not merely "none").
#[derive(Debug, thiserror::Error)]
#[error("cannot get the credentials for registry `{registry}` from {config}: {reason}")]
pub struct CredentialError {
    pub registry: String,
    pub config: String,
    pub reason: String,
}

impl CredentialError {
    /// The error with what to do about it: fix or re-create the config entry.
    pub fn into_failure(self) -> Failure {
        let hint = format!(
            "fix {} (or log in again with `docker login {}`, which rewrites its entry); `DOCKER_CONFIG` picks another config directory",
            self.config, self.registry
        );
        Failure::new(self.to_string()).with_hint(hint)
    }
}

/// Docker's config directory: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))
}

/// The credentials `config.json` gives for the registry of `reference`, through `auths`,
/// `credHelpers` or `credsStore` (`docker-credential-NAME get`); `None` when there are none
/// (the pull or push then goes without, as `docker` does). `default_key` is the key the
/// config uses for the engine's default registry (the engine's `IndexServerAddress`),
/// for names that hold no registry.
pub fn credentials_for(
    reference: &str,
    default_key: &str,
) -> Result<Option<Credentials>, CredentialError> {
    let server = registry_of(reference).unwrap_or(default_key).to_string();
    let Some(dir) = config_dir() else {
        return Ok(None);
    };
    let path = dir.join("config.json");
    if !path.is_file() {
        return Ok(None);
    }
    let error = |reason: &str| CredentialError {
        registry: registry_name(reference).to_string(),
        config: path.display().to_string(),
        reason: reason.to_string(),
    };
    let bytes = std::fs::read(&path).map_err(|e| error(&crate::error::io_reason(&e)))?;
    let not_json = || error("the file is not valid JSON of Docker's config format");
    let mut config: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| not_json())?;
    // The helpers are run here, bounded (see `helper_credentials`); the crate reads `auths`
    // only, from the config without them.
    let (helper, store) = helpers_of(&mut config, &server).ok_or_else(not_json)?;
    if let Some(helper) = helper {
        return helper_credentials(&helper, server).map_err(|reason| error(&reason));
    }
    let auths_only = serde_json::to_vec(&config).map_err(|_| not_json())?;
    match docker_credential::get_credential_from_reader(auths_only.as_slice(), &server) {
        Ok(DockerCredential::UsernamePassword(username, password)) => Ok(Some(Credentials {
            server,
            username: Some(username),
            password: Some(password),
            identity_token: None,
        })),
        Ok(DockerCredential::IdentityToken(token)) => Ok(Some(Credentials {
            server,
            username: None,
            password: None,
            identity_token: Some(token),
        })),
        Err(CredentialRetrievalError::NoCredentialConfigured) => match store {
            Some(store) => helper_credentials(&store, server).map_err(|reason| error(&reason)),
            None => Ok(None),
        },
        // No helper is left in the config the crate reads: it runs none.
        Err(
            CredentialRetrievalError::HelperFailure { .. }
            | CredentialRetrievalError::HelperCommunicationError
            | CredentialRetrievalError::MalformedHelperResponse,
        ) => Err(error("its credential helper could not be asked")),
        Err(CredentialRetrievalError::CredentialDecodingError) => {
            Err(error("its `auth` entry is not base64 of `user:password`"))
        }
        Err(CredentialRetrievalError::CredentialMismatchError) => Err(error(
            "its `auth` entry does not match its `username` and `password`",
        )),
        Err(CredentialRetrievalError::ConfigNotFound) => Ok(None),
        Err(CredentialRetrievalError::ConfigReadError) => Err(error(
            "the file is not valid JSON of Docker's config format",
        )),
    }
}

/// The helper `config` names for `server` (`credHelpers`) and its `credsStore`, both taken
/// out of it; `None` when those entries are not what Docker's format says (strings).
/// Docker's order: the server's `credHelpers` entry, then `auths`, then `credsStore`.
fn helpers_of(
    config: &mut serde_json::Value,
    server: &str,
) -> Option<(Option<String>, Option<String>)> {
    use serde_json::Value;
    let Some(object) = config.as_object_mut() else {
        return Some((None, None));
    };
    let named = |value: Option<&Value>| -> Option<Option<String>> {
        match value {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(name)) if name.is_empty() => Some(None),
            Some(Value::String(name)) => Some(Some(name.clone())),
            Some(_) => None,
        }
    };
    let helper = match object.remove("credHelpers") {
        None | Some(Value::Null) => None,
        Some(Value::Object(helpers)) => {
            if !helpers.values().all(|v| v.is_string()) {
                return None;
            }
            named(helpers.get(server))?
        }
        Some(_) => return None,
    };
    let store = named(object.remove("credsStore").as_ref())?;
    Some((helper, store))
}

/// How long a credential helper may take to answer: `STACKCTL_CREDENTIAL_TIMEOUT` (seconds)
/// or 30 s. A helper blocked on a keyring or a passphrase prompt nobody sees (a CI job)
/// would otherwise hold the command forever.
pub fn helper_timeout() -> std::time::Duration {
    std::env::var("STACKCTL_CREDENTIAL_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&s| s > 0 && s <= 3600)
        .map(std::time::Duration::from_secs)
        .unwrap_or(std::time::Duration::from_secs(30))
}

/// Ask `docker-credential-HELPER get` for `server`'s credentials, as Docker's protocol says
/// (the server on stdin, `{"Username","Secret"}` on stdout; "credentials not found" means
/// none). The helper runs in its own process group, bounded by [`helper_timeout`]; on the
/// bound, an interrupt, or stackctl's death (the parent-death signal) the group is killed,
/// so neither the helper nor what it started outlives the command. The error is the
/// reason only, without the helper's words (they may hold anything).
fn helper_credentials(helper: &str, server: String) -> Result<Option<Credentials>, String> {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    let program = format!("docker-credential-{helper}");
    let mut command = std::process::Command::new(&program);
    command
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    // SAFETY: prctl with PR_SET_PDEATHSIG is async-signal-safe and only affects the child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| {
        format!(
            "its credential helper `{program}` (from `credsStore` or `credHelpers`) could not be run: {}; is it on PATH?",
            crate::error::io_reason(&e)
        )
    })?;
    let group = child.id() as libc::pid_t;
    crate::interrupt::register_group(group);
    let kill_group = |child: &mut std::process::Child| {
        // SAFETY: a signal to the process group of a child this function started.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = child.wait();
        crate::interrupt::forget_group(group);
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(1 << 20).read_to_end(&mut text);
            }
            text
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let bound = helper_timeout();
    let started = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill_group(&mut child);
                return Err(format!("`{program} get`: {}", crate::error::io_reason(&e)));
            }
        }
        if crate::interrupt::requested() {
            kill_group(&mut child);
            return Err(format!("`{program} get` was stopped: interrupted"));
        }
        if started.elapsed() >= bound {
            kill_group(&mut child);
            return Err(format!(
                "its credential helper `{program} get` did not answer within {} s (stopped); it may be waiting for a keyring or a passphrase prompt (`STACKCTL_CREDENTIAL_TIMEOUT=SECONDS` changes the bound)",
                bound.as_secs()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // The helper is gone; what it started may still hold its pipes open.
    // SAFETY: as above, the group of the child this function started.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
    crate::interrupt::forget_group(group);
    let stdout = stdout.join().unwrap_or_default();
    let _ = stderr.join();
    if !status.success() {
        if String::from_utf8_lossy(&stdout).contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!("`{program} get` failed"));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        username: String,
        secret: String,
    }
    let answer: Answer = serde_json::from_slice(&stdout).map_err(|_| {
        format!("the answer of its credential helper `{program}` is not the JSON Docker's protocol expects")
    })?;
    Ok(Some(if answer.username == "<token>" {
        Credentials {
            server,
            username: None,
            password: None,
            identity_token: Some(answer.secret),
        }
    } else {
        Credentials {
            server,
            username: Some(answer.username),
            password: Some(answer.secret),
            identity_token: None,
        }
    }))
}

/// What went wrong talking to a registry, read from the engine's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The repository or the tag does not exist.
    NotFound,
    /// Wrong or missing credentials.
    Unauthorized,
    /// The registry did not answer (refused, no such host, timeout).
    Unreachable,
    /// Anything else (a rate limit, a 5xx): the registry's own message is shown.
    Other,
}

/// Classify an engine's pull or push failure message.
pub fn classify(message: &str) -> Problem {
    let m = message.to_ascii_lowercase();
    if m.contains("unauthorized")
        || m.contains("authentication required")
        || m.contains("no basic auth credentials")
        || m.contains("incorrect username or password")
        || m.contains("denied: requested access")
    {
        Problem::Unauthorized
    } else if m.contains("manifest unknown")
        || m.contains("name unknown")
        || m.contains("not found")
        || m.contains("repository does not exist")
    {
        Problem::NotFound
    } else if m.contains("connection refused")
        || m.contains("no such host")
        || m.contains("i/o timeout")
        || m.contains("no route to host")
        || m.contains("network is unreachable")
        || m.contains("tls handshake timeout")
        || m.contains("no progress for")
        || m.contains("server misbehaving")
    {
        Problem::Unreachable
    } else {
        Problem::Other
    }
}

/// A pull or push that failed, in words that say what to do. Never holds a credential
/// (the engine's messages do not carry them).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RegistryError {
    pub message: String,
    /// The image reference pulled or pushed.
    pub reference: Option<String>,
    pub hint: Option<String>,
    pub problem: Problem,
}

impl crate::error::Hint for RegistryError {
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

impl RegistryError {
    /// `operation` is `pull` or `push`; `owner` how messages name who needs the image
    /// (`service `api` (stacks/dev.yml:4:5)`); `engine_message` the engine's words.
    pub fn new(operation: &str, reference: &str, owner: &str, engine_message: &str) -> Self {
        let registry = match registry_of(reference) {
            Some(host) => format!("the registry `{host}`"),
            None => "the default registry".to_string(),
        };
        let problem = classify(engine_message);
        let (message, hint) = match problem {
            Problem::NotFound => (
                format!(
                    "{operation} `{reference}` for {owner}: {registry} has no such repository or tag ({})",
                    engine_message.trim()
                ),
                Some("check the image name and tag; `docker login` if the repository is private".to_string()),
            ),
            Problem::Unauthorized => (
                format!(
                    "{operation} `{reference}` for {owner}: {registry} refused the credentials (or there were none)"
                ),
                Some(login_hint(reference)),
            ),
            Problem::Unreachable => (
                format!(
                    "{operation} `{reference}` for {owner}: {registry} cannot be reached ({})",
                    engine_message.trim()
                ),
                Some("check the registry address and the network; without a registry, load the image with `docker load` and set `pull_policy: never`".to_string()),
            ),
            Problem::Other => (
                format!(
                    "{operation} `{reference}` for {owner}: {}",
                    engine_message.trim()
                ),
                None,
            ),
        };
        RegistryError {
            message,
            reference: Some(reference.to_string()),
            hint,
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_the_first_component_when_it_looks_like_a_host() {
        assert_eq!(
            registry_of("127.0.0.1:5000/shop/api:1"),
            Some("127.0.0.1:5000")
        );
        assert_eq!(registry_of("localhost/api"), Some("localhost"));
        assert_eq!(
            registry_of("registry.example.com/api"),
            Some("registry.example.com")
        );
        assert_eq!(registry_of("library/redis:7"), None);
        assert_eq!(registry_of("postgres:16-alpine"), None);
        assert!(login_hint("postgres").contains("`docker login`"));
        let hint = login_hint("127.0.0.1:5000/a");
        assert!(
            hint.contains("`auths` entry for `127.0.0.1:5000`"),
            "{hint}"
        );
        assert!(hint.contains("DOCKER_CONFIG"), "{hint}");
        assert!(hint.contains("config.json"), "{hint}");
    }

    #[test]
    fn tags_split_after_the_last_slash() {
        assert_eq!(
            split_tag("127.0.0.1:5000/api"),
            ("127.0.0.1:5000/api", Some("latest"))
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/api:v2"),
            ("127.0.0.1:5000/api", Some("v2"))
        );
        assert_eq!(split_tag("busybox"), ("busybox", Some("latest")));
    }

    #[test]
    fn references_follow_dockers_grammar() {
        for good in [
            "busybox",
            "postgres:16-alpine",
            "127.0.0.1:5000/shop/api:1.2_3",
            "a__b/c-d--e:x",
            "localhost/x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(reference_problem(good), None, "{good}");
        }
        for bad in [
            "Busybox",
            "api:",
            "api:-x",
            "a//b",
            "shop/api:v 1",
            "x@sha256:12",
            "-a",
        ] {
            assert!(reference_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn engine_messages_are_classified() {
        assert_eq!(
            classify(
                "manifest for 127.0.0.1:5000/x:nope not found: manifest unknown: manifest unknown"
            ),
            Problem::NotFound
        );
        assert_eq!(
            classify("Head \"http://127.0.0.1:5000/v2/x/manifests/1\": no basic auth credentials"),
            Problem::Unauthorized
        );
        assert_eq!(
            classify("unauthorized: authentication required"),
            Problem::Unauthorized
        );
        assert_eq!(
            classify(
                "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused"
            ),
            Problem::Unreachable
        );
        assert_eq!(
            classify("toomanyrequests: You have reached your pull rate limit"),
            Problem::Other
        );
        let err = RegistryError::new(
            "pull",
            "127.0.0.1:5000/a:1",
            "service `db`",
            "unauthorized: authentication required",
        );
        assert_eq!(
            err.hint.as_deref(),
            Some(login_hint("127.0.0.1:5000/x").as_str())
        );
    }

    #[test]
    fn from_lines_name_the_base_images() {
        let args = std::collections::HashMap::from([(
            "BASE".to_string(),
            "127.0.0.1:5000/b:1".to_string(),
        )]);
        let text = "ARG BASE=x\nARG OTHER=o:2\nFROM --platform=linux/amd64 ${BASE} AS build\nRUN true\nFROM $OTHER\nFROM build\nFROM scratch\n";
        assert_eq!(
            from_images(text, &args),
            vec!["127.0.0.1:5000/b:1".to_string(), "o:2".to_string()]
        );
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let c = Credentials {
            server: "127.0.0.1:5000".into(),
            username: Some("u".into()),
            password: Some("hunter2".into()),
            identity_token: None,
        };
        assert_eq!(format!("{c:?}"), "Credentials(127.0.0.1:5000)");
    }
}
