//! Sockety's binary protocol (`seeds-protocols.md` §5.1), sans-IO: the connection header, every
//! packet type in both directions, and the multiplexing rules of the reading side ([`Reader`]:
//! the current channel, one message in progress per channel, the channel limit the reader
//! announced). Integers are unsigned little-endian.
//!
//! Sockety's defects are fixed here, and each is a documented difference (`docs/sockety.md`
//! once the dialect lands): a header announcing 256 to 4095 channels uses the 16-bit form (the
//! original wrote 256 as a `u8`, i.e. 0); `abort` is `0x90` (the original wrote `0xB0`, go-away);
//! every packet size `SS` means u8/u16/u24/u32, files included (the original read a file's
//! `SS = 11` as u48 but wrote u32); a bad header byte is an error that closes.

/// The most channels a connection may announce.
pub const MAX_CHANNELS: u16 = 4096;
/// The largest packet payload read (the original writer's data chunks are at most 4 MiB).
pub const MAX_PACKET_BYTES: usize = 4 * 1024 * 1024;
/// The largest message or response header (flags, ids, action, sizes, file headers).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most files one message may carry.
pub const MAX_FILES: usize = 1024;

/// A protocol error: the connection closes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketyError(pub String);

impl std::fmt::Display for SocketyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SocketyError {}

fn err<T>(message: impl Into<String>) -> Result<T, SocketyError> {
    Err(SocketyError(message.into()))
}

fn read_uint(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

fn write_uint(out: &mut Vec<u8>, value: u64, width: usize) {
    out.extend_from_slice(&value.to_le_bytes()[..width]);
}

/// The smallest of `widths` (in bytes) that holds `value`, and its index.
fn width_for(value: u64, widths: &[usize]) -> (u8, usize) {
    for (i, &w) in widths.iter().enumerate() {
        if w >= 8 || value < (1u64 << (8 * w)) {
            return (i as u8, w);
        }
    }
    let last = widths.len() - 1;
    (last as u8, widths[last])
}

// --- the connection header ------------------------------------------------------------------

/// The connection header announcing that this side receives on `channels` channels (1..=4096).
pub fn encode_header(channels: u16) -> Vec<u8> {
    match channels.clamp(1, MAX_CHANNELS) {
        1 => vec![0xE0],
        MAX_CHANNELS => vec![0xE3],
        n if n < 256 => vec![0xE1, n as u8],
        n => {
            let mut out = vec![0xE2];
            write_uint(&mut out, u64::from(n), 2);
            out
        }
    }
}

/// Reads the peer's connection header: the channels it receives on and the bytes it took, or
/// `None` while incomplete.
pub fn decode_header(buf: &[u8]) -> Result<Option<(u16, usize)>, SocketyError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first & 0xFC != 0xE0 {
        return err(format!("not a Sockety connection header: {first:#04x}"));
    }
    let (channels, used) = match first & 0x03 {
        0 => (1, 1),
        1 => match buf.get(1) {
            Some(&n) => (u16::from(n), 2),
            None => return Ok(None),
        },
        2 => match buf.get(1..3) {
            Some(b) => (read_uint(b) as u16, 3),
            None => return Ok(None),
        },
        _ => (MAX_CHANNELS, 1),
    };
    if channels == 0 || channels > MAX_CHANNELS {
        return err(format!("a header announcing {channels} channels"));
    }
    Ok(Some((channels, used)))
}

// --- packets ---------------------------------------------------------------------------------

