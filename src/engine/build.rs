//! Image builds: the context tarred with Docker's `.dockerignore` rules, streamed progress,
//! and the failing step's output on failure.
//!
//! Builds use the engine's BuildKit (`/build?version=2`) when the engine runs Linux and
//! speaks API 1.39 or later, as the docker CLI does: an edit rebuild is one cached solve
//! instead of a container commit per Dockerfile step (about a second against three here).
//! A BuildKit build runs a session (an HTTP upgrade through the same client, so it works
//! over ssh too) that answers the engine's questions for registry credentials when it pulls
//! a `FROM` image; its progress arrives as `moby.buildkit.trace` records (steps, their
//! output, their errors). `DOCKER_BUILDKIT=0` forces the classic builder, which reports
//! progress as plain lines (ENGINE-NOTES §2); an engine that turns a BuildKit request down
//! gets the classic builder from then on, and so do the builds BuildKit cannot do as the
//! classic builder would (`fit_builder`, `buildkit_can`).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;

use bollard::body_try_stream;
use bollard::errors::Error as BollardError;
use bollard::moby::buildkit::v1::StatusResponse;
use bollard::models::{BuildInfo, BuildInfoAux};
use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion, RemoveImageOptions};
use futures_util::StreamExt;

use super::{Engine, EngineError};
use crate::context;
use crate::names;

/// One image to build.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The build context directory (absolute).
    pub context: PathBuf,
    /// Dockerfile path relative to the context (default `Dockerfile`).
    pub dockerfile: Option<String>,
    pub args: HashMap<String, String>,
    pub target: Option<String>,
    pub labels: HashMap<String, String>,
    /// The tag to give the image (`project/service:stage`, or the service's `image:`).
    pub tag: String,
    pub no_cache: bool,
    /// A Dockerfile's text, sent instead of one from the context.
    pub dockerfile_inline: Option<String>,
    /// Images whose layers the builder may reuse.
    pub cache_from: Vec<String>,
    /// The network `RUN` steps use (`host`, `none`, `default`).
    pub network: Option<String>,
    /// Bytes of `/dev/shm` for `RUN` steps.
    pub shm_size: Option<i64>,
    /// Pull base images at every build.
    pub pull: bool,
    /// Credentials for the registries the `FROM` images are pulled from.
    pub registry_auth: Vec<crate::registry::Credentials>,
    /// More tags the built image gets (entries sharing one build).
    pub also_tags: Vec<String>,
}

/// How many lines of a failing step's output an error shows.
const FAILURE_LINES: usize = 30;

/// A build that failed: which image, at which step, the step's output and the daemon's
/// message, and what to do about it.
#[derive(Debug)]
pub struct BuildError {
    pub tag: String,
    /// The failing step as the builder printed it (`Step 3/4 : RUN exit 7`).
    pub step: Option<String>,
    /// The last lines the failing step printed.
    pub output: Vec<String>,
    /// Lines of output left out before `output`.
    pub omitted: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "build of image `{}` failed", self.tag)?;
        if let Some(step) = &self.step {
            write!(f, " at {}", describe_step(step))?;
        }
        write!(f, ": {}", self.message)?;
        if self.omitted > 0 {
            write!(f, "\n  | … ({} earlier lines)", self.omitted)?;
        }
        for line in &self.output {
            write!(f, "\n  | {line}")?;
        }
        // The hint is printed on its own line by the reporter (`crate::error::Hint`).
        Ok(())
    }
}

impl std::error::Error for BuildError {}

impl crate::error::Hint for BuildError {
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}

/// A step as the builder named it, said for a message: `Step 3/4 : RUN exit 7` (classic)
/// and `[3/4] RUN exit 7` (BuildKit) → "step 3/4 `RUN exit 7`"; `[builder 2/3] RUN make`
/// → "step 2/3 `RUN make` of stage `builder`"; BuildKit's look-up of a base image
/// (`[internal] load metadata for x`) → "`FROM`"; anything else quoted whole.
fn describe_step(step: &str) -> String {
    if let Some((number, instruction)) = step
        .strip_prefix("Step ")
        .and_then(|rest| rest.split_once(" : "))
    {
        return format!("step {number} `{instruction}`");
    }
    if step.starts_with("[internal] load metadata for ") {
        return "`FROM`".to_string();
    }
    if let Some((stage, number, instruction)) = buildkit_step(step) {
        return match stage {
            Some(stage) => format!("step {number} `{instruction}` of stage `{stage}`"),
            None => format!("step {number} `{instruction}`"),
        };
    }
    format!("`{step}`")
}

/// A BuildKit Dockerfile step, `[STAGE N/M] INSTRUCTION` or `[N/M] INSTRUCTION`: its stage,
/// `N/M` and instruction.
fn buildkit_step(step: &str) -> Option<(Option<&str>, &str, &str)> {
    let (inside, instruction) = step.strip_prefix('[')?.split_once("] ")?;
    let (stage, number) = match inside.rsplit_once(' ') {
        Some((stage, number)) => (Some(stage), number),
        None => (None, inside),
    };
    let (n, m) = number.split_once('/')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    (digits(n) && digits(m)).then_some((stage, number, instruction))
}

/// The line of a build's progress that names a step (the rest is the steps' output): what
/// `stackctl build` shows without `-v`.
pub fn is_step(line: &str) -> bool {
    (line.starts_with("Step ") && line.contains(" : ")) || buildkit_step(line).is_some()
}

/// The instruction a step runs: `FROM x` for BuildKit's `[internal] load metadata for x`
/// (the base image looked up before any step).
fn step_instruction(step: &str) -> Option<String> {
    if let Some((_, instruction)) = step.split_once(" : ").filter(|_| step.starts_with("Step ")) {
        return Some(instruction.to_string());
    }
    if let Some((_, _, instruction)) = buildkit_step(step) {
        return Some(instruction.to_string());
    }
    step.strip_prefix("[internal] load metadata for ")
        .map(|image| format!("FROM {image}"))
}

/// The output seen so far. Classic builder: the current step and the lines it printed.
/// BuildKit: every step (vertex) with the last lines it printed, and the first that failed.
#[derive(Default)]
struct Transcript {
    step: Option<String>,
    lines: VecDeque<String>,
    omitted: usize,
    /// Text after the last newline, until the rest of its line arrives.
    partial: String,
    /// BuildKit's steps by digest.
    vertices: HashMap<String, Vertex>,
    /// The digest of the BuildKit step that failed, and its error.
    failed: Option<(String, String)>,
}

