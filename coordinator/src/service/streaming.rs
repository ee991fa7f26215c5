//! Files to and from streams of pieces: checkpoints leave the coordinator as 1 MiB
//! pieces read on a blocking thread, and arrive through a bounded channel into a writer
//! on a blocking thread, so a slow disk holds back the stream instead of piling pieces up
//! in memory.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use ibsweep_proto::v1::{self as pb};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

use crate::scheduler::{CheckpointHeader, Scheduler};
use crate::store::JobStore;

pub(super) type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Receives the rest of a checkpoint upload (`first` is the first piece's bytes) and
/// stores it; returns the measured histograms committed with it.
pub(super) async fn receive_checkpoint<S: JobStore>(
    scheduler: &Arc<Scheduler<S>>,
    header: CheckpointHeader,
    first: Vec<u8>,
    mut stream: Streaming<pb::UploadCheckpointPiece>,
) -> Result<u64, Status> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let writer = {
        let scheduler = Arc::clone(scheduler);
        tokio::task::spawn_blocking(move || {
            let mut incoming = scheduler.begin_checkpoint(&header)?;
            while let Some(bytes) = rx.blocking_recv() {
                incoming.write(&bytes)?;
            }
            scheduler.finish_checkpoint(&header, incoming)
        })
    };
    let mut failed = None;
    if !first.is_empty() {
        let _ = tx.send(first).await;
    }
    while let Some(piece) = stream.next().await {
        match piece {
            Ok(p) => {
                if tx.send(p.data).await.is_err() {
                    break; // the writer refused; its error is the answer
                }
            }
            Err(status) => {
                failed = Some(status);
                break;
            }
        }
    }
    // A broken stream closes the channel early: the writer then finds fewer bytes than
    // announced, refuses to finish, and its partial file is removed.
    drop(tx);
    if let Some(status) = failed {
        let _ = writer.await;
        return Err(status);
    }
    Ok(writer.await.map_err(|e| Status::internal(format!("checkpoint task failed: {e}")))??)
}

/// A stored checkpoint file as pieces, the first with what the whole file is.
pub(super) fn checkpoint_pieces(path: PathBuf, info: pb::CheckpointInfo) -> BoxStream<pb::CheckpointPiece> {
    stream_file(path, move |first, data| pb::CheckpointPiece { info: first.then(|| info.clone()), data })
}

/// Streams a file in 1 MiB pieces read on a blocking thread; `piece(first, bytes)` makes
/// each message.
fn stream_file<T: Send + 'static>(path: PathBuf, piece: impl Fn(bool, Vec<u8>) -> T + Send + 'static) -> BoxStream<T> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<T, Status>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(Status::internal(format!("{}: {e}", path.display()))));
                return;
            }
        };
        let mut first = true;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf) {
                Ok(0) if !first => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(piece(first, buf))).is_err() {
                        return;
                    }
                    first = false;
                    if n == 0 {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(Status::internal(format!("{}: {e}", path.display()))));
                    return;
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}
