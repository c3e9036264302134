//! The engine calls of lifecycle hooks: a `pre_start` step runs in a container of its own to
//! completion (created, started, waited for, its last lines read, removed on every path); a
//! `post_start` / `pre_stop` command runs inside the service's running container (Docker
//! exec) with its own user, working directory, environment and privileges, its output kept
//! for the report and its exit code read back.

use std::time::Duration;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::StreamExt;

use super::containers::ContainerConfig;
use super::{Engine, EngineError};

/// Lines of output kept for a failure report.
pub const KEPT_LINES: usize = 20;

/// How a hook ended: its exit code and its last lines of output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookRun {
    pub exit_code: i64,
    pub last_lines: Vec<String>,
}

/// A command to run inside a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecHook {
    pub command: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    /// `KEY=VALUE`, added to the container's own environment.
    pub environment: Vec<String>,
    pub privileged: bool,
}

impl Engine {
    /// Run a container to completion and remove it (with its anonymous volumes), whatever
    /// happens after it was created; `None` for the exit code when `timeout` ran out (the
    /// container is then removed by force).
    pub async fn run_to_completion(
        &self,
        config: &ContainerConfig,
        timeout: Duration,
    ) -> Result<Option<HookRun>, EngineError> {
        self.create_container(config).await?;
        let result = async {
            self.start_container(&config.name).await?;
            match tokio::time::timeout(timeout, self.wait_exit(&config.name)).await {
                Ok(code) => {
                    let code = code?;
                    let lines = self.log_tail(&config.name, KEPT_LINES).await?;
                    Ok(Some(HookRun {
                        exit_code: code,
                        last_lines: lines,
                    }))
                }
                Err(_) => Ok(None),
            }
        }
        .await;
        let removed = self.remove_container(&config.name).await;
        let run = result?;
        removed?;
        Ok(run)
    }

    /// Run `hook` inside the running container `container`, its output collected (the last
    /// [`KEPT_LINES`] lines kept); `None` when `timeout` ran out (the engine has no call to
    /// kill an exec'd process: it is left to end with the container). Without a timeout it
    /// runs as long as it takes (`watch`'s `sync+exec` and its removals).
    pub async fn exec_hook(
        &self,
        container: &str,
        hook: &ExecHook,
        timeout: Option<Duration>,
    ) -> Result<Option<HookRun>, EngineError> {
        let created = self
            .client()
            .create_exec(
                container,
                ExecConfig {
                    cmd: Some(hook.command.clone()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    user: hook.user.clone(),
                    working_dir: hook.working_dir.clone(),
                    env: (!hook.environment.is_empty()).then(|| hook.environment.clone()),
                    privileged: Some(hook.privileged),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.error("exec hook in container", container, e))?;
        let run = async {
            // The output may come for longer than an ordinary call's timeout.
            let started = self
                .long_client()
                .start_exec(
                    &created.id,
                    Some(StartExecOptions {
                        detach: false,
                        tty: false,
                        output_capacity: None,
                    }),
                )
                .await
                .map_err(|e| self.error("start exec hook in container", container, e))?;
            let mut text = String::new();
            if let StartExecResults::Attached { mut output, .. } = started {
                while let Some(item) = output.next().await {
                    match item {
                        Ok(chunk) => {
                            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                            // Only the end is reported: keep the text bounded.
                            if text.len() > 64 * 1024 {
                                let cut = text.len() - 32 * 1024;
                                let cut = (cut..text.len())
                                    .find(|i| text.is_char_boundary(*i))
                                    .unwrap_or(text.len());
                                text.drain(..cut);
                            }
                        }
                        Err(err) => {
                            return Err(self.error("read exec hook output", container, err))
                        }
                    }
                }
            }
            let mut delay = Duration::from_millis(20);
            loop {
                let info = self
                    .client()
                    .inspect_exec(&created.id)
                    .await
                    .map_err(|e| self.error("inspect exec hook in container", container, e))?;
                if info.running != Some(true) {
                    let lines: Vec<String> = text.lines().map(str::to_string).collect();
                    let keep = lines.len().saturating_sub(KEPT_LINES);
                    return Ok(HookRun {
                        exit_code: info.exit_code.unwrap_or(-1),
                        last_lines: lines[keep..].to_vec(),
                    });
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        };
        match timeout {
            Some(timeout) => match tokio::time::timeout(timeout, run).await {
                Ok(run) => run.map(Some),
                Err(_) => Ok(None),
            },
            None => run.await.map(Some),
        }
    }
}
