//! Image builds: the context tarred with Docker's `.dockerignore` rules, streamed progress,
//! and the failing step's output on failure.
//!
//! Builds use the engine's classic builder (no BuildKit session): it needs nothing but the
//! engine, works against 20.10, and reports progress as plain lines (ENGINE-NOTES §2).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::{BuildImageOptionsBuilder, RemoveImageOptions};
use bollard::{body_try_stream, models::BuildInfo};
use futures_util::StreamExt;

use super::{context, Engine, EngineError};
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
        // The hint is printed on its own line by the reporter (`crate::error::hint_of`).
        Ok(())
    }
}

impl std::error::Error for BuildError {}

/// `Step 3/4 : RUN exit 7` → "step 3/4 `RUN exit 7`".
fn describe_step(step: &str) -> String {
    match step
        .strip_prefix("Step ")
        .and_then(|rest| rest.split_once(" : "))
    {
        Some((number, instruction)) => format!("step {number} `{instruction}`"),
        None => format!("`{step}`"),
    }
}

/// The output seen so far: the current step and the lines it printed.
#[derive(Default)]
struct Transcript {
    step: Option<String>,
    lines: VecDeque<String>,
    omitted: usize,
    /// Text after the last newline, until the rest of its line arrives.
    partial: String,
}

impl Transcript {
    /// Take a chunk of the build's `stream`, and return its complete lines, cleaned.
    fn push(&mut self, chunk: &str) -> Vec<String> {
        self.partial.push_str(chunk);
        let mut complete = Vec::new();
        while let Some(end) = self.partial.find(['\n', '\r']) {
            let line: String = self.partial.drain(..=end).collect();
            let line = strip_ansi(line.trim_end_matches(['\n', '\r']));
            let line = line.trim_end().to_string();
            if line.is_empty() {
                continue;
            }
            self.record(&line);
            complete.push(line);
        }
        complete
    }