/// One BuildKit step: its name and the last lines it printed.
#[derive(Default)]
struct Vertex {
    name: String,
    /// Whether its name went to the progress already.
    announced: bool,
    lines: VecDeque<String>,
    omitted: usize,
    partial: String,
}

/// Take `chunk` into `partial` and return the complete lines, cleaned (no ANSI codes, no
/// trailing blanks, no empty lines).
fn complete_lines(partial: &mut String, chunk: &str) -> Vec<String> {
    partial.push_str(chunk);
    let mut complete = Vec::new();
    while let Some(end) = partial.find(['\n', '\r']) {
        let line: String = partial.drain(..=end).collect();
        let line = strip_ansi(line.trim_end_matches(['\n', '\r']));
        let line = line.trim_end();
        if !line.is_empty() {
            complete.push(line.to_string());
        }
    }
    complete
}

/// Keep `line` among the last `FAILURE_LINES`.
fn keep(lines: &mut VecDeque<String>, omitted: &mut usize, line: &str) {
    if lines.len() == FAILURE_LINES {
        lines.pop_front();
        *omitted += 1;
    }
    lines.push_back(line.to_string());
}

impl Transcript {
    /// Take a chunk of the build's `stream`, and return its complete lines, cleaned.
    fn push(&mut self, chunk: &str) -> Vec<String> {
        let complete = complete_lines(&mut self.partial, chunk);
        for line in &complete {
            self.record(line);
        }
        complete
    }

    /// The rest of an unterminated last line.
    fn finish(&mut self) -> Option<String> {
        let line = strip_ansi(&std::mem::take(&mut self.partial))
            .trim_end()
            .to_string();
        for vertex in self.vertices.values_mut() {
            let rest = strip_ansi(&std::mem::take(&mut vertex.partial));
            if !rest.trim_end().is_empty() {
                keep(&mut vertex.lines, &mut vertex.omitted, rest.trim_end());
            }
        }
        if line.is_empty() {
            return None;
        }
        self.record(&line);
        Some(line)
    }

    fn record(&mut self, line: &str) {
        if line.starts_with("Step ") && line.contains(" : ") {
            self.step = Some(line.to_string());
            self.lines.clear();
            self.omitted = 0;
            return;
        }
        // Builder bookkeeping is not the step's output.
        if line.starts_with(" ---> ") || line.starts_with("Removing intermediate container") {
            return;
        }
        keep(&mut self.lines, &mut self.omitted, line);
    }

    /// Take one BuildKit status record; return the lines to show: each step's name when
    /// it starts (`[2/3] COPY . /app`, `… (cached)` when the cache had it), and the lines
    /// the steps print.
    fn trace(&mut self, status: &StatusResponse) -> Vec<String> {
        let mut shown = Vec::new();
        for v in &status.vertexes {
            let vertex = self.vertices.entry(v.digest.clone()).or_default();
            if !v.name.is_empty() {
                vertex.name = strip_ansi(&v.name);
            }
            if !vertex.announced && (v.started.is_some() || v.cached) {
                vertex.announced = true;
                shown.push(if v.cached {
                    format!("{} (cached)", vertex.name)
                } else {
                    vertex.name.clone()
                });
            }
            // The first error is the cause; steps running beside it end "canceled".
            let cause = match &self.failed {
                None => true,
                Some((_, seen)) => is_canceled(seen) && !is_canceled(&v.error),
            };
            if !v.error.is_empty() && cause {
                self.failed = Some((v.digest.clone(), v.error.clone()));
            }
        }
        for log in &status.logs {
            let vertex = self.vertices.entry(log.vertex.clone()).or_default();
            let lines = complete_lines(&mut vertex.partial, &String::from_utf8_lossy(&log.msg));
            for line in &lines {
                keep(&mut vertex.lines, &mut vertex.omitted, line);
            }
            shown.extend(lines);
        }
        shown
    }

    /// The failing BuildKit step: its name, its last lines and how many were left out
    /// before them, and its error.
    fn failed_vertex(&self) -> Option<(String, Vec<String>, usize, String)> {
        let (digest, error) = self.failed.as_ref()?;
        let vertex = self.vertices.get(digest)?;
        Some((
            vertex.name.clone(),
            vertex.lines.iter().cloned().collect(),
            vertex.omitted,
            error.trim().to_string(),
        ))
    }
}

/// A step stopped because another failed (or the build was given up).
fn is_canceled(error: &str) -> bool {
    error.contains("context canceled")
}

/// Remove ANSI escape sequences (a `RUN` step's stderr arrives coloured) and other control
/// characters except tabs.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            match chars.next() {
                // CSI: parameters and intermediates, then one final byte in @..~.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC: up to BEL or ESC \.
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\x07' {
                            break;
                        }
                        if c == '\x1b' {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            }
        } else if ch == '\t' || !ch.is_control() {
            out.push(ch);
        }
    }
    out
}

/// The image a `FROM` instruction names (after its `--platform=…` flag).
fn from_reference(instruction: &str) -> Option<&str> {
    let mut words = instruction.split_whitespace();
    words.next().filter(|w| w.eq_ignore_ascii_case("FROM"))?;
    words.find(|w| !w.starts_with("--"))
}

/// `docker.io/library/x` and `x:latest` are `x`: image names compared as the engine does.
fn normalized(reference: &str) -> String {
    let short = reference.strip_prefix("docker.io/").unwrap_or(reference);
    let short = short.strip_prefix("library/").unwrap_or(short);
    let last = short.rsplit('/').next().unwrap_or(short);
    if last.contains('@') || last.contains(':') {
        short.to_string()
    } else {
        format!("{short}:latest")
    }
}

