//! The standard streams of an attached container or exec: our input copied in with constant
//! memory and a real end-of-file, its stdout and stderr frames written to ours, and the exit
//! code raced against the output (ENGINE-NOTES §4, bollard #251), with interrupts and a
//! closed stdout (EPIPE) ending it early.

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::EngineError;

/// Bytes read from our input per chunk. At most `CHUNKS_IN_FLIGHT` chunks wait between the
/// reader thread and the container, so memory stays constant whatever the input size.
const CHUNK: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

/// After the exit code is known, how long the output may stay silent before we stop reading
/// (the attach stream can stay open after the container exits, bollard #251).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

pub(crate) type OutputStream = Pin<Box<dyn Stream<Item = Result<LogOutput, BollardError>> + Send>>;
pub(crate) type InputSink = Pin<Box<dyn AsyncWrite + Send>>;
pub(crate) type ExitFuture = Pin<Box<dyn Future<Output = Result<i64, EngineError>> + Send>>;

/// What feeds the container's stdin.
pub enum Input {
    /// Nothing is attached (the container's stdin is closed from the start).
    Detached,
    /// Our own stdin (a pipe, a file, /dev/null, or the terminal in TTY mode).
    Stdin,
    /// A file opened by the caller (a task's `stdin:`).
    File(std::fs::File),
    /// Any other reader (our piped stdin after its first bytes were looked at).
    Reader(Box<dyn Read + Send>),
}

impl Input {
    pub fn is_attached(&self) -> bool {
        !matches!(self, Input::Detached)
    }
}

/// How an attached run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The process exited with this code.
    Exited(i64),
    /// The first Ctrl-C or SIGTERM arrived.
    Interrupted,
    /// Our stdout was closed by its reader (EPIPE), as in `stackctl exec dump | head`.
    BrokenPipe,
}

/// The end, plus a problem reading our input, if there was one (the input is then cut short).
#[derive(Debug)]
pub struct Outcome {
    pub end: End,
    pub input_error: Option<String>,
}

/// Read `reader` on its own thread (a blocking read of a terminal or pipe can't be
/// cancelled; the thread simply dies with the process) into a small bounded channel.
fn spawn_reader(mut reader: Box<dyn Read + Send>) -> ChunkReceiver {
    let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let spawned = std::thread::Builder::new()
        .name("stdin-reader".into())
        .spawn(move || loop {
            let mut buffer = vec![0u8; CHUNK];
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    buffer.truncate(n);
                    if sender.blocking_send(Ok(buffer)).is_err() {
                        break;
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                // A closed stdin (fd 0 not open) is an empty input.
                Err(err) if err.raw_os_error() == Some(libc::EBADF) => break,
                Err(err) => {
                    let _ = sender.blocking_send(Err(err));
                    break;
                }
            }
        });
    if let Err(err) = spawned {
        // Without a reader the input is empty; say why.
        let (sender, receiver) = mpsc::channel(1);
        let _ = sender.try_send(Err(err));
        return receiver;
    }
    receiver
}

/// What a reader thread sends: chunks of input, or the error that ended it.
type ChunkReceiver = mpsc::Receiver<std::io::Result<Vec<u8>>>;
type SharedChunks = Arc<tokio::sync::Mutex<ChunkReceiver>>;
type Chunks = tokio::sync::OwnedMutexGuard<ChunkReceiver>;

/// Our stdin, read by one thread for the whole process and lent to one run at a time: a
/// blocking read of a terminal can't be cancelled, so a reader per run would leave the old
/// one parked on the terminal, stealing what is typed for the next step of a sequence.
fn our_stdin() -> SharedChunks {
    static STDIN: OnceLock<SharedChunks> = OnceLock::new();
    STDIN
        .get_or_init(|| {
            Arc::new(tokio::sync::Mutex::new(spawn_reader(Box::new(
                std::io::stdin(),
            ))))
        })
        .clone()
}

/// Copy chunks into the container, then half-close the connection so the process sees EOF.
/// Returns a read error of our input, if any. A write error means the process stopped
/// reading (it exited): that is not our input's fault and is not reported.
async fn feed(mut chunks: Chunks, mut sink: InputSink) -> Option<String> {
    let mut read_error = None;
    while let Some(chunk) = chunks.recv().await {
        match chunk {
            Ok(bytes) => {
                if sink.write_all(&bytes).await.is_err() {
                    return None;
                }
            }
            Err(err) => {
                read_error = Some(format!("reading the input failed: {err}"));
                break;
            }
        }
    }
    let _ = sink.flush().await;
    // shutdown() is what delivers EOF; dropping the sink alone leaves the socket open.
    let _ = sink.shutdown().await;
    read_error
}

/// Frames waiting for the writer thread; bounded, so a slow reader of our stdout slows the
/// container down instead of filling memory.
const FRAMES_IN_FLIGHT: usize = 16;