    /// The rest of an unterminated last line.
    fn finish(&mut self) -> Option<String> {
        let line = strip_ansi(&std::mem::take(&mut self.partial))
            .trim_end()
            .to_string();
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
        if self.lines.len() == FAILURE_LINES {
            self.lines.pop_front();
            self.omitted += 1;
        }
        self.lines.push_back(line.to_string());
    }
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

/// The base image a failing `FROM` step asked for, with `$ARG`s resolved from the build
/// args and the Dockerfile's `ARG` defaults; and the names of the args it used.
fn base_image(request: &BuildRequest, step: &str) -> (Option<String>, Vec<String>) {
    let instruction = step.split_once(" : ").map(|(_, i)| i).unwrap_or(step);
    let Some(reference) = instruction.split_whitespace().nth(1) else {
        return (None, Vec::new());
    };
    let dockerfile = request
        .context
        .join(request.dockerfile.as_deref().unwrap_or("Dockerfile"));
    let mut defaults: HashMap<String, String> = HashMap::new();
    if let Ok(text) = std::fs::read_to_string(dockerfile) {
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
    }
    let mut used = Vec::new();
    let variable = regex::Regex::new(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?").ok();
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
    let resolved = (!resolved.is_empty()).then_some(resolved);
    (resolved, used)
}

/// Turn the daemon's failure into a `BuildError` with a hint fitting the cause.
fn failure(request: &BuildRequest, transcript: &mut Transcript, message: String) -> BuildError {
    let _ = transcript.finish();
    let step = transcript.step.clone();
    let mut error = BuildError {
        tag: request.tag.clone(),
        step: step.clone(),
        output: transcript.lines.iter().cloned().collect(),
        omitted: transcript.omitted,
        message,
        hint: None,
    };
    let failing_from = step.as_deref().is_some_and(|s| {
        s.split_once(" : ")
            .and_then(|(_, i)| i.split_whitespace().next())
            .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
    });
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
/// the labels written into the Dockerfile when they can be. Returns whether the labels
/// still have to be sent as build options (a `target` build, or labels that cannot be
/// written as one `LABEL` line).
async fn prepare_context(
    request: &BuildRequest,
) -> anyhow::Result<(context::BuildContext, HashMap<String, String>, bool)> {
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
        let inputs = super::digest::Inputs {
            args: &args,
            target: target.as_deref(),
        };
        let digest = super::digest::digest(&context, &inputs).map_err(|source| {
            context::ContextError::Io {
                path: scan_root.clone(),
                source,
            }
        })?;
        labels.insert(
            crate::names::image_label::CONTEXT.to_string(),
            digest.digest,
        );
        let inlined = labels_inline && inline_labels(&mut context, &labels)?;
        Ok::<_, context::ContextError>((context, labels, !inlined))
    })
    .await
    .map_err(|e| anyhow::anyhow!("build of image `{tag}`: {e}"))?
    .map_err(|e| anyhow::anyhow!("build of image `{tag}`: {e}"))
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
) -> bollard::query_parameters::BuildImageOptions {
    let mut options = BuildImageOptionsBuilder::default()
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

/// Reads the engine's build stream to its end or its first error: each output line goes to
/// `progress` (and into the transcript a failure quotes), the image ID is kept.
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
                if let Some(id) = aux.and_then(|aux| aux.id) {
                    image_id = Some(id);
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
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => {
            let mut error = failure(request, transcript, message.trim().to_string());
            if status_code == 400 && error.message.contains("dockerfile parse error") {
                let file = request.dockerfile.as_deref().unwrap_or("Dockerfile");
                error.message = format!("`{file}` is not valid: {}", error.message);
            }
            error
        }
        other => return anyhow::Error::new(EngineError::new("build image", &request.tag, other)),
    };
    error.into()
}

impl Engine {
    /// Build an image and return its ID; `progress` receives each output line.
    ///
    /// Prepare the context → send it with the options → follow the engine's stream → check
    /// the upload and the outcome → remove the image the tag used to name.
    pub async fn build_image(
        &self,
        request: &BuildRequest,
        progress: &(dyn Fn(&str) + Send + Sync),
    ) -> anyhow::Result<String> {
        let (context, labels, labels_sent) = prepare_context(request).await?;
        progress(&format!(
            "sending build context: {} files, {}",
            context.files,
            human_bytes(context.bytes)
        ));

        // A tag the engine cannot parse fails the build below, with the engine's message.
        let previous = self.image_id(&request.tag).await.ok().flatten();

        let options = build_options(request, &context.dockerfile, labels_sent.then_some(&labels));
        let (body, tar_task) = context::stream(context);
        let client = self.long_client();
        let auth = registry_auth(request);
        let stream = client.build_image(options, auth, Some(body_try_stream(body)));
        let (mut transcript, image_id, outcome) = follow_build(stream, progress).await;

        // A context that could not be read explains a broken upload better than the
        // transport error it causes.
        match tar_task.await {
            Ok(Err(e)) => anyhow::bail!(
                "build of image `{}`: cannot send the build context: {e}",
                request.tag
            ),
            Err(e) => anyhow::bail!("build of image `{}`: {e}", request.tag),
            Ok(Ok(())) => {}
        }
        if let Err(err) = outcome {
            return Err(build_failure(request, &mut transcript, err));
        }
        let Some(id) = image_id else {
            anyhow::bail!(
                "build of image `{}`: the engine finished without reporting an image id",
                request.tag
            );
        };
        if let Some(previous) = previous.filter(|p| *p != id) {
            self.remove_replaced_image(&previous, request).await;
        }
        Ok(id)
    }

    /// The ID of the image `reference` (a tag or an ID), or None when there is no such image.
    pub async fn image_id(&self, reference: &str) -> Result<Option<String>, EngineError> {
        match self.client().inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(err) if super::is_not_found(&err) => Ok(None),
            Err(err) => Err(EngineError::new("inspect image", reference, err)),
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

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2048), "2.0 kB");
        assert_eq!(human_bytes(3_400_000), "3.4 MB");
    }
}