/// The base image a failing `FROM` step asked for, with `$ARG`s resolved from the build
/// args and the Dockerfile's `ARG` defaults; and the names of the args it used. BuildKit
/// names the image resolved and normalized (`docker.io/library/x:latest`): the Dockerfile's
/// `FROM` line that resolves to it says how it was written.
fn base_image(request: &BuildRequest, step: &str) -> (Option<String>, Vec<String>) {
    let Some(instruction) = step_instruction(step) else {
        return (None, Vec::new());
    };
    let Some(reference) = from_reference(&instruction) else {
        return (None, Vec::new());
    };
    let text = match &request.dockerfile_inline {
        Some(text) => Some(text.clone()),
        None => std::fs::read_to_string(
            request
                .context
                .join(request.dockerfile.as_deref().unwrap_or("Dockerfile")),
        )
        .ok(),
    }
    .unwrap_or_default();
    let mut defaults: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let mut words = line.splitn(2, char::is_whitespace);
        if words.next().is_some_and(|w| w.eq_ignore_ascii_case("ARG")) {
            if let Some((name, value)) = words.next().and_then(|d| d.trim().split_once('=')) {
                defaults
                    .entry(name.to_string())
                    .or_insert_with(|| value.trim_matches('"').to_string());
            }
        }
    }
    let variable = regex::Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?").ok();
    let resolve = |reference: &str| -> (String, Vec<String>) {
        let mut used = Vec::new();
        let resolved = match &variable {
            Some(re) => re
                .replace_all(reference, |caps: &regex::Captures| {
                    let name = caps[1].to_string();
                    let value = request
                        .args
                        .get(&name)
                        .or_else(|| defaults.get(&name))
                        .cloned()
                        .unwrap_or_default();
                    used.push(name);
                    value
                })
                .into_owned(),
            None => reference.to_string(),
        };
        (resolved, used)
    };
    if !step.starts_with("Step ") {
        let wanted = normalized(reference);
        let written = text
            .lines()
            .filter_map(|line| from_reference(line.trim()))
            .map(&resolve)
            .find(|(resolved, _)| !resolved.is_empty() && normalized(resolved) == wanted);
        return match written {
            Some((resolved, used)) => (Some(resolved), used),
            None => {
                let short = reference.strip_prefix("docker.io/").unwrap_or(reference);
                let short = short.strip_prefix("library/").unwrap_or(short);
                (Some(short.to_string()), Vec::new())
            }
        };
    }
    let (resolved, used) = resolve(reference);
    let resolved = (!resolved.is_empty()).then_some(resolved);
    (resolved, used)
}

/// Turn the daemon's failure into a `BuildError` with a hint fitting the cause: the failing
/// BuildKit step's error when one failed, else `message`.
fn failure(request: &BuildRequest, transcript: &mut Transcript, message: String) -> BuildError {
    let _ = transcript.finish();
    let (step, output, omitted, message) = match transcript.failed_vertex() {
        Some((name, lines, omitted, error)) => (Some(name), lines, omitted, error),
        None => (
            transcript.step.clone(),
            transcript.lines.iter().cloned().collect(),
            transcript.omitted,
            message,
        ),
    };
    let mut error = BuildError {
        tag: request.tag.clone(),
        step: step.clone(),
        output,
        omitted,
        message,
        hint: None,
    };
    let failing_from = step
        .as_deref()
        .and_then(step_instruction)
        .is_some_and(|i| from_reference(&i).is_some());
    if failing_from && !error.message.contains("invalid reference format") {
        let (image, args) = base_image(request, step.as_deref().unwrap_or_default());
        let name = image
            .map(|i| format!("`{i}`"))
            .unwrap_or_else(|| "the base image".to_string());
        error.message = format!(
            "base image {name} is not present locally and could not be pulled (no registry may be reachable): {}",
            error.message
        );
        error.output.clear();
        error.omitted = 0;
        error.hint = Some(if args.is_empty() {
            format!("build or import {name} first (`docker build -t …`, `docker import … TAG`); stackctl never pulls implicitly")
        } else {
            format!(
                "build or import {name} first, or set the build arg {} to an image present locally",
                args.iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    } else if error.message.contains("Cannot locate specified Dockerfile") {
        error.hint = Some(
            "check `dockerfile:` under `build:`; it is relative to the build context".to_string(),
        );
    } else if error.message.contains("dockerfile parse error") {
        let file = request.dockerfile.as_deref().unwrap_or("Dockerfile");
        error.message = format!("`{file}` is not valid: {}", error.message);
    }
    error
}

/// Put every label into one `LABEL` instruction at the end of the Dockerfile sent (the file
/// on disk is untouched). The engine turns the `labels` build option into one `LABEL` step
/// per label, each a container commit: with the five labels of a stage image that is about
/// three seconds per uncached build here. Only when the last stage is the one built (no
/// `target`), no parser directive changes the escape character, and every label fits on
/// one line; otherwise the labels go as the build option. Returns whether it did.
fn inline_labels(
    context: &mut context::BuildContext,
    labels: &HashMap<String, String>,
) -> Result<bool, context::ContextError> {
    let Some(instruction) = label_instruction(labels) else {
        return Ok(false);
    };
    let mut text = context
        .dockerfile_text()
        .map_err(|source| context::ContextError::Io {
            path: context.root.join(&context.dockerfile),
            source,
        })?;
    let escape_directive = String::from_utf8_lossy(&text)
        .lines()
        .take_while(|line| line.trim_start().starts_with('#'))
        .any(|line| line.to_ascii_lowercase().contains("escape"));
    if escape_directive {
        return Ok(false);
    }
    if !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(instruction.as_bytes());
    text.push(b'\n');
    context.replace_dockerfile(text);
    Ok(true)
}

/// `LABEL "k1"="v1" "k2"="v2"`, sorted by key; None when there are none or a key or value
/// holds a line break.
fn label_instruction(labels: &HashMap<String, String>) -> Option<String> {
    if labels.is_empty() {
        return None;
    }
    let quote = |text: &str| {
        text.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
    };
    let mut keys: Vec<&String> = labels.keys().collect();
    keys.sort();
    let mut line = String::from("LABEL");
    for key in keys {
        let value = &labels[key];
        if key.contains(['\n', '\r']) || value.contains(['\n', '\r']) {
            return None;
        }
        line.push_str(&format!(" \"{}\"=\"{}\"", quote(key), quote(value)));
    }
    Some(line)
}

/// The build context scanned (off the async threads: it walks the whole directory), with
/// the labels written into the Dockerfile when they can be (classic builder). Returns
/// whether the labels still have to be sent as build options (always with BuildKit, where
/// they cost no step; a `target` build, or labels that cannot be written as one `LABEL`
/// line), and the builder that can build it ([`fit_builder`]).
async fn prepare_context(
    request: &BuildRequest,
    builder: Builder,
) -> anyhow::Result<(
    context::BuildContext,
    HashMap<String, String>,
    bool,
    Builder,
)> {
    let tag = request.tag.clone();
    let scan_root = request.context.clone();
    let dockerfile = request.dockerfile.clone();
    let inline = request.dockerfile_inline.clone();
    let mut labels = request.labels.clone();
    let labels_inline = request.target.is_none();
    let args = request.args.clone();
    let target = request.target.clone();
    tokio::task::spawn_blocking(move || {
        let mut context = match inline {
            Some(text) => context::scan_inline(&scan_root, text.into_bytes())?,
            None => context::scan(&scan_root, dockerfile.as_deref())?,
        };
        // The inputs' digest, before the labels are written into the Dockerfile.
        let inputs = crate::context::digest::Inputs {
            args: &args,
            target: target.as_deref(),
        };
        let digest = crate::context::digest::digest(&context, &inputs).map_err(|source| {
            context::ContextError::Io {
                path: scan_root.clone(),
                source,
            }
        })?;
        labels.insert(
            crate::names::image_label::CONTEXT.to_string(),
            digest.digest,
        );
        let builder = fit_builder(&mut context, builder);
        let inlined =
            builder == Builder::Classic && labels_inline && inline_labels(&mut context, &labels)?;
        Ok::<_, context::ContextError>((context, labels, !inlined, builder))
    })
    .await
    .map_err(|e| anyhow::anyhow!("build of image `{tag}`: {e}"))?
    .map_err(|e| anyhow::anyhow!("build of image `{tag}`: {e}"))
}

/// The builder that sees the context as `COPY` must: the classic builder hides a
/// generated Dockerfile (`dockerfile_inline`, one from outside the context) and a Dockerfile
/// or `.dockerignore` that `.dockerignore` lists; BuildKit, given an uploaded context, hides
/// nothing. So such a Dockerfile keeps the classic builder, and a `.dockerignore` listing
/// itself stays out of what BuildKit gets (it does not read it from an upload).
fn fit_builder(context: &mut context::BuildContext, builder: Builder) -> Builder {
    if builder == Builder::Classic {
        return builder;
    }
    if context.generated_dockerfile.is_some() || context.dockerfile_ignored {
        return Builder::Classic;
    }
    if context.dockerignore_ignored {
        let before = context.entries.len();
        context
            .entries
            .retain(|e| e.name != std::path::Path::new(".dockerignore"));
        context.files = context.files.saturating_sub(before - context.entries.len());
    }
    builder
}

/// Which of the engine's builders runs a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    /// `/build?version=2`, with a session.
    BuildKit,
    /// The builder that commits a container per Dockerfile step.
    Classic,
}

impl fmt::Display for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Builder::BuildKit => "BuildKit",
            Builder::Classic => "classic",
        })
    }
}