/// One packet, borrowing its bytes from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    SwitchChannel(u16),
    /// The start of a message header (`expects_response`: a request).
    Message {
        has_stream: bool,
        expects_response: bool,
        bytes: &'a [u8],
    },
    FastReply {
        code: u16,
        id: [u8; 16],
    },
    /// The start of a response header.
    Response {
        has_stream: bool,
        expects_response: bool,
        bytes: &'a [u8],
    },
    /// More of the current header on this channel.
    Continue(&'a [u8]),
    Stream(&'a [u8]),
    StreamEnd,
    Abort,
    Heartbeat,
    GoAway,
    File {
        index: u32,
        bytes: &'a [u8],
    },
    FileEnd {
        index: u32,
    },
    Data(&'a [u8]),
}

const SIZE_WIDTHS: [usize; 4] = [1, 2, 3, 4];

/// A sized packet's index (files), bytes, and the bytes it took in all.
type Sized<'a> = (u32, &'a [u8], usize);
const INDEX_WIDTHS: [usize; 4] = [0, 1, 2, 3];

/// Reads one packet: the packet and the bytes it took, or `None` while incomplete.
pub fn decode_packet(buf: &[u8]) -> Result<Option<(Packet<'_>, usize)>, SocketyError> {
    let Some(&b0) = buf.first() else {
        return Ok(None);
    };
    let low = b0 & 0x0F;
    // A sized packet: SS in bits 2–3, then an optional index (files), then the bytes.
    let sized = |index_width: usize| -> Result<Option<Sized<'_>>, SocketyError> {
        let size_width = SIZE_WIDTHS[usize::from((low >> 2) & 0x03)];
        let Some(size) = buf.get(1..1 + size_width) else {
            return Ok(None);
        };
        let size = read_uint(size) as usize;
        if size > MAX_PACKET_BYTES {
            return err(format!(
                "a packet of {size} bytes (at most {MAX_PACKET_BYTES})"
            ));
        }
        let start = 1 + size_width + index_width;
        let Some(index) = buf.get(1 + size_width..start) else {
            return Ok(None);
        };
        match buf.get(start..start + size) {
            Some(bytes) => Ok(Some((read_uint(index) as u32, bytes, start + size))),
            None => Ok(None),
        }
    };
    let bits = (low & 0x02 != 0, low & 0x01 != 0);
    let packet = match b0 >> 4 {
        0x0 => (Packet::SwitchChannel(u16::from(low)), 1),
        0x1 => match buf.get(1) {
            Some(&b1) => (
                Packet::SwitchChannel((u16::from(low) << 8) | u16::from(b1)),
                2,
            ),
            None => return Ok(None),
        },
        0x2 | 0x5 => {
            let Some((_, bytes, used)) = sized(0)? else {
                return Ok(None);
            };
            let (has_stream, expects_response) = bits;
            if b0 >> 4 == 0x2 {
                (
                    Packet::Message {
                        has_stream,
                        expects_response,
                        bytes,
                    },
                    used,
                )
            } else {
                (
                    Packet::Response {
                        has_stream,
                        expects_response,
                        bytes,
                    },
                    used,
                )
            }
        }
        0x3 => match buf.get(1..17) {
            Some(id) => (
                Packet::FastReply {
                    code: u16::from(low),
                    id: id.try_into().expect("16 bytes"),
                },
                17,
            ),
            None => return Ok(None),
        },
        0x4 => match buf.get(1..18) {
            Some(rest) => (
                Packet::FastReply {
                    code: (u16::from(low) << 8) | u16::from(rest[0]),
                    id: rest[1..].try_into().expect("16 bytes"),
                },
                18,
            ),
            None => return Ok(None),
        },
        0x6 | 0x7 | 0xE => {
            if low & 0x03 != 0 {
                return err(format!("reserved bits set in {b0:#04x}"));
            }
            let Some((_, bytes, used)) = sized(0)? else {
                return Ok(None);
            };
            let packet = match b0 >> 4 {
                0x6 => Packet::Continue(bytes),
                0x7 => Packet::Stream(bytes),
                _ => Packet::Data(bytes),
            };
            (packet, used)
        }
        0x8..=0xB => {
            if low != 0 {
                return err(format!("reserved bits set in {b0:#04x}"));
            }
            let packet = match b0 >> 4 {
                0x8 => Packet::StreamEnd,
                0x9 => Packet::Abort,
                0xA => Packet::Heartbeat,
                _ => Packet::GoAway,
            };
            (packet, 1)
        }
        0xC => {
            let Some((index, bytes, used)) = sized(INDEX_WIDTHS[usize::from(low & 0x03)])? else {
                return Ok(None);
            };
            (Packet::File { index, bytes }, used)
        }
        0xD => {
            if low & 0x0C != 0 {
                return err(format!("reserved bits set in {b0:#04x}"));
            }
            let width = INDEX_WIDTHS[usize::from(low & 0x03)];
            match buf.get(1..1 + width) {
                Some(index) => (
                    Packet::FileEnd {
                        index: read_uint(index) as u32,
                    },
                    1 + width,
                ),
                None => return Ok(None),
            }
        }
        _ => return err(format!("unknown packet type {b0:#04x}")),
    };
    Ok(Some(packet))
}

