//! Codecs and their file extensions; streaming compression and decompression.
//!
//! We write `none`, `gzip` (`.gz`) and `zstd` (`.zst`), each with an optional level. On the
//! reading side (restore, cleanup, a backup's WAL source) we also recognise the names OmniPITR
//! archives may carry (`.bz2`, `.xz`, `.lz4`, `.lzma`) so that we can say clearly that we cannot
//! decode them, instead of treating them as unknown files.

use std::fmt;
use std::io::{self, Read, Write};

/// Default zstd level: 2, measured on realistic WAL (ARCHITECTURE.md "Default codec levels"):
/// about a fifth faster than zstd's own default 3 for about 2 % of the WAL's size more.
pub const DEFAULT_ZSTD_LEVEL: i32 = 2;
/// The hash table pitr's zstd level 2 uses: 2^14 entries (64 KiB, zstd's own level 1 size)
/// where zstd's level 2 has 2^16 (256 KiB). Measured on realistic WAL in 2 MiB pieces (one
/// core, CPU time): 11 % faster for 0.14 % of the WAL's size more; 5 % faster and no larger on
/// pgbench WAL; 9 % faster for 0.2 % more on a backup's table files in one stream
/// (ARCHITECTURE.md "Default codec levels"). Every zstd compressor pitr makes takes it
/// ([`zstd_parameters`]).
pub const ZSTD_LEVEL_2_HASH_LOG: u32 = 14;
/// Default gzip level: 1, measured the same way (libdeflate, which writes every gzip file we
/// write): two fifths faster than its level 2 for 1.5 % of the WAL's size more, and both faster
/// and smaller than zlib-rs's level 2, the default before it; gzip is what limits a remote
/// archive once archive-ahead hides the round trips.
pub const DEFAULT_GZIP_LEVEL: u32 = 1;
/// The content of one gzip member of a stream written by [`Codec::encoder`]: libdeflate
/// compresses whole buffers, so a stream is cut into members of this size (as a segment is cut
/// into pieces), which `gzip -d` and [`Codec::decoder`] read as one stream.
pub const GZIP_STREAM_MEMBER: usize = 2 << 20;
/// The smallest piece [`Codec::compress_parallel`] gives one thread: each piece starts with
/// an empty history, and below this size that costs ratio (zstd's own minimum job is the same).
/// A 1 MiB segment is still cut in two, so the tests' small segments go through this path.
pub const MIN_PARALLEL_CHUNK: usize = 512 << 10;
/// The most pieces [`Codec::compress_parallel`] cuts an input into, however many cores: a
/// 16 MiB segment in 2 MiB pieces keeps nearly all of the ratio, and an archive_command does not
/// take every core of a large primary for one segment.
pub const MAX_PARALLEL_PIECES: usize = 8;

/// The parameters of every zstd compressor pitr makes at `level`, beyond the level itself: a
/// checksum of each frame's content (so that `zstd -t` and every reader catch damage), and at
/// level 2 the smaller hash table of [`ZSTD_LEVEL_2_HASH_LOG`]. One list for one-shot,
/// piecewise and streaming compression, so that a level writes the same bytes on every path.
fn zstd_parameters(level: i32) -> Vec<zstd::stream::raw::CParameter> {
    use zstd::stream::raw::CParameter;
    let mut out = vec![CParameter::ChecksumFlag(true)];
    if level == 2 {
        out.push(CParameter::HashLog(ZSTD_LEVEL_2_HASH_LOG));
    }
    out
}

/// A codec we can write, with its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Stored as is.
    None,
    /// gzip (deflate), level 1 to 9.
    Gzip(u32),
    /// zstd, level 1 to 22 (negative levels are zstd's fast modes).
    Zstd(i32),
}

/// A codec name or level we do not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Unknown codec name.
    #[error("unknown codec \"{0}\"")]
    Unknown(String),
    /// A codec we recognise on old archives but cannot write or read.
    #[error("codec \"{0}\" is not supported")]
    Unsupported(String),
    /// A level out of range.
    #[error("invalid level \"{level}\" for codec {codec}")]
    BadLevel {
        /// The codec.
        codec: &'static str,
        /// The level as given.
        level: String,
    },
}