/// The builder found for each engine this process built on (by address); an engine that
/// turned a BuildKit build down is `Classic` from then on.
static CHOSEN: std::sync::Mutex<Vec<(String, Builder)>> = std::sync::Mutex::new(Vec::new());

fn chosen(address: &str) -> Option<Builder> {
    let chosen = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
    chosen.iter().find(|(a, _)| a == address).map(|(_, b)| *b)
}

fn remember(address: &str, builder: Builder) {
    let mut chosen = CHOSEN.lock().unwrap_or_else(|e| e.into_inner());
    chosen.retain(|(a, _)| a != address);
    chosen.push((address.to_string(), builder));
}

/// `DOCKER_BUILDKIT`, Docker's own switch: `Some(false)` forces the classic builder,
/// `Some(true)` BuildKit; unset or empty leaves the choice to the engine. A value that is
/// not a boolean (as Go reads one) is a usage error.
pub fn buildkit_switch() -> Result<Option<bool>, crate::error::UsageError> {
    match std::env::var_os("DOCKER_BUILDKIT") {
        Some(value) => parse_switch(&value.to_string_lossy()),
        None => Ok(None),
    }
}

fn parse_switch(value: &str) -> Result<Option<bool>, crate::error::UsageError> {
    match value.trim() {
        "" => Ok(None),
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Some(true)),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Some(false)),
        other => Err(crate::error::UsageError::new(format!(
            "DOCKER_BUILDKIT is `{other}`, which is not a boolean"
        ))
        .with_hint("set DOCKER_BUILDKIT=0 for the classic builder or 1 for BuildKit, or unset it to let the engine decide")),
    }
}

/// Whether the engine's BuildKit does what the request asks as the classic builder does:
/// it takes only the networks `default`, `host` and `none` (not a user-defined one), ignores
/// `shm_size` (20.10: `/dev/shm` stays 64 MB) and takes a `cache_from` image as cache only
/// when it was built with inline cache metadata. Such builds keep the classic builder.
fn buildkit_can(request: &BuildRequest) -> bool {
    let network = request
        .network
        .as_deref()
        .is_none_or(|n| matches!(n, "" | "default" | "host" | "none"));
    network && request.shm_size.is_none() && request.cache_from.is_empty()
}

/// A random session ID (the engine finds the build's session by it).
fn session_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("stackctl-{hex}")
}

/// A BuildKit build the engine refused because it has no BuildKit (not a failing build):
/// its message.
fn turned_down(err: &BollardError, transcript: &Transcript) -> Option<String> {
    let BollardError::DockerResponseServerError {
        status_code,
        message,
    } = err
    else {
        return None;
    };
    let lower = message.to_ascii_lowercase();
    let refused = lower.contains("buildkit")
        && ["not supported", "unsupported", "not enabled", "disabled"]
            .iter()
            .any(|w| lower.contains(w));
    (refused && (400..=501).contains(status_code) && transcript.vertices.is_empty())
        .then(|| message.trim().to_string())
}