fn sized_packet(out: &mut Vec<u8>, kind: u8, low_bits: u8, index: Option<u32>, bytes: &[u8]) {
    let (ss, width) = width_for(bytes.len() as u64, &SIZE_WIDTHS);
    match index {
        None => out.push((kind << 4) | (ss << 2) | low_bits),
        Some(i) => {
            let (ii, iw) = width_for(u64::from(i), &[0, 1, 2, 3]);
            let (ii, iw) = if i == 0 {
                (0, 0)
            } else {
                (ii.max(1), iw.max(1))
            };
            out.push((kind << 4) | (ss << 2) | ii);
            write_uint(out, bytes.len() as u64, width);
            write_uint(out, u64::from(i), iw);
            out.extend_from_slice(bytes);
            return;
        }
    }
    write_uint(out, bytes.len() as u64, width);
    out.extend_from_slice(bytes);
}

/// Writes one packet.
pub fn encode_packet(out: &mut Vec<u8>, packet: &Packet<'_>) {
    match *packet {
        Packet::SwitchChannel(c) if c < 16 => out.push(c as u8),
        Packet::SwitchChannel(c) => {
            out.push(0x10 | ((c >> 8) as u8 & 0x0F));
            out.push(c as u8);
        }
        Packet::Message {
            has_stream,
            expects_response,
            bytes,
        } => sized_packet(
            out,
            0x2,
            (u8::from(has_stream) << 1) | u8::from(expects_response),
            None,
            bytes,
        ),
        Packet::Response {
            has_stream,
            expects_response,
            bytes,
        } => sized_packet(
            out,
            0x5,
            (u8::from(has_stream) << 1) | u8::from(expects_response),
            None,
            bytes,
        ),
        Packet::FastReply { code, id } if code < 16 => {
            out.push(0x30 | code as u8);
            out.extend_from_slice(&id);
        }
        Packet::FastReply { code, id } => {
            out.push(0x40 | ((code >> 8) as u8 & 0x0F));
            out.push(code as u8);
            out.extend_from_slice(&id);
        }
        Packet::Continue(bytes) => sized_packet(out, 0x6, 0, None, bytes),
        Packet::Stream(bytes) => sized_packet(out, 0x7, 0, None, bytes),
        Packet::Data(bytes) => sized_packet(out, 0xE, 0, None, bytes),
        Packet::StreamEnd => out.push(0x80),
        Packet::Abort => out.push(0x90),
        Packet::Heartbeat => out.push(0xA0),
        Packet::GoAway => out.push(0xB0),
        Packet::File { index, bytes } => sized_packet(out, 0xC, 0, Some(index), bytes),
        Packet::FileEnd { index } => {
            let (ii, iw) = if index == 0 {
                (0, 0)
            } else {
                let (ii, iw) = width_for(u64::from(index), &[0, 1, 2, 3]);
                (ii.max(1), iw.max(1))
            };
            out.push(0xD0 | ii);
            write_uint(out, u64::from(index), iw);
        }
    }
}

// --- message and response headers -------------------------------------------------------------

/// A file announced in a message header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub name: String,
    pub size: u64,
}

/// A message's or a response's header (a response has `parent` and no action).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: [u8; 16],
    pub parent: Option<[u8; 16]>,
    pub action: String,
    pub data_size: u64,
    pub files: Vec<FileHeader>,
}

const DATA_WIDTHS: [usize; 4] = [0, 1, 2, 6];
const COUNT_WIDTHS: [usize; 4] = [0, 1, 2, 3];
const TOTAL_WIDTHS: [usize; 4] = [2, 3, 4, 6];
const FILE_SIZE_WIDTHS: [usize; 4] = [1, 2, 3, 6];