impl Codec {
    /// Parses `none`, `gzip`, `zstd`, optionally followed by `:LEVEL`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l)),
            None => (s, None),
        };
        match name {
            "none" => match level {
                None => Ok(Codec::None),
                Some(l) => Err(Error::BadLevel {
                    codec: "none",
                    level: l.to_string(),
                }),
            },
            "gzip" => {
                let lv = match level {
                    None => DEFAULT_GZIP_LEVEL,
                    Some(l) => l
                        .parse::<u32>()
                        .ok()
                        .filter(|v| (1..=9).contains(v))
                        .ok_or_else(|| Error::BadLevel {
                            codec: "gzip",
                            level: l.to_string(),
                        })?,
                };
                Ok(Codec::Gzip(lv))
            }
            "zstd" => {
                let lv = match level {
                    None => DEFAULT_ZSTD_LEVEL,
                    Some(l) => l
                        .parse::<i32>()
                        .ok()
                        .filter(|v| (-7..=22).contains(v) && *v != 0)
                        .ok_or_else(|| Error::BadLevel {
                            codec: "zstd",
                            level: l.to_string(),
                        })?,
                };
                Ok(Codec::Zstd(lv))
            }
            "bzip2" | "xz" | "lz4" | "lzma" => Err(Error::Unsupported(name.to_string())),
            other => Err(Error::Unknown(other.to_string())),
        }
    }

    /// The file name extension, with its dot (empty for `none`), from [`STORED_FORMS`].
    pub fn extension(&self) -> &'static str {
        STORED_FORMS
            .iter()
            .find(|(_, s)| matches!(s, Stored::Readable(c) if c.name() == self.name()))
            .map_or("", |(ext, _)| ext)
    }

    /// The codec family name (`none`, `gzip`, `zstd`).
    pub fn name(&self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip(_) => "gzip",
            Codec::Zstd(_) => "zstd",
        }
    }

    /// Compresses `input` into a new buffer.
    pub fn compress(&self, input: &[u8]) -> io::Result<Vec<u8>> {
        match self {
            Codec::None => Ok(input.to_vec()),
            Codec::Gzip(level) => Deflater::new(*level).member(input),
            Codec::Zstd(level) => {
                let out = Vec::with_capacity(input.len() / 4 + 4096);
                let mut enc = zstd::stream::write::Encoder::new(out, *level)?;
                for p in zstd_parameters(*level) {
                    enc.set_parameter(p)?;
                }
                enc.set_pledged_src_size(Some(input.len() as u64))?;
                enc.write_all(input)?;
                enc.finish()
            }
        }
    }

    /// Compresses all of `input` into a new buffer using up to `threads` cores, for a file held
    /// in memory (a WAL segment): the input is cut into one piece per thread (each at least
    /// [`MIN_PARALLEL_CHUNK`] bytes), the pieces are compressed on separate threads and the
    /// results concatenated. For zstd each piece is a complete frame with its content size and
    /// checksum, for gzip a complete member: both formats define a concatenation as the
    /// concatenated content (RFC 8878 §3.1, RFC 1952 §2.2), so `zstd -d`, `gzip -d` and
    /// [`Codec::decoder`] read the file as one stream, and [`Codec::decompress`] decodes zstd
    /// frames in parallel again. With `threads <= 1`, or an input too small to split, this is
    /// [`Codec::compress`].
    pub fn compress_parallel(&self, input: &[u8], threads: usize) -> io::Result<Vec<u8>> {
        let Some(size) = self.piece_size(input, threads) else {
            return self.compress(input);
        };
        let parts: Vec<io::Result<Vec<u8>>> = std::thread::scope(|s| {
            let handles: Vec<_> = input
                .chunks(size)
                .map(|piece| s.spawn(move || PieceCompressor::new(*self).compress(piece)))
                .collect();
            join_all(handles, "compression")
        });
        let parts = parts.into_iter().collect::<io::Result<Vec<_>>>()?;
        Ok(concat(&parts))
    }

    /// The size of the pieces [`Codec::compress_parallel`] cuts `input` into for `threads`, or
    /// `None` when it compresses it whole.
    fn piece_size(&self, input: &[u8], threads: usize) -> Option<usize> {
        let pieces = (input.len() / MIN_PARALLEL_CHUNK)
            .min(threads)
            .min(MAX_PARALLEL_PIECES);
        (pieces >= 2 && *self != Codec::None).then(|| input.len().div_ceil(pieces))
    }

    /// [`Codec::compress_parallel`] of several inputs at once: each input is cut as
    /// `compress_parallel(input, threads)` cuts it, and `threads` threads share the work in
    /// order. The inputs but the last `threads` are jobs whole: one thread compresses an input's
    /// pieces one after another, straight into the buffer of its output. The last ones are cut
    /// into jobs of a piece each (joined once done), so that the batch ends evenly: a thread held
    /// up (descheduled by other work on the machine) does not leave the others waiting at its
    /// end. Whole jobs save what the pieces cost: a buffer per piece, first touched page by page
    /// (new memory is zeroed by the kernel), then copied into the joined output, which is
    /// touched again; profiled on a backlog drain, the joins and the zeroing of their memory
    /// were 3-6 % of the samples. Each output is byte for byte what `compress_parallel(input,
    /// threads)` gives.
    pub fn compress_parallel_many(
        &self,
        inputs: &[&[u8]],
        threads: usize,
    ) -> Vec<io::Result<Vec<u8>>> {
        /// One thread's share of the work.
        enum Job<'i> {
            /// Every piece of input `i`, cut at `size` (None: compressed whole).
            Input(usize, &'i [u8], Option<usize>),
            /// One piece of input `i`.
            Piece(usize, &'i [u8]),
        }
        let whole_inputs = inputs.len().saturating_sub(threads.max(1));
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let size = self.piece_size(input, threads);
            match size {
                Some(size) if i >= whole_inputs => {
                    jobs.extend(input.chunks(size).map(|p| Job::Piece(i, p)));
                }
                _ => jobs.push(Job::Input(i, input, size)),
            }
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done: Vec<std::sync::Mutex<Option<io::Result<Vec<u8>>>>> =
            jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..threads.clamp(1, jobs.len().max(1)) {
                s.spawn(|| {
                    // One compressor per thread for all its pieces: a zstd context's tables
                    // are allocated once, not once per piece.
                    let mut pc = PieceCompressor::new(*self);
                    loop {
                        let j = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(job) = jobs.get(j) else {
                            break;
                        };
                        let r = match *job {
                            Job::Input(_, input, None) => self.compress(input),
                            Job::Input(_, input, Some(size)) => pc.compress_pieces(input, size),
                            Job::Piece(_, piece) => pc.compress(piece),
                        };
                        // A whole job's output was allocated for the worst case (zstd's bound:
                        // more than the input): shrunk to its bytes at once, in place, the
                        // rest handed back to the allocator for the next job. A worker holds
                        // several batches of these while they are on the wire and keeps what
                        // it frees for reuse, so what it allocates at once is what it holds.
                        let r = r.map(|mut out| {
                            out.shrink_to_fit();
                            out
                        });
                        if let Ok(mut slot) = done[j].lock() {
                            *slot = Some(r);
                        }
                    }
                });
            }
        });
        // Each input's output, or its pieces in order, then joined once at their exact total
        // size.
        let mut parts: Vec<io::Result<Vec<Vec<u8>>>> =
            inputs.iter().map(|_| Ok(Vec::new())).collect();
        for (job, slot) in jobs.iter().zip(done) {
            let (Job::Input(i, _, _) | Job::Piece(i, _)) = *job;
            let part = slot
                .into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(io::Error::other("a compression thread failed")));
            match (part, &mut parts[i]) {
                (Ok(p), Ok(list)) => list.push(p),
                (Err(e), slot @ Ok(_)) => *slot = Err(e),
                (_, Err(_)) => {}
            }
        }
        parts
            .into_iter()
            .map(|r| {
                r.map(|mut list| match list.len() {
                    1 => list.swap_remove(0),
                    _ => concat(&list),
                })
            })
            .collect()
    }

    /// A streaming compressor writing into `out`, for content too large to hold in memory (a
    /// backup archive). zstd uses `threads` worker threads when `threads > 1` (zstd's own
    /// multithreading: the output is one ordinary zstd frame); gzip is written in members of
    /// [`GZIP_STREAM_MEMBER`] bytes of content, compressed by `threads` threads when `threads >
    /// 1` (the same bytes as one thread writes). Call [`Encoder::finish`] to end the stream.
    pub fn encoder<W: Write>(&self, out: W, threads: u32) -> io::Result<Encoder<W>> {
        Ok(match *self {
            Codec::None => Encoder::None(out),
            Codec::Gzip(level) => Encoder::Gzip(GzipMembers::new(out, level, threads)),
            Codec::Zstd(level) => {
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                for p in zstd_parameters(level) {
                    enc.set_parameter(p)?;
                }
                if threads > 1 {
                    enc.multithread(threads)?;
                }
                Encoder::Zstd(enc)
            }
        })
    }

    /// A decompressing reader over `r`. For gzip, concatenated members are read as one stream,
    /// as `gzip -d` does.
    pub fn decoder<'a, R: Read + 'a>(&self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Codec::None => Box::new(r),
            Codec::Gzip(_) => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(r))),
            Codec::Zstd(_) => Box::new(zstd::stream::read::Decoder::new(r)?),
        })
    }

    /// Decompresses all of `input`. zstd frames that declare their content size (all that we
    /// write do) are decoded straight into the result, several frames on several threads;
    /// anything else goes through the streaming [`Codec::decoder`].
    pub fn decompress(&self, input: &[u8], size_hint: usize) -> io::Result<Vec<u8>> {
        if let Codec::Zstd(_) = self {
            if let Some(frames) = zstd_frames(input) {
                return decompress_zstd_frames(input, &frames);
            }
        }
        let mut out = Vec::with_capacity(size_hint);
        self.decoder(input)?.read_to_end(&mut out)?;
        Ok(out)
    }
}

