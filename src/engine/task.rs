//! One-off task containers (`stackctl exec TASK`) and commands inside running services
//! (`stackctl exec SERVICE -- …`): create, attach, start, stream, exit code, and removal of the
//! one-off container on every path (success, failure, interrupt, closed stdout).

use std::time::Duration;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, ResizeContainerTTYOptionsBuilder, ResizeExecOptions,
};
use bollard::Docker;

use super::attach::{self, End, ExitFuture, Input, Outcome};
use super::containers::{Attach, ContainerConfig};
use super::{Engine, EngineError};

/// Where the exit code of an attached process comes from, and where a TTY resize goes.
#[derive(Debug, Clone)]
enum TtyOwner {
    Container(String),
    Exec(String),
}

impl Engine {
    /// Run a one-off container attached to our streams and return how it ended: created
    /// through the same path as every other container ([`Engine::create_container`]), with
    /// the attach options set here. The container is removed (forced, with its anonymous
    /// volumes) whatever happens after it was created.
    pub async fn run_task(
        &self,
        config: &ContainerConfig,
        input: Input,
        tty: bool,
    ) -> Result<Outcome, EngineError> {
        crate::interrupt::check()
            .map_err(|_| EngineError::interrupted("create container", &config.name))?;
        let config = ContainerConfig {
            attach: Some(Attach {
                stdin: input.is_attached(),
                tty,
            }),
            ..config.clone()
        };
        let id = self.create_container(&config).await?;
        let result = self.run_created(&id, &config.name, input, tty).await;
        let removed = self.remove_container(&config.name).await;
        let outcome = result?;
        removed?;
        Ok(outcome)
    }

    async fn run_created(
        &self,
        id: &str,
        name: &str,
        input: Input,
        tty: bool,
    ) -> Result<Outcome, EngineError> {
        let attached = self
            .docker
            .attach_container(
                id,
                Some(
                    AttachContainerOptionsBuilder::default()
                        .stream(true)
                        .stdin(input.is_attached())
                        .stdout(true)
                        .stderr(true)
                        .build(),
                ),
            )
            .await
            .map_err(|e| self.error("attach container", name, e))?;
        if crate::interrupt::requested() {
            return Ok(Outcome {
                end: End::Interrupted,
                input_error: None,
            });
        }
        // Raw mode only for the life of the attached process; the guard restores it on
        // every return below.
        let _raw = if tty {
            crate::tty::RawMode::enable()
        } else {
            None
        };
        // Attach before start, so no early output is lost.
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| self.error("start container", name, e))?;
        let resizer = tty.then(|| self.follow_terminal_size(TtyOwner::Container(id.to_string())));
        let exit = container_exit(self.clone(), id.to_string());
        let outcome = attach::pump(attached.output, attached.input, input, exit).await;
        if let Some(resizer) = resizer {
            resizer.abort();
        }
        outcome
    }

    /// Whether a container exists and runs: `None` when it does not exist.
    pub async fn container_running(&self, name: &str) -> Result<Option<bool>, EngineError> {
        Ok(self
            .container_status(name)
            .await?
            .map(|status| status.running))
    }

    /// Run `cmd` inside a running container (Docker exec), attached to our streams. On an
    /// interrupt the process's input is closed and we stop waiting; the engine has no call
    /// to kill an exec'd process.
    pub async fn exec_in(
        &self,
        container: &str,
        cmd: Vec<String>,
        input: Input,
        tty: bool,
    ) -> Result<Outcome, EngineError> {
        let created = self
            .docker
            .create_exec(
                container,
                ExecConfig {
                    cmd: Some(cmd),
                    attach_stdin: Some(input.is_attached()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(tty),
                    // Honoured from API 1.42; older engines get a resize right after start.
                    console_size: if tty {
                        crate::tty::size()
                            .map(|(rows, cols)| vec![usize::from(rows), usize::from(cols)])
                    } else {
                        None
                    },
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| self.error("exec in container", container, e))?;
        let _raw = if tty {
            crate::tty::RawMode::enable()
        } else {
            None
        };
        let started = self
            .docker
            .start_exec(
                &created.id,
                Some(StartExecOptions {
                    detach: false,
                    tty,
                    // Frames pass through as they come; this only sizes the read buffer.
                    output_capacity: Some(64 * 1024),
                }),
            )
            .await
            .map_err(|e| self.error("start exec in container", container, e))?;
        let StartExecResults::Attached {
            output,
            input: sink,
        } = started
        else {
            return Err(EngineError {
                operation: "start exec in container".into(),
                object: container.to_string(),
                message: "the engine did not attach the exec session".into(),
                engine: self.name(),
                status: None,
                hint: None,
            });
        };
        let resizer = tty.then(|| self.follow_terminal_size(TtyOwner::Exec(created.id.clone())));
        let exit = exec_exit(self, created.id.clone(), container.to_string());
        let outcome = attach::pump(output, sink, input, exit).await;
        if let Some(resizer) = resizer {
            resizer.abort();
        }
        outcome
    }

    /// Keep the container's TTY the size of ours: once now, then on every SIGWINCH.
    fn follow_terminal_size(&self, target: TtyOwner) -> tokio::task::JoinHandle<()> {
        let docker = self.docker.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut changes = signal(SignalKind::window_change()).ok();
            loop {
                if let Some((rows, cols)) = crate::tty::size() {
                    resize(&docker, &target, rows, cols).await;
                }
                match changes.as_mut() {
                    Some(changes) => {
                        if changes.recv().await.is_none() {
                            return;
                        }
                    }
                    None => return,
                }
            }
        })
    }
}

async fn resize(docker: &Docker, target: &TtyOwner, rows: u16, cols: u16) {
    // A resize racing the process's exit fails harmlessly.
    match target {
        TtyOwner::Container(id) => {
            let _ = docker
                .resize_container_tty(
                    id,
                    ResizeContainerTTYOptionsBuilder::default()
                        .h(i32::from(rows))
                        .w(i32::from(cols))
                        .build(),
                )
                .await;
        }
        TtyOwner::Exec(id) => {
            let _ = docker
                .resize_exec(
                    id,
                    ResizeExecOptions {
                        h: i32::from(rows),
                        w: i32::from(cols),
                    },
                )
                .await;
        }
    }
}

/// The container's exit code, as a future that owns what it needs.
fn container_exit(engine: Engine, name: String) -> ExitFuture {
    Box::pin(async move { engine.wait_exit(&name).await })
}

/// The exec'd process's exit code: poll `inspect_exec` while it runs, backing off.
fn exec_exit(engine: &Engine, exec_id: String, container: String) -> ExitFuture {
    let docker = engine.docker.clone();
    let name = engine.name();
    Box::pin(async move {
        let mut delay = Duration::from_millis(50);
        loop {
            let info = docker.inspect_exec(&exec_id).await.map_err(|e| {
                EngineError::new("inspect exec in container", &container, e).on(name.clone())
            })?;
            if info.running != Some(true) {
                if let Some(code) = info.exit_code {
                    return Ok(code);
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    })
}