/// Writes a header's bytes (a message's when `parent` is `None`, a response's otherwise).
pub fn encode_header_body(header: &Header) -> Vec<u8> {
    let (dd, dw) = if header.data_size == 0 {
        (0, 0)
    } else {
        let (i, w) = width_for(header.data_size, &DATA_WIDTHS[1..]);
        (i + 1, w)
    };
    let count = header.files.len() as u64;
    let (ee, ew) = if count == 0 {
        (0, 0)
    } else {
        let (i, w) = width_for(count, &COUNT_WIDTHS[1..]);
        (i + 1, w)
    };
    let total: u64 = header.files.iter().map(|f| f.size).sum();
    let (ff, fw) = width_for(total, &TOTAL_WIDTHS);
    let (g, gw) = width_for(header.action.len() as u64, &[1, 2]);
    let mut out = vec![(dd << 6) | (ee << 4) | (if count > 0 { ff << 2 } else { 0 }) | (g << 1)];
    if let Some(parent) = header.parent {
        out.extend_from_slice(&parent);
        out.extend_from_slice(&header.id);
    } else {
        out.extend_from_slice(&header.id);
        write_uint(&mut out, header.action.len() as u64, gw);
        out.extend_from_slice(header.action.as_bytes());
    }
    write_uint(&mut out, header.data_size, dw);
    write_uint(&mut out, count, ew);
    if count > 0 {
        write_uint(&mut out, total, fw);
    }
    for file in &header.files {
        let (aa, aw) = width_for(file.size, &FILE_SIZE_WIDTHS);
        let (b, bw) = width_for(file.name.len() as u64, &[1, 2]);
        out.push((aa << 2) | (b << 1));
        write_uint(&mut out, file.size, aw);
        write_uint(&mut out, file.name.len() as u64, bw);
        out.extend_from_slice(file.name.as_bytes());
    }
    out
}

/// Reads a header from the bytes gathered so far: the header and the bytes it took, or `None`
/// while incomplete.
pub fn decode_header_body(
    buf: &[u8],
    response: bool,
) -> Result<Option<(Header, usize)>, SocketyError> {
    let mut pos = 0;
    macro_rules! take {
        ($n:expr) => {{
            let n = $n;
            match buf.get(pos..pos + n) {
                Some(bytes) => {
                    pos += n;
                    bytes
                }
                None => return Ok(None),
            }
        }};
    }
    let flags = take!(1)[0];
    if flags & 0x01 != 0 {
        return err("the reserved bit of a header's flags is set");
    }
    let dw = DATA_WIDTHS[usize::from(flags >> 6)];
    let ew = COUNT_WIDTHS[usize::from((flags >> 4) & 0x03)];
    let fw = TOTAL_WIDTHS[usize::from((flags >> 2) & 0x03)];
    let (id, parent, action) = if response {
        let parent: [u8; 16] = take!(16).try_into().expect("16 bytes");
        let id: [u8; 16] = take!(16).try_into().expect("16 bytes");
        (id, Some(parent), String::new())
    } else {
        let id: [u8; 16] = take!(16).try_into().expect("16 bytes");
        let gw = if flags & 0x02 != 0 { 2 } else { 1 };
        let len = read_uint(take!(gw)) as usize;
        let action = std::str::from_utf8(take!(len))
            .map_err(|_| SocketyError("an action that is not UTF-8".into()))?
            .to_owned();
        (id, None, action)
    };
    let data_size = read_uint(take!(dw));
    let count = read_uint(take!(ew)) as usize;
    if count > MAX_FILES {
        return err(format!("{count} files (at most {MAX_FILES})"));
    }
    let total = if count > 0 { read_uint(take!(fw)) } else { 0 };
    let mut files = Vec::with_capacity(count.min(16));
    let mut sum = 0u64;
    for _ in 0..count {
        let file_flags = take!(1)[0];
        if file_flags & 0xF1 != 0 {
            return err("reserved bits set in a file header");
        }
        let aw = FILE_SIZE_WIDTHS[usize::from((file_flags >> 2) & 0x03)];
        let size = read_uint(take!(aw));
        let bw = if file_flags & 0x02 != 0 { 2 } else { 1 };
        let len = read_uint(take!(bw)) as usize;
        let name = std::str::from_utf8(take!(len))
            .map_err(|_| SocketyError("a file name that is not UTF-8".into()))?
            .to_owned();
        sum = sum.saturating_add(size);
        files.push(FileHeader { name, size });
    }
    if count > 0 && sum != total {
        return err(format!("files of {sum} bytes announced as {total}"));
    }
    Ok(Some((
        Header {
            id,
            parent,
            action,
            data_size,
            files,
        },
        pos,
    )))
}