/// A failed write of [`Codec::decompress_to_file`] into its output file (its kind kept): the
/// input is in memory, so every other error is the input's, damaged data.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OutputError(io::Error);

/// Whether `e` is a failed write into the output file of [`Codec::decompress_to_file`] (the
/// restoring side's fault: a full or read-only disk), not damage in the input.
pub fn is_output_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<OutputError>())
}

impl Codec {
    /// Decompresses all of `input` into `out` from offset 0, with positioned writes through a
    /// small buffer, and returns the number of bytes written. Nothing as large as the content is
    /// ever allocated: the kernel takes the bytes straight into the page cache (a fresh 16 MiB
    /// buffer cost more in page faults here than decoding into it). zstd frames that declare
    /// their content size (all that we write do) are decoded in parallel, each at its own
    /// offset, and each must produce exactly what it declares; anything else is streamed.
    /// At most `threads` threads decode (at least one).
    pub fn decompress_to_file(
        &self,
        input: &[u8],
        out: &std::fs::File,
        threads: usize,
    ) -> io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let copy = |r: &mut dyn Read, mut at: u64| -> io::Result<u64> {
            let mut buf = vec![0u8; 256 << 10];
            let start = at;
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => return Ok(at - start),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                out.write_all_at(&buf[..n], at)
                    .map_err(|e| io::Error::new(e.kind(), OutputError(e)))?;
                at += n as u64;
            }
        };
        let frames = match self {
            Codec::Zstd(_) => zstd_frames(input),
            _ => None,
        };
        let Some(frames) = frames else {
            return copy(&mut self.decoder(input)?, 0);
        };
        let mut offsets = Vec::with_capacity(frames.len());
        let mut total = 0u64;
        for f in &frames {
            offsets.push(total);
            total += f.content as u64;
        }
        let decode = |i: usize| -> io::Result<()> {
            let f = &frames[i];
            let mut d = zstd::stream::read::Decoder::with_buffer(&input[f.start..f.start + f.len])?
                .single_frame();
            f.check_decoded(copy(&mut d, offsets[i])?)
        };
        let threads = threads.min(frames.len());
        if threads <= 1 {
            for i in 0..frames.len() {
                decode(i)?;
            }
            return Ok(total);
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<io::Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= frames.len() {
                            return Ok(());
                        }
                        decode(i)?;
                    })
                })
                .collect();
            join_all(handles, "decompression")
        });
        for r in results {
            r?;
        }
        Ok(total)
    }
}

/// Compresses the pieces of [`Codec::compress_parallel`], each a self-contained frame or member;
/// for zstd one context serves every piece it is given.
struct PieceCompressor {
    codec: Codec,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    /// gzip's compressor, made at first use.
    gzip: Option<Deflater>,
}

impl PieceCompressor {
    fn new(codec: Codec) -> PieceCompressor {
        PieceCompressor {
            codec,
            zstd: None,
            gzip: None,
        }
    }

    /// The gzip compressor every piece of this compressor goes through.
    fn deflater(&mut self, level: u32) -> &mut Deflater {
        self.gzip.get_or_insert_with(|| Deflater::new(level))
    }