/// How one build attempt ended, when it did not give an image.
enum Attempt {
    /// The engine has no BuildKit: try again with the classic builder.
    TurnedDown(String),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Attempt {
    fn from(err: anyhow::Error) -> Self {
        Attempt::Failed(err)
    }
}

/// The credentials the builder gets for the registries the `FROM` lines name (None: it
/// pulls anonymously).
fn registry_auth(
    request: &BuildRequest,
) -> Option<HashMap<String, bollard::auth::DockerCredentials>> {
    (!request.registry_auth.is_empty()).then(|| {
        request
            .registry_auth
            .iter()
            .map(|c| (c.server.clone(), super::registry::to_bollard(c)))
            .collect()
    })
}

fn build_options(
    request: &BuildRequest,
    dockerfile: &str,
    labels: Option<&HashMap<String, String>>,
    builder: Builder,
) -> bollard::query_parameters::BuildImageOptions {
    let mut options = BuildImageOptionsBuilder::default();
    if builder == Builder::BuildKit {
        options = options
            .version(BuilderVersion::BuilderBuildKit)
            .session(&session_id());
    }
    let mut options = options
        .dockerfile(dockerfile)
        .t(&request.tag)
        .buildargs(&request.args)
        .rm(true)
        .forcerm(true)
        .nocache(request.no_cache);
    if let Some(target) = &request.target {
        options = options.target(target);
    }
    if !request.cache_from.is_empty() {
        options = options.cachefrom(&request.cache_from);
    }
    if let Some(network) = &request.network {
        options = options.networkmode(network);
    }
    if let Some(size) = request.shm_size.and_then(|s| i32::try_from(s).ok()) {
        options = options.shmsize(size);
    }
    if request.pull {
        options = options.pull("1");
    }
    if let Some(labels) = labels {
        options = options.labels(labels);
    }
    options.build()
}

/// Reads the engine's build stream to its end or its first error: each output line (and
/// each BuildKit step's name) goes to `progress` and into the transcript a failure quotes;
/// the image ID is kept.
async fn follow_build(
    stream: impl futures_util::Stream<Item = Result<BuildInfo, BollardError>>,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> (Transcript, Option<String>, Result<(), BollardError>) {
    let mut stream = Box::pin(stream);
    let mut transcript = Transcript::default();
    let mut image_id: Option<String> = None;
    let mut outcome: Result<(), BollardError> = Ok(());
    while let Some(item) = stream.next().await {
        match item {
            Ok(BuildInfo {
                stream: text, aux, ..
            }) => {
                if let Some(text) = text {
                    for line in transcript.push(&text) {
                        progress(&line);
                    }
                }
                match aux {
                    Some(BuildInfoAux::Default(image)) => {
                        if let Some(id) = image.id {
                            image_id = Some(id);
                        }
                    }
                    Some(BuildInfoAux::BuildKit(status)) => {
                        for line in transcript.trace(&status) {
                            progress(&line);
                        }
                    }
                    None => {}
                }
            }
            // bollard#560: a CRLF split across reads ends a finished build's stream
            // with this error; the image is there.
            Err(BollardError::IOError { err })
                if image_id.is_some() && err.to_string().contains("bytes remaining") =>
            {
                break;
            }
            Err(err) => {
                outcome = Err(err);
                break;
            }
        }
    }
    // Ends the upload too: the context's tar task then finishes instead of waiting on a
    // body nobody reads.
    drop(stream);
    if let Some(line) = transcript.finish() {
        progress(&line);
    }
    (transcript, image_id, outcome)
}

/// A failed build said for the user: the failing step's output and the engine's message
/// (a Dockerfile syntax error names the file); a transport error names the operation.
fn build_failure(
    request: &BuildRequest,
    transcript: &mut Transcript,
    err: BollardError,
) -> anyhow::Error {
    let error = match err {
        BollardError::DockerStreamError { error } => {
            failure(request, transcript, error.trim().to_string())
        }
        BollardError::DockerResponseServerError { message, .. } => {
            failure(request, transcript, message.trim().to_string())
        }
        other => return anyhow::Error::new(EngineError::new("build image", &request.tag, other)),
    };
    error.into()
}

impl Engine {
    /// The builder this engine's builds use: `DOCKER_BUILDKIT` when set; else BuildKit when
    /// the engine runs Linux and speaks API 1.39 or later (what the docker CLI checks), the
    /// classic builder otherwise. Asked once per engine and process.
    pub async fn builder(&self) -> anyhow::Result<Builder> {
        if let Some(on) = buildkit_switch()? {
            return Ok(if on {
                Builder::BuildKit
            } else {
                Builder::Classic
            });
        }
        if let Some(builder) = chosen(&self.address) {
            return Ok(builder);
        }
        let api = self.client().client_version();
        let recent = (api.major_version, api.minor_version) >= (1, 39);
        let linux = match self.client().version().await {
            Ok(version) => version
                .os
                .is_some_and(|os| os.eq_ignore_ascii_case("linux")),
            // Not known: this build uses the classic builder; the next one asks again.
            Err(_) => return Ok(Builder::Classic),
        };
        let builder = if recent && linux {
            Builder::BuildKit
        } else {
            Builder::Classic
        };
        remember(&self.address, builder);
        Ok(builder)
    }

    /// Build an image and return its ID; `progress` receives each output line.
    ///
    /// Choose the builder → prepare the context → send it with the options → follow the
    /// engine's stream → check the upload and the outcome → remove the image the tag used to
    /// name. An engine that turns BuildKit down gets the same build once more, classic.
    pub async fn build_image(
        &self,
        request: &BuildRequest,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> anyhow::Result<String> {
        let mut builder = self.builder().await?;
        if builder == Builder::BuildKit && !buildkit_can(request) {
            builder = Builder::Classic;
        }
        // A tag the engine cannot parse fails the build below, with the engine's message.
        let previous = self.image_id(&request.tag).await.ok().flatten();
        let built = match self.build_with(request, builder, progress).await {
            Err(Attempt::TurnedDown(reason)) if buildkit_switch()? != Some(true) => {
                remember(&self.address, Builder::Classic);
                progress(&format!(
                    "the engine has no BuildKit ({reason}): building with the classic builder"
                ));
                self.build_with(request, Builder::Classic, progress).await
            }
            other => other,
        };
        let id = match built {
            Ok(id) => id,
            Err(Attempt::Failed(err)) => return Err(err),
            Err(Attempt::TurnedDown(reason)) => anyhow::bail!(
                "build of image `{}`: the engine refused a BuildKit build: {reason}",
                request.tag
            ),
        };
        if let Some(previous) = previous.filter(|p| *p != id) {
            self.remove_replaced_image(&previous, request).await;
        }
        for tag in &request.also_tags {
            let (repository, version) = crate::registry::split_tag(tag);
            let options = bollard::query_parameters::TagImageOptionsBuilder::default()
                .repo(repository)
                .tag(version.unwrap_or("latest"))
                .build();
            self.client()
                .tag_image(&id, Some(options))
                .await
                .map_err(|err| EngineError::new("tag", tag, err))?;
        }
        Ok(id)
    }

    /// One build with `builder`.
    async fn build_with(
        &self,
        request: &BuildRequest,
        builder: Builder,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<String, Attempt> {
        let (context, labels, labels_sent, builder) = prepare_context(request, builder).await?;
        progress(&format!(
            "sending build context: {} files, {} ({builder} builder)",
            context.files,
            human_bytes(context.bytes)
        ));
        let options = build_options(
            request,
            &context.dockerfile,
            labels_sent.then_some(&labels),
            builder,
        );
        let (body, tar_task) = context::stream(context);
        let (client, _close) = match builder {
            Builder::BuildKit => match self.closing_client() {
                Some((client, close)) => (client, Some(close)),
                None => (self.long_client(), None),
            },
            Builder::Classic => (self.long_client(), None),
        };
        // The classic builder takes the credentials in a header; BuildKit asks the session.
        let auth = registry_auth(request);
        let stream = client.build_image(options, auth, Some(body_try_stream(body)));
        let (mut transcript, image_id, outcome) = follow_build(stream, progress).await;

        // A context that could not be read explains a broken upload better than the
        // transport error it causes.
        match tar_task.await {
            Ok(Err(e)) => {
                return Err(anyhow::anyhow!(
                    "build of image `{}`: cannot send the build context: {e}",
                    request.tag
                )
                .into())
            }
            Err(e) => return Err(anyhow::anyhow!("build of image `{}`: {e}", request.tag).into()),
            Ok(Ok(())) => {}
        }
        if let Err(err) = outcome {
            if builder == Builder::BuildKit {
                if let Some(reason) = turned_down(&err, &transcript) {
                    return Err(Attempt::TurnedDown(reason));
                }
            }
            return Err(build_failure(request, &mut transcript, err).into());
        }
        image_id.ok_or_else(|| {
            anyhow::anyhow!(
                "build of image `{}`: the engine finished without reporting an image id",
                request.tag
            )
            .into()
        })
    }

    /// The ID of the image `reference` (a tag or an ID), or None when there is no such image.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError> {
        match self.client().inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(err) if super::is_not_found(&err) => Ok(None),
            Err(err) => Err(self.error("inspect image", reference, err)),
        }
    }

    /// After a rebuild moved the tag, remove the image it used to point to when it is ours
    /// (this stage's image labels) and nothing else names it. A container still using it
    /// keeps it alive (`up --build` builds before it recreates the containers): `up` and
    /// `down` remove it once unused ([`Engine::remove_replaced_images`]).
    async fn remove_replaced_image(&self, previous: &str, request: &BuildRequest) {
        let Ok(image) = self.client().inspect_image(previous).await else {
            return;
        };
        let labels = image
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let ours = [names::image_label::PROJECT, names::image_label::STAGE]
            .iter()
            .all(|key| {
                request
                    .labels
                    .get(*key)
                    .is_some_and(|v| labels.get(*key) == Some(v))
            });
        let untagged = image
            .repo_tags
            .as_ref()
            .is_none_or(|tags| tags.iter().all(|t| t == "<none>:<none>"));
        if ours && untagged {
            let _ = self
                .client()
                .remove_image(previous, None::<RemoveImageOptions>, None)
                .await;
        }
    }
}

/// A BuildKit build's own client, whose connections end with the build. bollard runs the
/// build's session on a connection it upgrades and hands to a task of its own, which nothing
/// ever closes: without this, every build of a long `watch` would leave one connection open
/// here and one session on the engine. The connections of this client are shut when the
/// build ends (or is given up): reads see the end, the session's task ends and closes it.
mod closing {
    use std::future::Future;
    use std::io;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    use hyper_util::client::legacy::connect::{Connected, Connection};
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    use crate::engine::ssh::SshSession;

    /// Where the engine is: its local socket, or an ssh session's route.
    #[derive(Clone)]
    pub enum Route {
        Unix(std::path::PathBuf),
        Ssh(Arc<SshSession>),
    }

    /// Shuts every connection of one client.
    #[derive(Default)]
    pub struct Closer {
        closed: AtomicBool,
        /// The task reading each connection, woken when it must see the end.
        readers: Mutex<Vec<Arc<Mutex<Option<Waker>>>>>,
    }

    impl Closer {
        pub fn close(&self) {
            self.closed.store(true, Ordering::SeqCst);
            let readers = self.readers.lock().map(|r| r.clone()).unwrap_or_default();
            for reader in readers {
                if let Some(waker) = reader.lock().ok().and_then(|mut w| w.take()) {
                    waker.wake();
                }
            }
        }

        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::SeqCst)
        }
    }