// --- the writing side ---------------------------------------------------------------------------

/// Whether `id` is a version-4 UUID of the RFC 4122 variant (what Sockety's `@sockety/uuid`
/// accepts: version nibble 4, variant bits `10`).
pub fn is_uuid_v4(id: &[u8; 16]) -> bool {
    id[6] >> 4 == 4 && id[8] >> 6 == 0b10
}

/// Makes 16 random bytes a version-4 UUID.
pub fn to_uuid_v4(mut bytes: [u8; 16]) -> [u8; 16] {
    bytes[6] = (bytes[6] & 0x0F) | 0x40;
    bytes[8] = (bytes[8] & 0x3F) | 0x80;
    bytes
}

/// The packet that starts a message (`header.parent` is `None`) or a response, with the whole
/// header in it (a header is at most [`MAX_HEADER_BYTES`], far below a packet's bound).
pub fn encode_start(out: &mut Vec<u8>, header: &Header, has_stream: bool, expects_response: bool) {
    let body = encode_header_body(header);
    let packet = if header.parent.is_some() {
        Packet::Response {
            has_stream,
            expects_response,
            bytes: &body,
        }
    } else {
        Packet::Message {
            has_stream,
            expects_response,
            bytes: &body,
        }
    };
    encode_packet(out, &packet);
}

/// The head of a data (`DATA`) or stream (`STREAM`) packet of `len` bytes: what goes before
/// the bytes themselves (for writers that send the bytes without copying them).
pub fn encode_sized_head(out: &mut Vec<u8>, kind: u8, len: usize) {
    let (ss, width) = width_for(len as u64, &SIZE_WIDTHS);
    out.push((kind << 4) | (ss << 2));
    write_uint(out, len as u64, width);
}

/// The packet kinds of [`encode_sized_head`].
pub const DATA: u8 = 0xE;
pub const STREAM: u8 = 0x7;

/// `bytes` as data packets of at most [`MAX_PACKET_BYTES`] each.
pub fn encode_data(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.chunks(MAX_PACKET_BYTES) {
        encode_packet(out, &Packet::Data(chunk));
    }
}

/// The writing side's channels: which are busy with a message in progress, and the current
/// one. A message takes a free channel for as long as it is being written (round-robin from
/// the current one, as sockety-js does) and gives it back at its end.
pub struct Channels {
    limit: u16,
    current: u16,
    busy: Vec<bool>,
    in_use: usize,
}

impl Channels {
    /// Channels for a peer that announced it receives on `limit` (1..=4096).
    pub fn new(limit: u16) -> Channels {
        let limit = limit.clamp(1, MAX_CHANNELS);
        Channels {
            limit,
            current: 0,
            busy: vec![false; usize::from(limit)],
            in_use: 0,
        }
    }

    /// Takes a free channel (the current one when free), or `None` when all are busy.
    pub fn take(&mut self) -> Option<u16> {
        if self.in_use == usize::from(self.limit) {
            return None;
        }
        let mut c = self.current;
        while self.busy[usize::from(c)] {
            c = (c + 1) % self.limit;
        }
        self.busy[usize::from(c)] = true;
        self.in_use += 1;
        Some(c)
    }

    /// Gives `channel` back.
    pub fn release(&mut self, channel: u16) {
        if let Some(busy) = self.busy.get_mut(usize::from(channel))
            && *busy
        {
            *busy = false;
            self.in_use -= 1;
        }
    }

    /// Writes the switch to `channel` unless it is the current one.
    pub fn switch(&mut self, out: &mut Vec<u8>, channel: u16) {
        if channel != self.current {
            encode_packet(out, &Packet::SwitchChannel(channel));
            self.current = channel;
        }
    }

    /// Whether a channel is free.
    pub fn has_free(&self) -> bool {
        self.in_use < usize::from(self.limit)
    }

    /// Channels busy now.
    pub fn in_use(&self) -> usize {
        self.in_use
    }
}