    /// The zstd context every piece of this compressor goes through, made at first use.
    fn zstd_context(&mut self, level: i32) -> io::Result<&mut zstd::bulk::Compressor<'static>> {
        Ok(match &mut self.zstd {
            Some(c) => c,
            empty => {
                let mut c = zstd::bulk::Compressor::new(level)?;
                for p in zstd_parameters(level) {
                    c.set_parameter(p)?;
                }
                empty.insert(c)
            }
        })
    }

    fn compress(&mut self, piece: &[u8]) -> io::Result<Vec<u8>> {
        match self.codec {
            Codec::None => self.codec.compress(piece),
            Codec::Gzip(level) => self.deflater(level).member(piece),
            Codec::Zstd(level) => self.zstd_context(level)?.compress(piece),
        }
    }

    /// Every piece of `input` cut at `size`, compressed one after another into one buffer:
    /// the bytes [`PieceCompressor::compress`] gives for each piece, joined, without a buffer
    /// per piece nor the copy that joins them.
    fn compress_pieces(&mut self, input: &[u8], size: usize) -> io::Result<Vec<u8>> {
        let level = match self.codec {
            Codec::None => return Ok(input.to_vec()),
            Codec::Gzip(level) => {
                let d = self.deflater(level);
                let mut out = Vec::with_capacity(input.len() / 2);
                for piece in input.chunks(size) {
                    d.member_into(piece, &mut out)?;
                }
                return Ok(out);
            }
            Codec::Zstd(level) => level,
        };
        let c = self.zstd_context(level)?;
        let bound: usize = input
            .chunks(size)
            .map(|p| zstd::zstd_safe::compress_bound(p.len()))
            .sum();
        let mut out = Vec::with_capacity(bound);
        let cctx = c.context_mut();
        // A frame an earlier call left unfinished (it failed mid-frame) must not be continued.
        cctx.reset(zstd::zstd_safe::ResetDirective::SessionOnly)
            .map_err(zstd_error)?;
        for piece in input.chunks(size) {
            out.reserve(zstd::zstd_safe::compress_bound(piece.len()));
            let mut src = zstd::zstd_safe::InBuffer::around(piece);
            // Ending the frame in the call that gets the whole piece makes the frame a one-shot
            // compression's (content size in its header), the bytes of `compress`.
            loop {
                let at = out.len();
                let mut dst = zstd::zstd_safe::OutBuffer::around_pos(&mut out, at);
                let left = cctx
                    .compress_stream2(
                        &mut dst,
                        &mut src,
                        zstd::zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_end,
                    )
                    .map_err(zstd_error)?;
                if left == 0 {
                    break;
                }
                // The frame did not fit (never with a bound's room): make room for the rest.
                out.reserve(left);
            }
        }
        Ok(out)
    }
}

/// gzip's compressor: libdeflate, which compresses a whole buffer into one gzip member. Chosen
/// over flate2's backends by measurement on realistic WAL (ARCHITECTURE.md, "Default codec
/// levels"); flate2 still reads every gzip file.
struct Deflater {
    level: u32,
    compressor: Option<libdeflater::Compressor>,
    /// Where a member is compressed before it is copied to its output: room for the largest
    /// member so far, reused, so that an output only grows by what it holds.
    scratch: Vec<u8>,
}

impl Deflater {
    fn new(level: u32) -> Deflater {
        Deflater {
            level,
            compressor: None,
            scratch: Vec::new(),
        }
    }

    /// `input` as one gzip member, appended to `out`.
    fn member_into(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let c = match &mut self.compressor {
            Some(c) => c,
            empty => {
                let level = i32::try_from(self.level)
                    .ok()
                    .and_then(|l| libdeflater::CompressionLvl::new(l).ok())
                    .ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("invalid gzip level {}", self.level),
                        )
                    })?;
                empty.insert(libdeflater::Compressor::new(level))
            }
        };
        let bound = c.gzip_compress_bound(input.len());
        if self.scratch.len() < bound {
            self.scratch.resize(bound, 0);
        }
        let n = c
            .gzip_compress(input, &mut self.scratch)
            .map_err(|e| io::Error::other(format!("gzip: {e}")))?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }

    /// `input` as one gzip member, in a buffer of its own.
    fn member(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.member_into(input, &mut out)?;
        Ok(out)
    }
}

/// A gzip stream written as members of [`GZIP_STREAM_MEMBER`] bytes of content each (the last
/// one shorter; an empty stream is one empty member). With more than one thread the members
/// are compressed by a pool of threads, a few ahead of the one being written, and written in
/// order: the same bytes as one thread writes, at the speed of the cores (a base backup in the
/// seed's codec used one core of several while zstd used them all).
pub struct GzipMembers<W: Write> {
    out: W,
    deflater: Deflater,
    /// Content not yet compressed, less than a member.
    pending: Vec<u8>,
    /// The member being written out (one thread).
    member: Vec<u8>,
    /// Whether a member was written or handed to the pool.
    wrote: bool,
    /// The compressing threads, when there are several.
    pool: Option<MemberPool>,
}

/// Threads that compress gzip members, each answering on the channel the member came with, and
/// the answers still to be written, oldest first.
struct MemberPool {
    jobs: Option<std::sync::mpsc::Sender<MemberJob>>,
    waiting: std::collections::VecDeque<std::sync::mpsc::Receiver<io::Result<Vec<u8>>>>,
    /// How many members may be on their way at once: enough to keep every thread busy while
    /// the oldest is written out.
    limit: usize,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// One member to compress, and where its bytes go.
struct MemberJob {
    content: Vec<u8>,
    reply: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
}

impl MemberPool {
    /// `None` when not even one thread could be started (the stream then compresses itself).
    fn new(level: u32, threads: usize) -> Option<MemberPool> {
        let (tx, rx) = std::sync::mpsc::channel::<MemberJob>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let threads = (0..threads)
            .map_while(|_| {
                let rx = rx.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("pitr-gzip".into())
                        .spawn(move || {
                            let mut deflater = Deflater::new(level);
                            loop {
                                // The lock is held only to take a job; ends when the stream is done
                                // (the sender is gone) or another thread panicked.
                                let job = match rx.lock() {
                                    Ok(r) => r.recv(),
                                    Err(_) => return,
                                };
                                let Ok(job) = job else { return };
                                // The stream may have been dropped meanwhile: nobody to answer.
                                let _ = job.reply.send(deflater.member(&job.content));
                            }
                        });
                // A thread the system refuses is one fewer: the others do its share.
                spawned.ok()
            })
            .collect::<Vec<_>>();
        if threads.is_empty() {
            return None;
        }
        Some(MemberPool {
            jobs: Some(tx),
            waiting: std::collections::VecDeque::new(),
            limit: threads.len() + 2,
            threads,
        })
    }

    /// Hands `content` to a thread.
    fn submit(&mut self, content: Vec<u8>) -> io::Result<()> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .as_ref()
            .ok_or_else(pool_gone)?
            .send(MemberJob { content, reply })
            .map_err(|_| pool_gone())?;
        self.waiting.push_back(answer);
        Ok(())
    }

    /// Writes the oldest member to `out`, waiting for it.
    fn write_oldest(&mut self, out: &mut impl Write) -> io::Result<()> {
        if let Some(answer) = self.waiting.pop_front() {
            out.write_all(&answer.recv().map_err(|_| pool_gone())??)?;
        }
        Ok(())
    }

