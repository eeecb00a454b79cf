//! Streams: a byte stream with a bounded buffer between the side that writes and the side that
//! reads. The writer waits while `buffer_bytes` are unread (backpressure); the reader gives the
//! budget back as it takes chunks.

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Semaphore, mpsc};

struct Shared {
    budget: Semaphore,
    aborted: AtomicBool,
    cap: usize,
}

/// The writing end of a stream. Dropping it ends the stream; [`StreamWriter::abort`] aborts it.
pub struct StreamWriter {
    tx: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
}

/// The reading end of a stream.
pub struct StreamReader {
    rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
}

/// The stream's reader went away: nobody reads what is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream's reader is gone")]
pub struct StreamClosed;

/// A stream whose writer waits once `buffer_bytes` (at least 1) are written and unread.
pub fn stream(buffer_bytes: usize) -> (StreamWriter, StreamReader) {
    let cap = buffer_bytes.clamp(1, Semaphore::MAX_PERMITS);
    let shared = Arc::new(Shared {
        budget: Semaphore::new(cap),
        aborted: AtomicBool::new(false),
        cap,
    });
    let (tx, rx) = mpsc::unbounded_channel();
    (
        StreamWriter {
            tx,
            shared: shared.clone(),
        },
        StreamReader { rx, shared },
    )
}

impl StreamWriter {
    /// Writes a chunk, waiting while the buffer is full. A chunk larger than the whole buffer
    /// waits for an empty buffer.
    pub async fn send(&self, chunk: Bytes) -> Result<(), StreamClosed> {
        let permits = chunk.len().min(self.shared.cap) as u32;
        let permit = self
            .shared
            .budget
            .acquire_many(permits)
            .await
            .map_err(|_| StreamClosed)?;
        permit.forget();
        self.tx.send(chunk).map_err(|_| StreamClosed)
    }

    /// Ends the stream as aborted: the reader sees its end and [`StreamReader::is_aborted`].
    pub fn abort(self) {
        self.shared.aborted.store(true, Ordering::Release);
    }

    /// Whether the reader went away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl StreamReader {
    /// The next chunk, or `None` at the end of the stream (ended or aborted).
    pub async fn next(&mut self) -> Option<Bytes> {
        let chunk = self.rx.recv().await?;
        self.shared
            .budget
            .add_permits(chunk.len().min(self.shared.cap));
        Some(chunk)
    }

    /// Whether the stream ended by an abort rather than its end.
    pub fn is_aborted(&self) -> bool {
        self.shared.aborted.load(Ordering::Acquire)
    }

    /// Reads the whole stream, failing once it holds more than `max` bytes.
    pub async fn read_to_end(&mut self, max: usize) -> Result<Vec<u8>, TooLong> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next().await {
            if out.len() + chunk.len() > max {
                return Err(TooLong);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        // A writer waiting for room hears that nobody reads.
        self.shared.budget.close();
    }
}

/// A stream or a file was longer than the caller accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("longer than accepted")]
pub struct TooLong;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_writer_waits_at_the_buffer_bound_until_the_reader_takes() {
        let (writer, mut reader) = stream(10);
        writer
            .send(Bytes::from_static(b"0123456789"))
            .await
            .unwrap();
        let blocked = tokio::time::timeout(
            Duration::from_millis(50),
            writer.send(Bytes::from_static(b"x")),
        )
        .await;
        assert!(blocked.is_err(), "a full buffer makes the writer wait");
        assert_eq!(&reader.next().await.unwrap()[..], b"0123456789");
        writer.send(Bytes::from_static(b"x")).await.unwrap();
        drop(writer);
        assert_eq!(&reader.next().await.unwrap()[..], b"x");
        assert_eq!(reader.next().await, None);
        assert!(!reader.is_aborted());
    }

    #[tokio::test]
    async fn a_writer_waiting_hears_that_the_reader_left() {
        let (writer, reader) = stream(1);
        writer.send(Bytes::from_static(b"a")).await.unwrap();
        let send = tokio::spawn(async move { writer.send(Bytes::from_static(b"b")).await });
        tokio::task::yield_now().await;
        drop(reader);
        assert_eq!(send.await.unwrap(), Err(StreamClosed));
    }

    #[tokio::test]
    async fn an_abort_ends_the_stream_as_aborted() {
        let (writer, mut reader) = stream(8);
        writer.send(Bytes::from_static(b"a")).await.unwrap();
        writer.abort();
        assert!(reader.next().await.is_some());
        assert_eq!(reader.next().await, None);
        assert!(reader.is_aborted());
        let (writer, mut reader) = stream(8);
        writer.send(Bytes::from_static(b"abc")).await.unwrap();
        drop(writer);
        assert_eq!(reader.read_to_end(2).await, Err(TooLong));
    }
}