// --- the reading side's multiplexing ------------------------------------------------------------

/// What the peer sent, in order, as the reader understood it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message (or, with `parent`, a response) whose header is complete, on `channel`.
    Header {
        channel: u16,
        header: Header,
        has_stream: bool,
        expects_response: bool,
    },
    Data {
        channel: u16,
        bytes: bytes::Bytes,
    },
    File {
        channel: u16,
        index: u32,
        bytes: bytes::Bytes,
    },
    FileEnd {
        channel: u16,
        index: u32,
    },
    Stream {
        channel: u16,
        bytes: bytes::Bytes,
    },
    StreamEnd {
        channel: u16,
    },
    /// The message on `channel` is complete: header, data, files and stream.
    Done {
        channel: u16,
    },
    /// The message on `channel` was aborted by its sender.
    Aborted {
        channel: u16,
    },
    FastReply {
        id: [u8; 16],
        code: u16,
    },
    Heartbeat,
    GoAway,
}

#[derive(Default)]
struct Slot {
    response: bool,
    has_stream: bool,
    expects_response: bool,
    /// The header's bytes until it is complete.
    pending: Vec<u8>,
    header: Option<Header>,
    data_left: u64,
    /// Bytes left per file; a file is done once ended.
    files_left: Vec<Option<u64>>,
    stream_open: bool,
}

impl Slot {
    fn done(&self) -> bool {
        self.header.is_some()
            && self.data_left == 0
            && self.files_left.iter().all(Option::is_none)
            && !self.stream_open
    }
}

/// The reading side of a connection: decodes packets and applies the multiplexing rules.
pub struct Reader {
    channels: u16,
    current: u16,
    slots: std::collections::HashMap<u16, Slot>,
}

impl Reader {
    /// A reader that announced it receives on `channels` channels.
    pub fn new(channels: u16) -> Reader {
        Reader {
            channels: channels.clamp(1, MAX_CHANNELS),
            current: 0,
            slots: std::collections::HashMap::new(),
        }
    }

    /// Reads every complete packet of `buf` into `out`; returns the bytes taken (the rest waits
    /// for more input).
    pub fn read(&mut self, buf: &[u8], out: &mut Vec<Event>) -> Result<usize, SocketyError> {
        self.read_shared(&bytes::Bytes::copy_from_slice(buf), out)
    }

    /// [`Reader::read`] without copying: the events' bytes are slices of `buf`.
    pub fn read_shared(
        &mut self,
        buf: &bytes::Bytes,
        out: &mut Vec<Event>,
    ) -> Result<usize, SocketyError> {
        let mut taken = 0;
        while let Some((packet, used)) = decode_packet(&buf[taken..])? {
            taken += used;
            self.apply(buf, packet, out)?;
        }
        Ok(taken)
    }

    fn slot(&mut self) -> Result<&mut Slot, SocketyError> {
        let channel = self.current;
        self.slots
            .get_mut(&channel)
            .ok_or_else(|| SocketyError(format!("nothing in progress on channel {channel}")))
    }