    /// Writes every member on its way, in order.
    fn write_all(&mut self, out: &mut impl Write) -> io::Result<()> {
        while !self.waiting.is_empty() {
            self.write_oldest(out)?;
        }
        Ok(())
    }
}

impl Drop for MemberPool {
    fn drop(&mut self) {
        // The threads end once the jobs' sender is gone and the queue is empty.
        self.jobs = None;
        self.waiting.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A compressing thread that ended without answering (it panicked).
fn pool_gone() -> io::Error {
    io::Error::other("a gzip compression thread ended without its member")
}

impl<W: Write> GzipMembers<W> {
    fn new(out: W, level: u32, threads: u32) -> GzipMembers<W> {
        GzipMembers {
            out,
            deflater: Deflater::new(level),
            pending: Vec::new(),
            member: Vec::new(),
            wrote: false,
            pool: (threads > 1)
                .then(|| MemberPool::new(level, threads as usize))
                .flatten(),
        }
    }

    /// Compresses what is pending as one member and writes it out (with several threads: hands
    /// it to the pool, and writes out the oldest members once enough are on their way).
    fn write_member(&mut self) -> io::Result<()> {
        self.wrote = true;
        match &mut self.pool {
            Some(pool) => {
                let content =
                    std::mem::replace(&mut self.pending, Vec::with_capacity(GZIP_STREAM_MEMBER));
                pool.submit(content)?;
                while pool.waiting.len() > pool.limit {
                    pool.write_oldest(&mut self.out)?;
                }
            }
            None => {
                self.member.clear();
                self.deflater.member_into(&self.pending, &mut self.member)?;
                self.out.write_all(&self.member)?;
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// Writes out every member handed to the pool.
    fn write_waiting(&mut self) -> io::Result<()> {
        match &mut self.pool {
            Some(pool) => pool.write_all(&mut self.out),
            None => Ok(()),
        }
    }

    fn finish(mut self) -> io::Result<W> {
        if !self.pending.is_empty() || !self.wrote {
            self.write_member()?;
        }
        self.write_waiting()?;
        self.pool = None;
        Ok(self.out)
    }
}

impl<W: Write> Write for GzipMembers<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(GZIP_STREAM_MEMBER);
        }
        let n = buf.len().min(GZIP_STREAM_MEMBER - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == GZIP_STREAM_MEMBER {
            self.write_member()?;
        }
        Ok(n)
    }

    /// Writes what is pending as a member of its own and every member on its way, then flushes
    /// the output.
    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.write_member()?;
        }
        self.write_waiting()?;
        self.out.flush()
    }
}

/// A zstd error code as an I/O error.
fn zstd_error(code: usize) -> io::Error {
    io::Error::other(zstd::zstd_safe::get_error_name(code))
}

/// The pieces joined into one buffer of exactly their total size.
fn concat(pieces: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pieces.iter().map(Vec::len).sum());
    for p in pieces {
        out.extend_from_slice(p);
    }
    out
}

/// Joins the threads of one parallel (de)compression, in order; a thread that panicked is an
/// error naming `what`, never a panic here.
fn join_all<T>(
    handles: Vec<std::thread::ScopedJoinHandle<'_, io::Result<T>>>,
    what: &str,
) -> Vec<io::Result<T>> {
    handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other(format!("a {what} thread panicked"))))
        })
        .collect()
}

/// The largest content [`Codec::decompress`] allocates up front from zstd frame headers (a WAL
/// segment is at most 1 GiB); larger or undeclared content is streamed.
const MAX_DECLARED_CONTENT: u64 = 1 << 30;

/// One zstd frame of a file: where it is and how much it decodes to.
struct ZstdFrame {
    start: usize,
    len: usize,
    content: usize,
}

impl ZstdFrame {
    /// A decoded frame must hold exactly the content size it declares.
    fn check_decoded(&self, n: u64) -> io::Result<()> {
        if n == self.content as u64 {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "zstd frame at byte {} declares {} bytes but holds {n}",
                    self.start, self.content
                ),
            ))
        }
    }
}

/// The frames of `input` when every one of them declares its content size and the total is
/// sane; `None` sends the caller to the streaming decoder, which reports any damage.
fn zstd_frames(input: &[u8]) -> Option<Vec<ZstdFrame>> {
    let mut frames = Vec::new();
    let mut start = 0usize;
    let mut total = 0u64;
    while start < input.len() {
        let rest = &input[start..];
        let content = zstd::zstd_safe::get_frame_content_size(rest).ok()??;
        let len = zstd::zstd_safe::find_frame_compressed_size(rest).ok()?;
        total = total.checked_add(content)?;
        if len == 0 || total > MAX_DECLARED_CONTENT {
            return None;
        }
        frames.push(ZstdFrame {
            start,
            len,
            content: usize::try_from(content).ok()?,
        });
        start += len;
    }
    (!frames.is_empty()).then_some(frames)
}

/// Decodes `frames` of `input` into one buffer, in parallel when there are several; each frame
/// must decode to exactly the size it declares (zstd checks each frame's checksum).
fn decompress_zstd_frames(input: &[u8], frames: &[ZstdFrame]) -> io::Result<Vec<u8>> {
    let total: usize = frames.iter().map(|f| f.content).sum();
    let mut out = vec![0u8; total];
    let decode = |f: &ZstdFrame, dst: &mut [u8]| -> io::Result<()> {
        let mut d = zstd::bulk::Decompressor::new()?;
        f.check_decoded(d.decompress_to_buffer(&input[f.start..f.start + f.len], dst)? as u64)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if frames.len() == 1 || threads == 1 {
        let mut rest = out.as_mut_slice();
        for f in frames {
            let (dst, tail) = rest.split_at_mut(f.content);
            decode(f, dst)?;
            rest = tail;
        }
        return Ok(out);
    }
    let results: Vec<io::Result<()>> = std::thread::scope(|s| {
        let mut rest = out.as_mut_slice();
        let mut handles = Vec::with_capacity(frames.len());
        for f in frames {
            let (dst, tail) = rest.split_at_mut(f.content);
            rest = tail;
            handles.push(s.spawn(move || decode(f, dst)));
        }
        join_all(handles, "decompression")
    });
    for r in results {
        r?;
    }
    Ok(out)
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Codec::None => f.write_str("none"),
            Codec::Gzip(l) => write!(f, "gzip:{l}"),
            Codec::Zstd(l) => write!(f, "zstd:{l}"),
        }
    }
}

