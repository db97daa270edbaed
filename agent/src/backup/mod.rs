//! Backup and restore tasks: streams the control plane opens on the agent's connection.
//!
//! Each task is one bidirectional stream whose first frame is a [`TaskRequest`]. The file work
//! (walking, reading, hashing, writing, renaming) runs on a thread of its own per task, joined to
//! the stream by a small bounded channel, so a slow disk never blocks the runtime and a slow
//! network never makes the reader buffer more than a few frames. At most [`MAX_TASKS`] run at
//! once; more are refused with a reason. When the connection goes, the task's stream fails, the
//! channel closes and the thread stops (killing a command it ran).

mod read;
mod restore;

use std::sync::Arc;

use aisemble_shared::{
    codec::{self, DEFAULT_MAX_FRAME_BYTES, FrameDecoder},
    wire::{TaskMessage, TaskRequest},
};
use tokio::sync::{Semaphore, mpsc};
use tracing::{info, warn};

/// Tasks at once; each holds a thread and a stream.
pub const MAX_TASKS: usize = 2;

/// Frames between a task's thread and its stream.
const CHANNEL_FRAMES: usize = 8;

/// Why a task stream failed (the task itself reports failures in-band as `Failed`).
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("receiving: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("sending: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("bad frame: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("the stream ended early")]
    Ended,
}

/// Accepts task streams on `connection` until it closes.
pub async fn serve(connection: quinn::Connection) {
    let slots = Arc::new(Semaphore::new(MAX_TASKS));
    while let Ok((send, recv)) = connection.accept_bi().await {
        let slots = Arc::clone(&slots);
        tokio::spawn(async move {
            if let Err(error) = task(send, recv, &slots).await {
                warn!(%error, "Backup task stream failed.");
            }
        });
    }
}

async fn task(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    slots: &Semaphore,
) -> Result<(), StreamError> {
    let mut frames = Frames::new(recv);
    let request: TaskRequest = frames.next().await?.ok_or(StreamError::Ended)?;
    let Ok(_slot) = slots.try_acquire() else {
        let busy = TaskMessage::Failed {
            reason: format!("the agent is already running {MAX_TASKS} backup tasks"),
        };
        write(&mut send, &busy).await?;
        let _ = send.finish();
        return Ok(());
    };
    match request {
        TaskRequest::Backup(task) => {
            info!(run = task.id, job = %task.job, "Backup started.");
            let (tx, mut rx) = mpsc::channel(CHANNEL_FRAMES);
            let source = task.source;
            let reader = std::thread::Builder::new()
                .name("aisemble-backup".into())
                .spawn(move || read::run(&source, &tx));
            if let Err(error) = reader {
                let failed = TaskMessage::Failed {
                    reason: format!("cannot start a thread: {error}"),
                };
                write(&mut send, &failed).await?;
            }
            while let Some(message) = rx.recv().await {
                let last = matches!(message, TaskMessage::Done(_) | TaskMessage::Failed { .. });
                if let TaskMessage::Failed { reason } = &message {
                    warn!(run = task.id, %reason, "Backup failed.");
                }
                write(&mut send, &message).await?;
                if last {
                    info!(run = task.id, "Backup sent.");
                    break;
                }
            }
        }
        TaskRequest::Restore(task) => {
            info!(run = task.id, snapshot = %task.snapshot, target = %task.target, "Restore started.");
            let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
            let (result_tx, result_rx) = tokio::sync::oneshot::channel();
            let writer = std::thread::Builder::new()
                .name("aisemble-restore".into())
                .spawn(move || {
                    let _ = result_tx.send(restore::run(&task, rx));
                });
            let outcome = match writer {
                Err(error) => TaskMessage::Failed {
                    reason: format!("cannot start a thread: {error}"),
                },
                Ok(_) => {
                    // Feed the writer until the sender's Done (or the writer stops taking input
                    // because it failed); then its verdict goes back.
                    let fed = feed(&mut frames, &tx).await;
                    drop(tx);
                    match (fed, result_rx.await) {
                        (_, Ok(Err(reason))) => TaskMessage::Failed { reason },
                        (Err(error), _) => TaskMessage::Failed {
                            reason: format!("the restore stream failed: {error}"),
                        },
                        (Ok(()), Ok(Ok(summary))) => TaskMessage::Done(summary),
                        (Ok(()), Err(_)) => TaskMessage::Failed {
                            reason: "the restore thread stopped".into(),
                        },
                    }
                }
            };
            match &outcome {
                TaskMessage::Failed { reason } => {
                    warn!(%reason, "Restore failed; the target was not switched.")
                }
                _ => info!("Restore switched into place and verified."),
            }
            write(&mut send, &outcome).await?;
        }
        other => {
            let failed = TaskMessage::Failed {
                reason: format!("unsupported task {other:?}"),
            };
            write(&mut send, &failed).await?;
        }
    }
    let _ = send.finish();
    // Let the last frame reach the control plane before the stream is dropped.
    let _ = send.stopped().await;
    Ok(())
}

/// Passes restore frames to the writer thread up to and including `Done`.
async fn feed(frames: &mut Frames, tx: &mpsc::Sender<TaskMessage>) -> Result<(), StreamError> {
    loop {
        let message: TaskMessage = frames.next().await?.ok_or(StreamError::Ended)?;
        let last = matches!(message, TaskMessage::Done(_) | TaskMessage::Failed { .. });
        if tx.send(message).await.is_err() || last {
            return Ok(());
        }
    }
}

async fn write(send: &mut quinn::SendStream, message: &TaskMessage) -> Result<(), StreamError> {
    send.write_all(&codec::encode_frame(message, DEFAULT_MAX_FRAME_BYTES)?)
        .await?;
    Ok(())
}

/// Decodes frames from a stream.
struct Frames {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
}

impl Frames {
    fn new(recv: quinn::RecvStream) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES),
        }
    }

    async fn next<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>, StreamError> {
        loop {
            if let Some(body) = self.decoder.next_frame()? {
                return Ok(Some(codec::decode_frame(&body)?));
            }
            match self.recv.read_chunk(64 << 10, true).await? {
                Some(chunk) => self.decoder.push(&chunk.bytes),
                None if self.decoder.pending_bytes() == 0 => return Ok(None),
                None => return Err(StreamError::Ended),
            }
        }
    }
}