    /// Closes when dropped: a build given up (Ctrl-C) closes its session too.
    pub struct CloseOnDrop(pub Arc<Closer>);

    impl Drop for CloseOnDrop {
        fn drop(&mut self) {
            self.0.close();
        }
    }

    pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
    impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

    /// One connection: ends (reads give end of file, writes fail) once closed.
    pub struct Closing {
        inner: Box<dyn Io>,
        closer: Arc<Closer>,
        reader: Arc<Mutex<Option<Waker>>>,
    }

    impl AsyncRead for Closing {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.closer.is_closed() {
                return Poll::Ready(Ok(()));
            }
            if let Ok(mut reader) = this.reader.lock() {
                *reader = Some(cx.waker().clone());
            }
            Pin::new(&mut this.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Closing {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.closer.is_closed() {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            Pin::new(&mut this.inner).poll_write(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
    }

    impl Connection for Closing {
        fn connected(&self) -> Connected {
            Connected::new()
        }
    }

    #[derive(Clone)]
    pub struct Connector {
        pub route: Route,
        pub closer: Arc<Closer>,
    }

    impl tower_service::Service<hyper::Uri> for Connector {
        type Response = TokioIo<Closing>;
        type Error = io::Error;
        type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: hyper::Uri) -> Self::Future {
            let route = self.route.clone();
            let closer = self.closer.clone();
            Box::pin(async move {
                let inner: Box<dyn Io> = match route {
                    Route::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
                    Route::Ssh(session) => Box::new(session.connect().await?),
                };
                let reader = Arc::new(Mutex::new(None));
                if let Ok(mut readers) = closer.readers.lock() {
                    readers.push(reader.clone());
                }
                Ok(TokioIo::new(Closing {
                    inner,
                    closer,
                    reader,
                }))
            })
        }
    }
}

impl Engine {
    /// A client of its own for a BuildKit build, and what shuts its connections
    /// ([`closing`]); None for an engine over tcp (its TLS set-up is bollard's), which then
    /// builds on the shared client.
    fn closing_client(&self) -> Option<(bollard::Docker, closing::CloseOnDrop)> {
        let route = match (&self.ssh, self.address.strip_prefix("unix://")) {
            (Some(session), _) => closing::Route::Ssh(session.clone()),
            (None, Some(path)) => closing::Route::Unix(path.into()),
            (None, None) => return None,
        };
        let closer = std::sync::Arc::new(closing::Closer::default());
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(closing::Connector {
                    route,
                    closer: closer.clone(),
                });
        let docker = bollard::Docker::connect_with_custom_transport(
            move |request: bollard::BollardRequest| {
                let http = http.clone();
                async move {
                    http.request(request)
                        .await
                        .map_err(bollard::errors::Error::from)
                }
            },
            Some("http://engine"),
            super::LONG_CALL_TIMEOUT.as_secs(),
            &self.docker.client_version(),
        )
        .ok()?;
        Some((docker, closing::CloseOnDrop(closer)))
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_codes_and_controls_are_stripped() {
        assert_eq!(strip_ansi("\x1b[91mboom\x1b[0m"), "boom");
        assert_eq!(strip_ansi("a\x1b[1;31mb\x1b[0mc"), "abc");
        assert_eq!(strip_ansi("\x1b]0;title\x07text"), "text");
        assert_eq!(strip_ansi("tab\there\x08"), "tab\there");
    }

    #[test]
    fn transcript_keeps_the_current_steps_output_only() {
        let mut t = Transcript::default();
        let mut seen = Vec::new();
        for chunk in [
            "Step 1/2 : FROM x\n",
            " ---> abc\n",
            "Step 2/2 : RUN make\n",
            " ---> Running in 123\n",
            "\x1b[91mpart",
            "ial line\n\x1b[0m",
            "second\r\nthird",
        ] {
            seen.extend(t.push(chunk));
        }
        seen.extend(t.finish());
        assert_eq!(t.step.as_deref(), Some("Step 2/2 : RUN make"));
        assert_eq!(
            t.lines.iter().collect::<Vec<_>>(),
            vec!["partial line", "second", "third"]
        );
        assert_eq!(
            seen,
            vec![
                "Step 1/2 : FROM x",
                " ---> abc",
                "Step 2/2 : RUN make",
                " ---> Running in 123",
                "partial line",
                "second",
                "third"
            ]
        );
    }

    #[test]
    fn transcript_keeps_the_last_lines_of_a_long_step() {
        let mut t = Transcript::default();
        t.push("Step 1/1 : RUN seq 100\n");
        for i in 1..=100 {
            t.push(&format!("{i}\n"));
        }
        assert_eq!(t.lines.len(), FAILURE_LINES);
        assert_eq!(t.omitted, 100 - FAILURE_LINES);
        assert_eq!(t.lines.back().map(String::as_str), Some("100"));
    }

    #[test]
    fn failing_step_is_named_in_the_error() {
        let request = BuildRequest {
            tag: "p/api:dev".into(),
            ..Default::default()
        };
        let mut t = Transcript::default();
        t.push("Step 2/3 : RUN echo boom && exit 7\n ---> Running in 1\nboom\n");
        let error = failure(
            &request,
            &mut t,
            "The command '/bin/sh -c echo boom && exit 7' returned a non-zero code: 7".into(),
        );
        assert_eq!(
            error.to_string(),
            "build of image `p/api:dev` failed at step 2/3 `RUN echo boom && exit 7`: The command '/bin/sh -c echo boom && exit 7' returned a non-zero code: 7\n  | boom"
        );
    }

    #[test]
    fn missing_base_image_names_the_image_and_the_build_arg() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("Dockerfile"),
            "ARG BASE=fixture/base:1\nFROM ${BASE}\nRUN true\n",
        )
        .expect("write");
        let mut request = BuildRequest {
            context: dir.path().to_path_buf(),
            tag: "p/db:dev".into(),
            ..Default::default()
        };
        let mut t = Transcript::default();
        t.push("Step 1/3 : ARG BASE=fixture/base:1\nStep 2/3 : FROM ${BASE}\n");
        let message = "Get \"https://registry.example.com/v2/\": no such host".to_string();
        let error = failure(&request, &mut t, message.clone());
        let text = error.to_string();
        assert!(
            text.contains("base image `fixture/base:1` is not present locally"),
            "{text}"
        );
        assert!(text.contains("no such host"), "{text}");
        assert!(
            error.hint.as_deref().is_some_and(|h| h.contains("`BASE`")),
            "{text}"
        );

        request.args.insert("BASE".into(), "other/base:2".into());
        let error = failure(&request, &mut t, message);
        assert!(error.to_string().contains("`other/base:2`"), "{error}");
    }

    #[test]
    fn labels_become_one_quoted_instruction() {
        let labels = HashMap::from([
            ("io.stackctl.stage".to_string(), "dev".to_string()),
            ("note".to_string(), r#"say "hi" to $USER \o/"#.to_string()),
        ]);
        assert_eq!(
            label_instruction(&labels).as_deref(),
            Some(r#"LABEL "io.stackctl.stage"="dev" "note"="say \"hi\" to \$USER \\o/""#)
        );
        let multiline = HashMap::from([("a".to_string(), "1\n2".to_string())]);
        assert_eq!(label_instruction(&multiline), None);
        assert_eq!(label_instruction(&HashMap::new()), None);
    }

    fn vertex(
        digest: &str,
        name: &str,
        started: bool,
        cached: bool,
        error: &str,
    ) -> bollard::moby::buildkit::v1::Vertex {
        bollard::moby::buildkit::v1::Vertex {
            digest: digest.into(),
            name: name.into(),
            cached,
            started: started.then(Default::default),
            error: error.into(),
            ..Default::default()
        }
    }

    fn log(digest: &str, text: &str) -> bollard::moby::buildkit::v1::VertexLog {
        bollard::moby::buildkit::v1::VertexLog {
            vertex: digest.into(),
            msg: text.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn buildkit_trace_names_each_step_once_and_keeps_each_steps_output() {
        let mut t = Transcript::default();
        let mut seen = Vec::new();
        let records = [
            StatusResponse {
                vertexes: vec![
                    vertex("a", "[1/3] FROM docker.io/library/x", false, true, ""),
                    vertex("b", "[2/3] COPY . /app", false, false, ""),
                ],
                ..Default::default()
            },
            StatusResponse {
                vertexes: vec![vertex("b", "[2/3] COPY . /app", true, false, "")],
                ..Default::default()
            },
            StatusResponse {
                vertexes: vec![
                    vertex("b", "[2/3] COPY . /app", true, false, ""),
                    vertex("c", "[3/3] RUN make", true, false, ""),
                ],
                logs: vec![log("c", "\x1b[31mcompil"), log("c", "ing\nwarn\r\n")],
                ..Default::default()
            },
            StatusResponse {
                vertexes: vec![
                    vertex("c", "[3/3] RUN make", true, false, "exit code: 2"),
                    vertex("d", "[other 1/1] RUN x", true, false, "context canceled"),
                ],
                logs: vec![log("c", "boom")],
                ..Default::default()
            },
        ];
        for record in &records {
            seen.extend(t.trace(record));
        }
        assert_eq!(
            seen,
            vec![
                "[1/3] FROM docker.io/library/x (cached)",
                "[2/3] COPY . /app",
                "[3/3] RUN make",
                "compiling",
                "warn",
                "[other 1/1] RUN x",
            ]
        );
        let request = BuildRequest {
            tag: "p/api:dev".into(),
            ..Default::default()
        };
        let error = failure(&request, &mut t, "failed to solve: exit code: 2".into());
        assert_eq!(
            error.to_string(),
            "build of image `p/api:dev` failed at step 3/3 `RUN make`: exit code: 2\n  | compiling\n  | warn\n  | boom"
        );
    }

    #[test]
    fn a_canceled_step_is_not_the_cause() {
        let mut t = Transcript::default();
        t.trace(&StatusResponse {
            vertexes: vec![
                vertex("d", "[a 1/1] RUN sleep 9", true, false, "context canceled"),
                vertex("c", "[b 1/1] RUN false", true, false, "exit code: 1"),
            ],
            ..Default::default()
        });
        let (name, _, _, error) = t.failed_vertex().expect("a failed step");
        assert_eq!(
            (name.as_str(), error.as_str()),
            ("[b 1/1] RUN false", "exit code: 1")
        );
    }

    #[test]
    fn steps_of_both_builders_are_described() {
        assert_eq!(
            describe_step("Step 3/4 : RUN exit 7"),
            "step 3/4 `RUN exit 7`"
        );
        assert_eq!(describe_step("[3/4] RUN exit 7"), "step 3/4 `RUN exit 7`");
        assert_eq!(
            describe_step("[builder 2/3] RUN make"),
            "step 2/3 `RUN make` of stage `builder`"
        );
        assert_eq!(
            describe_step("[internal] load metadata for docker.io/library/x:1"),
            "`FROM`"
        );
        assert_eq!(describe_step("exporting to image"), "`exporting to image`");
        assert!(is_step("Step 1/2 : FROM x"));
        assert!(is_step("[1/2] FROM docker.io/library/x"));
        assert!(is_step("[base 10/12] COPY . /"));
        assert!(!is_step("[internal] load .dockerignore"));
        assert!(!is_step("[x] y"));
        assert!(!is_step("hello"));
    }

    #[test]
    fn buildkit_base_image_is_named_as_the_dockerfile_writes_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("Dockerfile"),
            "ARG BASE=fixture/base:1\nFROM busybox AS tools\nFROM --platform=linux/amd64 ${BASE}\nRUN true\n",
        )
        .expect("write");
        let request = BuildRequest {
            context: dir.path().to_path_buf(),
            tag: "p/db:dev".into(),
            ..Default::default()
        };
        let mut t = Transcript::default();
        t.trace(&StatusResponse {
            vertexes: vec![vertex(
                "m",
                "[internal] load metadata for docker.io/fixture/base:1",
                true,
                false,
                "pull access denied",
            )],
            ..Default::default()
        });
        let error = failure(&request, &mut t, "failed to solve".into());
        let text = error.to_string();
        assert!(
            text.starts_with("build of image `p/db:dev` failed at `FROM`: base image `fixture/base:1` is not present locally"),
            "{text}"
        );
        assert!(text.ends_with("pull access denied"), "{text}");
        assert!(
            error.hint.as_deref().is_some_and(|h| h.contains("`BASE`")),
            "{text}"
        );
        let (image, args) = base_image(
            &request,
            "[tools 1/1] FROM docker.io/library/busybox:latest",
        );
        assert_eq!((image.as_deref(), args.len()), (Some("busybox"), 0));
        assert_eq!(normalized("docker.io/library/busybox"), "busybox:latest");
        assert_eq!(
            normalized("registry.example.com:5000/a/b"),
            "registry.example.com:5000/a/b:latest"
        );
    }

    #[test]
    fn a_parse_error_names_the_dockerfile_whichever_builder_reports_it() {
        let request = BuildRequest {
            tag: "p/api:dev".into(),
            dockerfile: Some("api.Dockerfile".into()),
            ..Default::default()
        };
        let error = failure(
            &request,
            &mut Transcript::default(),
            "failed to solve with frontend dockerfile.v0: failed to create LLB definition: dockerfile parse error line 2: unknown instruction: BOGUS".into(),
        );
        assert!(
            error.message.starts_with("`api.Dockerfile` is not valid: "),
            "{error}"
        );
    }

    #[test]
    fn docker_buildkit_reads_as_go_reads_a_boolean() {
        assert_eq!(parse_switch("0").ok(), Some(Some(false)));
        assert_eq!(parse_switch("false").ok(), Some(Some(false)));
        assert_eq!(parse_switch("1").ok(), Some(Some(true)));
        assert_eq!(parse_switch("True").ok(), Some(Some(true)));
        assert_eq!(parse_switch("").ok(), Some(None));
        let error = parse_switch("yes").expect_err("not a boolean");
        assert!(error.message.contains("`yes`"), "{}", error.message);
    }

    #[test]
    fn only_a_refusal_of_buildkit_falls_back() {
        let refused = |status_code: u16, message: &str| {
            turned_down(
                &BollardError::DockerResponseServerError {
                    status_code,
                    message: message.into(),
                },
                &Transcript::default(),
            )
        };
        assert!(refused(400, "buildkit not supported by daemon").is_some());
        assert!(refused(500, "BuildKit is not enabled").is_some());
        assert!(refused(500, "no space left on device").is_none());
        assert!(refused(404, "page not found").is_none());
        let network = |n: Option<&str>| {
            buildkit_can(&BuildRequest {
                network: n.map(String::from),
                ..Default::default()
            })
        };
        assert!(network(None) && network(Some("host")) && network(Some("none")));
        assert!(!network(Some("dev-app_default")));
        assert!(!buildkit_can(&BuildRequest {
            shm_size: Some(256 << 20),
            ..Default::default()
        }));
        assert!(!buildkit_can(&BuildRequest {
            cache_from: vec!["app/api:ci".into()],
            ..Default::default()
        }));
    }

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2048), "2.0 kB");
        assert_eq!(human_bytes(3_400_000), "3.4 MB");
    }
}