/// A streaming compressor made by [`Codec::encoder`].
pub enum Encoder<W: Write> {
    /// No compression.
    None(W),
    /// gzip, in members.
    Gzip(GzipMembers<W>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoder::None(_) => "Encoder::None",
            Encoder::Gzip(_) => "Encoder::Gzip",
            Encoder::Zstd(_) => "Encoder::Zstd",
        })
    }
}

impl<W: Write> Encoder<W> {
    /// Ends the compressed stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        match self {
            Encoder::None(w) => w,
            Encoder::Gzip(e) => &mut e.out,
            Encoder::Zstd(e) => e.get_mut(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// How an archived file's name says it was compressed, for the reading side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A codec we read.
    Readable(Codec),
    /// An OmniPITR codec we recognise but cannot decode (`bzip2`, `xz`, `lz4`, `lzma`).
    Unreadable(&'static str),
}

/// Every stored form of a file, by extension: the one table of what `.zst`, `.gz` and a plain
/// name mean, and of OmniPITR's extensions we recognise but cannot decode. `SEG`, `SEG.gz` and
/// `SEG.zst` are one WAL name in the archive; readers look for each form in this order after
/// the preferred one.
pub const STORED_FORMS: &[(&str, Stored)] = &[
    ("", Stored::Readable(Codec::None)),
    (".zst", Stored::Readable(Codec::Zstd(DEFAULT_ZSTD_LEVEL))),
    (".gz", Stored::Readable(Codec::Gzip(DEFAULT_GZIP_LEVEL))),
    (".bz2", Stored::Unreadable("bzip2")),
    (".xz", Stored::Unreadable("xz")),
    (".lz4", Stored::Unreadable("lz4")),
    (".lzma", Stored::Unreadable("lzma")),
];

/// Splits an archived file name into the WAL name and how it is stored, by its extension.
pub fn split_stored_name(name: &str) -> (&str, Stored) {
    for (ext, stored) in &STORED_FORMS[1..] {
        if let Some(base) = name.strip_suffix(ext) {
            return (base, *stored);
        }
    }
    (name, Stored::Readable(Codec::None))
}

/// The file names `base` may be stored under, the form of `preferred` first.
pub fn stored_names(base: &str, preferred: Codec) -> impl Iterator<Item = (String, Stored)> + '_ {
    let first = preferred.extension();
    STORED_FORMS
        .iter()
        .filter(move |(ext, _)| *ext == first)
        .chain(STORED_FORMS.iter().filter(move |(ext, _)| *ext != first))
        .map(move |(ext, stored)| (format!("{base}{ext}"), *stored))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_levels() {
        assert_eq!(Codec::parse("none").unwrap(), Codec::None);
        assert_eq!(Codec::parse("gzip").unwrap(), Codec::Gzip(1));
        assert_eq!(Codec::parse("gzip:3").unwrap(), Codec::Gzip(3));
        assert_eq!(Codec::parse("zstd").unwrap(), Codec::Zstd(2));
        assert_eq!(Codec::parse("zstd:19").unwrap(), Codec::Zstd(19));
        assert_eq!(
            Codec::parse("lz5").unwrap_err().to_string(),
            "unknown codec \"lz5\""
        );
        assert_eq!(
            Codec::parse("xz").unwrap_err().to_string(),
            "codec \"xz\" is not supported"
        );
        assert_eq!(
            Codec::parse("gzip:10").unwrap_err().to_string(),
            "invalid level \"10\" for codec gzip"
        );
        assert!(Codec::parse("zstd:x").is_err());
        assert!(Codec::parse("none:1").is_err());
    }

    #[test]
    fn round_trips() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for c in [
            Codec::None,
            Codec::Gzip(1),
            Codec::Gzip(9),
            Codec::Zstd(1),
            Codec::Zstd(19),
        ] {
            let z = c.compress(&data).unwrap();
            if c != Codec::None {
                assert!(z.len() < data.len() / 2, "{c}");
            }
            assert_eq!(c.decompress(&z, data.len()).unwrap(), data, "{c}");
        }
    }

