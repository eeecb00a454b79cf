//! Files attached to messages: received ones are kept in memory up to a size and spooled to an
//! unlinked temporary file beyond it (never a whole large file in memory); sent ones are read
//! from any async reader as they go out.

use bytes::Bytes;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, ReadBuf};

/// A file received with a message: its name, its size and its bytes as an async reader.
pub struct File {
    pub name: String,
    pub size: u64,
    body: Body,
}

enum Body {
    Memory(io::Cursor<Vec<u8>>),
    Disk(tokio::fs::File),
}

impl File {
    /// A file whose bytes are in memory.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> File {
        File {
            name: name.into(),
            size: bytes.len() as u64,
            body: Body::Memory(io::Cursor::new(bytes)),
        }
    }

    /// Whether the bytes were spooled to disk.
    pub fn is_spooled(&self) -> bool {
        matches!(self.body, Body::Disk(_))
    }

    /// Reads the whole file into memory.
    pub async fn bytes(mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.size.min(1 << 20) as usize);
        self.read_to_end(&mut out).await?;
        Ok(out)
    }

    /// The file as one to send (echoing a file back).
    pub fn into_outgoing(self) -> OutFile {
        OutFile {
            name: self.name.clone(),
            size: self.size,
            body: Box::pin(self),
        }
    }
}

impl AsyncRead for File {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.body {
            Body::Memory(cursor) => Pin::new(cursor).poll_read(cx, buf),
            Body::Disk(file) => Pin::new(file).poll_read(cx, buf),
        }
    }
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("name", &self.name)
            .field("size", &self.size)
            .field("spooled", &self.is_spooled())
            .finish()
    }
}

/// A file being received.
pub(crate) struct Spool {
    name: String,
    size: u64,
    body: SpoolBody,
}

enum SpoolBody {
    Memory(Vec<u8>),
    Disk(tokio::fs::File),
}

impl Spool {
    /// Room for a file of `size` bytes: memory up to `memory_bytes`, an unlinked file in `dir`
    /// beyond.
    pub(crate) async fn new(
        name: String,
        size: u64,
        memory_bytes: u64,
        dir: &Path,
    ) -> io::Result<Spool> {
        let body = if size <= memory_bytes {
            SpoolBody::Memory(Vec::with_capacity(size as usize))
        } else {
            let path = dir.join(format!("plexus-sockety-{:032x}", fastrand::u128(..)));
            let file = tokio::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .await?;
            // Unlinked at once: the file lives as long as its handle, whatever happens.
            tokio::fs::remove_file(&path).await?;
            SpoolBody::Disk(file)
        };
        Ok(Spool { name, size, body })
    }

    pub(crate) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.body {
            SpoolBody::Memory(v) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
            SpoolBody::Disk(f) => f.write_all(bytes).await,
        }
    }

    /// The received file, read from its start.
    pub(crate) async fn finish(self) -> io::Result<File> {
        let body = match self.body {
            SpoolBody::Memory(v) => Body::Memory(io::Cursor::new(v)),
            SpoolBody::Disk(mut f) => {
                f.flush().await?;
                f.rewind().await?;
                Body::Disk(f)
            }
        };
        Ok(File {
            name: self.name,
            size: self.size,
            body,
        })
    }
}

/// A file to send: its name, its exact size, and a reader of at least that many bytes (a reader
/// that ends early aborts the message).
pub struct OutFile {
    pub name: String,
    pub size: u64,
    pub body: Pin<Box<dyn AsyncRead + Send>>,
}

impl OutFile {
    pub fn from_bytes(name: impl Into<String>, bytes: impl Into<Bytes>) -> OutFile {
        let bytes: Bytes = bytes.into();
        OutFile {
            name: name.into(),
            size: bytes.len() as u64,
            body: Box::pin(io::Cursor::new(bytes)),
        }
    }

    /// The file at `path`, named by its file name.
    pub async fn open(path: &Path) -> io::Result<OutFile> {
        let file = tokio::fs::File::open(path).await?;
        let size = file.metadata().await?.len();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(OutFile {
            name,
            size,
            body: Box::pin(file),
        })
    }
}

impl std::fmt::Debug for OutFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutFile")
            .field("name", &self.name)
            .field("size", &self.size)
            .finish()
    }
}