/// Writes output frames to our stdout and stderr on its own thread, with one unbuffered
/// `write` per frame: no copy, no line buffering, and the runtime never blocks on a slow
/// pipe. Dropping `frames` lets it finish; `done` then says whether stdout broke.
struct OutputWriter {
    frames: mpsc::Sender<LogOutput>,
    done: tokio::sync::oneshot::Receiver<bool>,
}

impl OutputWriter {
    fn spawn() -> OutputWriter {
        let (frames, mut receiver) = mpsc::channel::<LogOutput>(FRAMES_IN_FLIGHT);
        let (report, done) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("output-writer".into())
            .spawn(move || {
                use std::io::Write;
                use std::os::fd::FromRawFd;
                // SAFETY: fds 1 and 2 stay open for the life of the process; ManuallyDrop
                // keeps these handles from closing them.
                let mut stdout =
                    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(1) });
                let mut stderr =
                    std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(2) });
                let mut broken = false;
                while let Some(frame) = receiver.blocking_recv() {
                    match frame {
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            // Any failure to write stdout (EPIPE above all) means nobody
                            // gets the output any more.
                            if stdout.write_all(&message).is_err() {
                                broken = true;
                                break;
                            }
                        }
                        // A closed stderr is no reason to stop: its output is dropped.
                        LogOutput::StdErr { message } => {
                            let _ = stderr.write_all(&message);
                        }
                        LogOutput::StdIn { .. } => {}
                    }
                }
                let _ = report.send(broken);
            });
        if spawned.is_err() {
            // Without a writer the frames have nowhere to go: treat it like a closed stdout.
            let (frames, _) = mpsc::channel(1);
            let (report, done) = tokio::sync::oneshot::channel();
            let _ = report.send(true);
            return OutputWriter { frames, done };
        }
        OutputWriter { frames, done }
    }

    /// Hand a frame over; `Err` when stdout is closed.
    async fn write(&self, frame: LogOutput) -> Result<(), ()> {
        self.frames.send(frame).await.map_err(|_| ())
    }

    /// Wait until every frame handed over is written; true when stdout broke.
    async fn finish(self) -> bool {
        drop(self.frames);
        self.done.await.unwrap_or(true)
    }
}

/// Stream an attached, started process to completion. `exit` resolves to the exit code; it
/// must be created after the start call (a wait issued before start returns at once).
pub(crate) async fn pump(
    mut output: OutputStream,
    input_sink: InputSink,
    input: Input,
    exit: ExitFuture,
) -> Result<Outcome, EngineError> {
    let feeder = match input {
        Input::Detached => {
            drop(input_sink);
            None
        }
        Input::Stdin => {
            let chunks = our_stdin().lock_owned().await;
            Some(tokio::spawn(feed(chunks, input_sink)))
        }
        Input::File(file) => {
            let chunks = tokio::sync::Mutex::new(spawn_reader(Box::new(file)));
            let chunks = Arc::new(chunks).lock_owned().await;
            Some(tokio::spawn(feed(chunks, input_sink)))
        }
        Input::Reader(reader) => {
            let chunks = tokio::sync::Mutex::new(spawn_reader(reader));
            let chunks = Arc::new(chunks).lock_owned().await;
            Some(tokio::spawn(feed(chunks, input_sink)))
        }
    };

    let writer = OutputWriter::spawn();
    let mut exit = exit;
    let interrupted = crate::interrupt::wait();
    tokio::pin!(interrupted);
    let grace = tokio::time::sleep(Duration::from_secs(86_400));
    tokio::pin!(grace);

    let mut code: Option<i64> = None;
    let mut output_done = false;
    let end = loop {
        if output_done {
            if let Some(code) = code {
                break End::Exited(code);
            }
        }
        tokio::select! {
            biased;
            _ = &mut interrupted => break End::Interrupted,
            frame = output.next(), if !output_done => match frame {
                Some(Ok(frame)) => {
                    // A reader of our stdout that stops reading must not make us deaf to
                    // Ctrl-C.
                    tokio::select! {
                        written = writer.write(frame) => {
                            if written.is_err() {
                                break End::BrokenPipe;
                            }
                        }
                        _ = &mut interrupted => break End::Interrupted,
                    }
                    if code.is_some() {
                        grace.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
                    }
                }
                // The connection ends with the process; an error here is the same end.
                Some(Err(_)) | None => output_done = true,
            },
            result = &mut exit, if code.is_none() => {
                code = Some(result?);
                grace.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            }
            _ = &mut grace, if code.is_some() && !output_done => output_done = true,
        }
    };

    // Everything handed to the writer reaches stdout before we report the exit; after an
    // interrupt or a broken pipe nothing more is written.
    let end = match end {
        End::Exited(code) => {
            if writer.finish().await {
                End::BrokenPipe
            } else {
                End::Exited(code)
            }
        }
        other => other,
    };
    let input_error = match feeder {
        Some(handle) if handle.is_finished() => handle.await.ok().flatten(),
        Some(handle) => {
            handle.abort();
            None
        }
        None => None,
    };
    Ok(Outcome { end, input_error })
}