    /// Text of words with numbers in it, like a WAL record's tuples: enough distinct matches
    /// that the hash table's size changes what zstd finds.
    fn wordy_text(len: usize) -> Vec<u8> {
        let words = [
            "archive", "segment", "restore", "replica", "timeline", "invoice", "customer",
            "pending", "approved", "the", "of", "and", "status", "quantity", "berlin", "osaka",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(words[(x % 16) as usize].as_bytes());
            out.push(b' ');
            if x.is_multiple_of(7) {
                out.extend_from_slice((x % 100_000).to_string().as_bytes());
                out.push(b' ');
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn zstd_level_2_uses_the_small_hash_table_on_every_path() {
        use zstd::stream::raw::CParameter;
        let input = wordy_text(2 << 20);
        let checksum = CParameter::ChecksumFlag(true);
        let small_table = CParameter::HashLog(ZSTD_LEVEL_2_HASH_LOG);
        let bulk = |level: i32, params: &[CParameter]| {
            let mut c = zstd::bulk::Compressor::new(level).unwrap();
            for p in params {
                c.set_parameter(*p).unwrap();
            }
            c.compress(&input).unwrap()
        };
        let stream = |params: &[CParameter], pledged: bool| {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 2).unwrap();
            for p in params {
                e.set_parameter(*p).unwrap();
            }
            if pledged {
                e.set_pledged_src_size(Some(input.len() as u64)).unwrap();
            }
            e.write_all(&input).unwrap();
            e.finish().unwrap()
        };
        let same = |got: Vec<u8>, want: &[CParameter], not: &[CParameter], path: &str| {
            let (want, not) = match path {
                "one-shot" => (stream(want, true), stream(not, true)),
                "stream" => (stream(want, false), stream(not, false)),
                _ => (bulk(2, want), bulk(2, not)),
            };
            // The table's size changes the bytes on this input, so the check can fail.
            assert!(want != not, "{path}: the parameter changes nothing here");
            assert!(got == want, "{path}: not written with the small hash table");
        };
        let codec = Codec::Zstd(2);
        let ours = [checksum, small_table];
        let zstds = [checksum];
        same(codec.compress(&input).unwrap(), &ours, &zstds, "one-shot");
        let piece = PieceCompressor::new(codec).compress(&input).unwrap();
        same(piece, &ours, &zstds, "a piece");
        let pieces = PieceCompressor::new(codec)
            .compress_pieces(&input, input.len())
            .unwrap();
        same(pieces, &ours, &zstds, "pieces");
        let mut enc = codec.encoder(Vec::new(), 1).unwrap();
        enc.write_all(&input).unwrap();
        same(enc.finish().unwrap(), &ours, &zstds, "stream");
        // Other levels keep zstd's own parameters.
        let three = PieceCompressor::new(Codec::Zstd(3))
            .compress(&input)
            .unwrap();
        assert!(three == bulk(3, &[checksum]), "level 3");
    }

    #[test]
    fn compressing_many_gives_what_compressing_each_gives() {
        let big: Vec<u8> = (0..3 * MIN_PARALLEL_CHUNK + 77)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        let small = b"a small input, compressed whole".to_vec();
        let inputs: Vec<&[u8]> = vec![&big, &small, &big[..MIN_PARALLEL_CHUNK * 2], &[]];
        for codec in [Codec::Zstd(3), Codec::Gzip(3), Codec::None] {
            for threads in [1, 2, 3] {
                let many = codec.compress_parallel_many(&inputs, threads);
                assert_eq!(many.len(), inputs.len());
                for (input, got) in inputs.iter().zip(many) {
                    let want = codec.compress_parallel(input, threads).unwrap();
                    let got = got.unwrap();
                    // Held while a batch is on the wire: no room kept for the worst case.
                    assert_eq!(got.capacity(), got.len(), "{codec} with {threads} threads");
                    assert_eq!(got, want, "{codec} with {threads} threads");
                }
            }
        }
        assert!(Codec::Zstd(3).compress_parallel_many(&[], 2).is_empty());
    }

    #[test]
    fn parallel_compression_round_trips_and_uses_the_container_formats() {
        // 5 MiB: split into chunks for 2 threads; pseudo-random runs so neither codec
        // shrinks it to nothing.
        let mut x = 0x2545_f491_u32;
        let data: Vec<u8> = (0..5 << 20)
            .map(|i: u32| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                if i % 64 < 16 {
                    (x % 256) as u8
                } else {
                    (i % 7) as u8
                }
            })
            .collect();
        for c in [Codec::None, Codec::Gzip(6), Codec::Zstd(1), Codec::Zstd(3)] {
            let z = c.compress_parallel(&data, 2).unwrap();
            assert_eq!(c.decompress(&z, data.len()).unwrap(), data, "{c}");
            match c {
                Codec::Gzip(_) => {
                    // Several members, each a complete gzip stream.
                    let members = z.windows(3).filter(|w| w == &[0x1f, 0x8b, 8]).count();
                    assert!(members >= 2, "{c}: {members} members");
                    let mut one = flate2::read::GzDecoder::new(z.as_slice());
                    let mut first = Vec::new();
                    one.read_to_end(&mut first).unwrap();
                    assert!(first.len() < data.len() && data.starts_with(&first));
                }
                Codec::Zstd(_) => {
                    // Two frames (one per thread), each with its content size; the zstd
                    // streaming decoder reads them as one stream too.
                    let frames = zstd_frames(&z).unwrap();
                    assert_eq!(frames.len(), 2);
                    assert_eq!(frames.iter().map(|f| f.content).sum::<usize>(), data.len());
                    let mut streamed = Vec::new();
                    c.decoder(z.as_slice())
                        .unwrap()
                        .read_to_end(&mut streamed)
                        .unwrap();
                    assert_eq!(streamed, data);
                }
                Codec::None => assert_eq!(z, data),
            }
        }
        // However many threads: at most MAX_PARALLEL_PIECES frames.
        let many = Codec::Zstd(1).compress_parallel(&data, 64).unwrap();
        assert_eq!(zstd_frames(&many).unwrap().len(), MAX_PARALLEL_PIECES);
        assert_eq!(Codec::Zstd(1).decompress(&many, data.len()).unwrap(), data);
        // Small inputs and one thread take the plain path.
        let small = &data[..1000];
        assert_eq!(
            Codec::Gzip(6).compress_parallel(small, 4).unwrap(),
            Codec::Gzip(6).compress(small).unwrap()
        );
    }

    #[test]
    fn streaming_encoders_round_trip() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 97) as u8).collect();
        for (c, threads) in [
            (Codec::None, 1),
            (Codec::Gzip(1), 1),
            (Codec::Gzip(1), 2),
            (Codec::Gzip(6), 3),
            (Codec::Zstd(3), 1),
            (Codec::Zstd(3), 2),
        ] {
            let mut enc = c.encoder(Vec::new(), threads).unwrap();
            for chunk in data.chunks(100_000) {
                enc.write_all(chunk).unwrap();
            }
            let z = enc.finish().unwrap();
            assert_eq!(
                c.decompress(&z, data.len()).unwrap(),
                data,
                "{c} x{threads}"
            );
        }
    }

    /// A gzip stream is whole members of [`GZIP_STREAM_MEMBER`] bytes of content, the last one
    /// shorter, whatever the sizes of the writes; a flush ends a member early; an empty stream is
    /// one empty member. Each member is read alone by a single-member decoder.
    #[test]
    fn a_gzip_stream_is_members_of_the_stated_size() {
        let members = |z: &[u8]| -> Vec<usize> {
            let mut sizes = Vec::new();
            let mut rest = z;
            while !rest.is_empty() {
                let mut d = flate2::bufread::GzDecoder::new(rest);
                let mut out = Vec::new();
                d.read_to_end(&mut out).unwrap();
                sizes.push(out.len());
                rest = d.into_inner();
            }
            sizes
        };
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut enc = Codec::Gzip(1).encoder(Vec::new(), 1).unwrap();
        for chunk in data.chunks(333_333) {
            enc.write_all(chunk).unwrap();
        }
        let z = enc.finish().unwrap();
        let m = GZIP_STREAM_MEMBER;
        assert_eq!(members(&z), [m, m, data.len() - 2 * m]);
        assert_eq!(Codec::Gzip(1).decompress(&z, 0).unwrap(), data);

        let mut enc = Codec::Gzip(6).encoder(Vec::new(), 1).unwrap();
        enc.write_all(&data[..1000]).unwrap();
        enc.flush().unwrap();
        enc.write_all(&data[1000..1500]).unwrap();
        let z = enc.finish().unwrap();
        assert_eq!(members(&z), [1000, 500]);

        let z = Codec::Gzip(1)
            .encoder(Vec::new(), 1)
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(members(&z), [0]);
    }

    /// With several threads a gzip stream is the very bytes one thread writes: the same members
    /// in the same order, flushes ending members at the same places, one empty member for an
    /// empty stream.
    #[test]
    fn a_gzip_stream_on_several_threads_is_the_one_thread_stream() {
        let data: Vec<u8> = (0..9_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> (i % 13)) as u8)
            .collect();
        let write = |threads: u32| -> Vec<u8> {
            let mut enc = Codec::Gzip(1).encoder(Vec::new(), threads).unwrap();
            for (i, chunk) in data.chunks(777_777).enumerate() {
                enc.write_all(chunk).unwrap();
                if i == 3 {
                    enc.flush().unwrap();
                }
            }
            enc.finish().unwrap()
        };
        let one = write(1);
        assert_eq!(Codec::Gzip(1).decompress(&one, 0).unwrap(), data);
        for threads in [2, 3, 8] {
            assert!(write(threads) == one, "{threads} threads");
        }
        let empty = |threads: u32| {
            Codec::Gzip(1)
                .encoder(Vec::new(), threads)
                .unwrap()
                .finish()
                .unwrap()
        };
        assert_eq!(empty(4), empty(1));
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let data = vec![7u8; 100_000];
        for c in [Codec::Gzip(6), Codec::Zstd(3)] {
            let mut z = c.compress(&data).unwrap();
            let n = z.len();
            z.truncate(n - 5);
            assert!(c.decompress(&z, data.len()).is_err(), "truncated {c}");
            let mut z = c.compress(&data).unwrap();
            let mid = z.len() / 2;
            z[mid] ^= 0xFF;
            let r = c.decompress(&z, data.len());
            assert!(r.is_err() || r.unwrap() != data, "flipped {c}");
        }
    }

    #[test]
    fn decompress_to_file_writes_every_frame_at_its_offset() {
        let data: Vec<u8> = (0..3u32 << 20)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        for (c, threads) in [
            (Codec::Zstd(3), 4),
            (Codec::Zstd(1), 1),
            (Codec::Gzip(6), 3),
            (Codec::None, 1),
        ] {
            let z = c.compress_parallel(&data, threads).unwrap();
            let f = tempfile::tempfile().unwrap();
            assert_eq!(
                c.decompress_to_file(&z, &f, threads).unwrap(),
                data.len() as u64,
                "{c}"
            );
            let mut back = Vec::new();
            (&f).read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "{c}");
        }
        // A damaged frame is an error, not a short or wrong file.
        let c = Codec::Zstd(3);
        let mut z = c.compress_parallel(&data, 3).unwrap();
        let frames = zstd_frames(&z).unwrap();
        assert_eq!(frames.len(), 3);
        let i = frames[2].start + frames[2].len / 2;
        z[i] ^= 0x55;
        let f = tempfile::tempfile().unwrap();
        let e = c.decompress_to_file(&z, &f, 2).unwrap_err();
        assert!(!is_output_error(&e), "{e}");
        // A file that cannot be written: the output's error, told apart from damage.
        let z = c.compress_parallel(&data, 3).unwrap();
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("ro");
        std::fs::write(&path, b"").unwrap();
        let ro = std::fs::File::open(&path).unwrap();
        for threads in [1, 2] {
            let e = c.decompress_to_file(&z, &ro, threads).unwrap_err();
            assert!(is_output_error(&e), "{e}");
        }
    }

    #[test]
    fn damaged_parallel_zstd_is_an_error() {
        let data: Vec<u8> = (0..4u32 << 20)
            .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
            .collect();
        let c = Codec::Zstd(3);
        let z = c.compress_parallel(&data, 2).unwrap();
        let frames = zstd_frames(&z).unwrap();
        assert_eq!(frames.len(), 2);
        // A flipped byte inside the second frame's data: its checksum (or its blocks) fail.
        let mut bad = z.clone();
        let i = frames[1].start + frames[1].len / 2;
        bad[i] ^= 0x55;
        assert!(c.decompress(&bad, data.len()).is_err());
        // The second frame cut short: not a complete frame list, the streaming decoder fails.
        let mut cut = z.clone();
        cut.truncate(z.len() - 3);
        assert!(c.decompress(&cut, data.len()).is_err());
        // The second frame gone entirely: a complete but shorter file; the caller's size and
        // header checks reject it (here: the content is only the first half).
        let first = &z[..frames[0].len];
        assert_eq!(
            c.decompress(first, data.len()).unwrap(),
            &data[..frames[0].content]
        );
    }

    #[test]
    fn stored_forms_are_one_table() {
        assert_eq!(
            split_stored_name("000000010000000000000001.zst"),
            ("000000010000000000000001", Stored::Readable(Codec::Zstd(2)))
        );
        assert_eq!(
            split_stored_name("000000010000000000000001"),
            ("000000010000000000000001", Stored::Readable(Codec::None))
        );
        assert_eq!(
            split_stored_name("00000002.history.bz2"),
            ("00000002.history", Stored::Unreadable("bzip2"))
        );
        assert_eq!(Codec::Gzip(6).extension(), ".gz");
        assert_eq!(Codec::Zstd(19).extension(), ".zst");
        assert_eq!(Codec::None.extension(), "");
        let names: Vec<String> = super::stored_names("S", Codec::Gzip(1))
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            ["S.gz", "S", "S.zst", "S.bz2", "S.xz", "S.lz4", "S.lzma"]
        );
    }
}