    fn apply(
        &mut self,
        buf: &bytes::Bytes,
        packet: Packet<'_>,
        out: &mut Vec<Event>,
    ) -> Result<(), SocketyError> {
        let channel = self.current;
        match packet {
            Packet::SwitchChannel(c) => {
                if c >= self.channels {
                    return err(format!("channel {c} over the {} announced", self.channels));
                }
                self.current = c;
            }
            Packet::Message {
                has_stream,
                expects_response,
                bytes,
            }
            | Packet::Response {
                has_stream,
                expects_response,
                bytes,
            } => {
                if self.slots.contains_key(&channel) {
                    return err(format!("a second message on busy channel {channel}"));
                }
                let response = matches!(packet, Packet::Response { .. });
                self.slots.insert(
                    channel,
                    Slot {
                        response,
                        has_stream,
                        expects_response,
                        stream_open: has_stream,
                        ..Slot::default()
                    },
                );
                self.header_bytes(bytes, out)?;
            }
            Packet::Continue(bytes) => {
                if self.slot()?.header.is_some() {
                    return err(format!(
                        "a continuation after the header on channel {channel}"
                    ));
                }
                self.header_bytes(bytes, out)?;
            }
            Packet::Data(bytes) => {
                let slot = self.slot()?;
                if slot.header.is_none() || bytes.len() as u64 > slot.data_left {
                    return err(format!("data beyond what channel {channel} announced"));
                }
                slot.data_left -= bytes.len() as u64;
                out.push(Event::Data {
                    channel,
                    bytes: buf.slice_ref(bytes),
                });
                self.maybe_done(out);
            }
            Packet::File { index, bytes } => {
                let slot = self.slot()?;
                let left = slot
                    .files_left
                    .get_mut(index as usize)
                    .and_then(Option::as_mut)
                    .filter(|left| bytes.len() as u64 <= **left)
                    .ok_or_else(|| {
                        SocketyError(format!(
                            "file {index} bytes beyond what channel {channel} announced"
                        ))
                    })?;
                *left -= bytes.len() as u64;
                out.push(Event::File {
                    channel,
                    index,
                    bytes: buf.slice_ref(bytes),
                });
            }
            Packet::FileEnd { index } => {
                let slot = self.slot()?;
                match slot.files_left.get_mut(index as usize) {
                    Some(left @ Some(0)) => *left = None,
                    _ => {
                        return err(format!(
                            "file {index} ended early or twice on channel {channel}"
                        ));
                    }
                }
                out.push(Event::FileEnd { channel, index });
                self.maybe_done(out);
            }
            Packet::Stream(bytes) => {
                let slot = self.slot()?;
                if !slot.stream_open || slot.header.is_none() {
                    return err(format!(
                        "stream bytes without an open stream on channel {channel}"
                    ));
                }
                out.push(Event::Stream {
                    channel,
                    bytes: buf.slice_ref(bytes),
                });
            }
            Packet::StreamEnd => {
                let slot = self.slot()?;
                if !slot.stream_open || slot.header.is_none() {
                    return err(format!(
                        "a stream end without an open stream on channel {channel}"
                    ));
                }
                slot.stream_open = false;
                out.push(Event::StreamEnd { channel });
                self.maybe_done(out);
            }
            Packet::Abort => {
                if self.slots.remove(&channel).is_none() {
                    return err(format!(
                        "an abort with nothing in progress on channel {channel}"
                    ));
                }
                out.push(Event::Aborted { channel });
            }
            Packet::FastReply { code, id } => {
                if !is_uuid_v4(&id) {
                    return err("a fast reply for an id that is not a version-4 UUID");
                }
                out.push(Event::FastReply { id, code })
            }
            Packet::Heartbeat => out.push(Event::Heartbeat),
            Packet::GoAway => out.push(Event::GoAway),
        }
        Ok(())
    }

    fn header_bytes(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> Result<(), SocketyError> {
        let channel = self.current;
        let slot = self.slot()?;
        if slot.pending.len() + bytes.len() > MAX_HEADER_BYTES {
            return err(format!("a header over {MAX_HEADER_BYTES} bytes"));
        }
        slot.pending.extend_from_slice(bytes);
        let Some((header, used)) = decode_header_body(&slot.pending, slot.response)? else {
            return Ok(());
        };
        if used != slot.pending.len() {
            return err(format!(
                "{} bytes after a header on channel {channel}",
                slot.pending.len() - used
            ));
        }
        if !is_uuid_v4(&header.id) || header.parent.is_some_and(|p| !is_uuid_v4(&p)) {
            return err(format!(
                "an id that is not a version-4 UUID on channel {channel}"
            ));
        }
        slot.pending = Vec::new();
        slot.data_left = header.data_size;
        slot.files_left = header.files.iter().map(|f| Some(f.size)).collect();
        slot.header = Some(header.clone());
        out.push(Event::Header {
            channel,
            header,
            has_stream: slot.has_stream,
            expects_response: slot.expects_response,
        });
        self.maybe_done(out);
        Ok(())
    }

    fn maybe_done(&mut self, out: &mut Vec<Event>) {
        let channel = self.current;
        if self.slots.get(&channel).is_some_and(Slot::done) {
            self.slots.remove(&channel);
            out.push(Event::Done { channel });
        }
    }
}

#[cfg(test)]
mod tests;
