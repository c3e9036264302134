//! The data archive of `stackctl data save` / `load` (docs/src/data.md).
//!
//! An outer tar, compressed with zstd (frame checksums on) unless `--no-compress`:
//!
//! ```text
//! manifest.json                   format, project, stage, stackctl version, time, the items
//! volumes/NAME.tar.000000         a named volume: the engine's tar of it, in parts
//! volumes/NAME.tar.000001         …
//! data/NAME/0.tar.000000          a data container's first volume path, in parts
//! checksums.json                  per item: bytes, files, content bytes, sha256
//! ```
//!
//! Each item's stream is the engine's own tar of the path (GET /containers/{id}/archive),
//! stored as it came, cut into parts of at most [`PART`] bytes: a tar entry needs its size
//! up front and the engine does not say it, so a part is the bounded buffer that makes the
//! archive streamable in constant memory. `cat volumes/NAME.tar.*` gives the item's tar back.
//! The sizes and sha256 of each item are known only once it went through, hence the trailer
//! `checksums.json`, the last entry.

use std::io::{Read, Write};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format name and version in `manifest.json`.
pub const FORMAT: &str = "stackctl-data/1";

/// The largest part of an item's stream in the archive (the bounded buffer of `save`).
pub const PART: usize = 4 << 20;

/// What `load` reads at a time from an archive entry.
const READ_CHUNK: usize = 256 << 10;

/// The most a `manifest.json` or `checksums.json` may weigh: they are read whole.
const MAX_JSON: u64 = 4 << 20;

/// zstd's frame magic number, the first four bytes of a compressed archive.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A named volume of `volumes:`.
    Volume,
    /// A volume path of a data container of `data_containers:`.
    Data,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Volume => "volume",
            Kind::Data => "data container",
        }
    }
}

/// A service that mounts an item, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountInfo {
    pub service: String,
    pub target: String,
}

/// One stream of the archive: a named volume, or one volume path of a data container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemInfo {
    /// The key under `volumes:` or `data_containers:`.
    pub name: String,
    pub kind: Kind,
    /// The path the stream was read from: the data container's volume path, or
    /// `/stackctl-data` (where a helper mounts a named volume).
    pub path: String,
    /// The entry name the parts extend (`volumes/NAME.tar`).
    pub entry: String,
    /// The services that mount it (for the reader; not checked).
    #[serde(default)]
    pub mounts: Vec<MountInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub project: String,
    pub stage: String,
    pub stackctl_version: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// `zstd` or `none`.
    pub compression: String,
    pub items: Vec<ItemInfo>,
}

/// What went through for one item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSum {
    pub entry: String,
    /// Bytes of the item's tar stream.
    pub bytes: u64,
    /// Entries in it (files, directories, links), the top directory included.
    pub entries: u64,
    /// Bytes of file content in it.
    pub content_bytes: u64,
    /// sha256 of the item's tar stream, hex.
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    pub items: Vec<ItemSum>,
}

/// One step of an archive's stream, as the reader of a file or the reader of a stage gives
/// it to whoever restores it.
#[derive(Debug)]
pub enum Msg {
    Manifest(Manifest),
    /// The item of this index in the manifest begins.
    Start(usize),
    Data(Bytes),
    /// The current item ends.
    End,
    Trailer(Checksums),
}

/// Measures an item's stream as it passes: sha256, bytes, and (from the tar headers)
/// entries and content bytes; `entries >= 2` means the directory holds something.
#[derive(Default)]
pub struct Measure {
    hasher: Sha256,
    pub bytes: u64,
    scan: TarScan,
}

impl Measure {
    pub fn feed(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        self.scan.feed(data);
    }

    pub fn entries(&self) -> u64 {
        self.scan.entries
    }

    pub fn finish(self, entry: &str) -> ItemSum {
        ItemSum {
            entry: entry.to_string(),
            bytes: self.bytes,
            entries: self.scan.entries,
            content_bytes: self.scan.content,
            sha256: hex(&self.hasher.finalize()),
        }
    }
}

/// A tar header scanner fed in chunks of any size: counts entries (extension headers left
/// out) and content bytes. It only measures: a malformed stream stops the count, the
/// engine and the checksums judge it.
#[derive(Default)]
pub struct TarScan {
    header: Vec<u8>,
    skip: u64,
    /// Content of a PAX header being collected (its `size=` overrides the next header's).
    pax: Option<Vec<u8>>,
    pax_size: Option<u64>,
    pub entries: u64,
    pub content: u64,
    broken: bool,
}

impl TarScan {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.broken {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                if let Some(pax) = self.pax.as_mut() {
                    if pax.len() < 64 * 1024 {
                        pax.extend_from_slice(&data[..n]);
                    }
                }
                self.skip -= n as u64;
                data = &data[n..];
                if self.skip == 0 {
                    if let Some(pax) = self.pax.take() {
                        self.pax_size = pax_size(&pax);
                    }
                }
                continue;
            }
            let want = 512 - self.header.len();
            let n = want.min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() == 512 {
                let header = std::mem::take(&mut self.header);
                self.header_done(&header);
            }
        }
    }

    fn header_done(&mut self, header: &[u8]) {
        if header.iter().all(|&b| b == 0) {
            return;
        }
        let Some(size) = octal_or_binary(&header[124..136]) else {
            self.broken = true;
            return;
        };
        let typeflag = header[156];
        let padded = size.div_ceil(512) * 512;
        match typeflag {
            b'x' => {
                self.pax = Some(Vec::new());
                self.skip = padded;
                // The collected content is cut to the record's size below.
                if padded == 0 {
                    self.pax = None;
                }
            }
            b'g' | b'L' | b'K' => self.skip = padded,
            _ => {
                let size = self.pax_size.take().unwrap_or(size);
                self.entries += 1;
                // Regular files (and contiguous ones) carry content; links and directories
                // carry none whatever their size field says.
                if matches!(typeflag, b'0' | 0 | b'7') {
                    self.content += size;
                    self.skip = size.div_ceil(512) * 512;
                } else {
                    self.skip = padded;
                }
            }
        }
    }
}

/// The `size` record of a PAX extended header (`NN size=123\n`).
fn pax_size(pax: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(pax);
    text.split('\n')
        .filter_map(|record| record.split_once(' ').map(|(_, kv)| kv))
        .find_map(|kv| kv.strip_prefix("size="))
        .and_then(|v| v.trim().parse().ok())
}

/// A tar number field: octal text, or base-256 when the high bit of the first byte is set.
fn octal_or_binary(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The archive's bytes on their way out: compressed or not.
enum Out<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Plain(W),
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Zstd(e) => e.write(buf),
            Out::Plain(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Zstd(e) => e.flush(),
            Out::Plain(w) => w.flush(),
        }
    }
}

/// Writes an archive: the manifest, each item in parts, the trailer.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<Out<W>>,
    part: Vec<u8>,
    part_index: usize,
    entry: String,
    mtime: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// `level`: zstd level, or None for no compression.
    pub fn new(out: W, level: Option<i32>) -> std::io::Result<Self> {
        let out = match level {
            Some(level) => {
                let mut encoder = zstd::stream::write::Encoder::new(out, level)?;
                encoder.include_checksum(true)?;
                Out::Zstd(encoder)
            }
            None => Out::Plain(out),
        };
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        Ok(ArchiveWriter {
            tar: tar::Builder::new(out),
            part: Vec::new(),
            part_index: 0,
            entry: String::new(),
            mtime,
        })
    }

    fn append(&mut self, name: &str, data: &[u8]) -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(self.mtime);
        header.set_entry_type(tar::EntryType::Regular);
        self.tar.append_data(&mut header, name, data)
    }

    fn json<T: Serialize>(&mut self, name: &str, value: &T) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
        self.append(name, &text)
    }

    pub fn manifest(&mut self, manifest: &Manifest) -> std::io::Result<()> {
        self.json("manifest.json", manifest)
    }

    pub fn start(&mut self, entry: &str) {
        self.entry = entry.to_string();
        self.part_index = 0;
        self.part.clear();
    }

    pub fn data(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            if self.part.capacity() < PART {
                self.part.reserve_exact(PART - self.part.len());
            }
            let n = (PART - self.part.len()).min(data.len());
            self.part.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.part.len() == PART {
                self.flush_part()?;
            }
        }
        Ok(())
    }

    fn flush_part(&mut self) -> std::io::Result<()> {
        let name = format!("{}.{:06}", self.entry, self.part_index);
        let part = std::mem::take(&mut self.part);
        self.append(&name, &part)?;
        self.part = part;
        self.part.clear();
        self.part_index += 1;
        Ok(())
    }

    pub fn end(&mut self) -> std::io::Result<()> {
        if !self.part.is_empty() || self.part_index == 0 {
            self.flush_part()?;
        }
        Ok(())
    }

    /// Write the trailer and close the archive (and the compression frame).
    pub fn finish(mut self, checksums: &Checksums) -> std::io::Result<W> {
        self.json("checksums.json", checksums)?;
        self.tar.finish()?;
        match self.tar.into_inner()? {
            Out::Zstd(encoder) => encoder.finish(),
            Out::Plain(w) => Ok(w),
        }
    }
}

/// An archive that cannot be used: damaged, cut short, or not one of ours.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadArchive(pub String);

/// Read an archive from `input` (compressed or not: told by its first bytes) and send its
/// steps to `send` (which returns false when nobody listens any more). Runs on a blocking
/// thread; memory stays bounded by [`READ_CHUNK`] and what `send` holds.
pub fn read_archive(
    input: Box<dyn Read + Send>,
    send: &mut dyn FnMut(Result<Msg, BadArchive>) -> bool,
) {
    if let Err(err) = read_inner(input, send) {
        send(Err(err));
    }
}

fn bad(what: impl std::fmt::Display) -> BadArchive {
    BadArchive(what.to_string())
}

fn read_inner(
    input: Box<dyn Read + Send>,
    send: &mut dyn FnMut(Result<Msg, BadArchive>) -> bool,
) -> Result<(), BadArchive> {
    use std::io::BufRead;
    let mut buffered = std::io::BufReader::with_capacity(1 << 20, input);
    let head = buffered
        .fill_buf()
        .map_err(|e| bad(format!("cannot read it: {}", crate::error::io_reason(&e))))?;
    if head.is_empty() {
        return Err(bad("it is empty"));
    }
    let reader: Box<dyn Read> = if head.starts_with(&ZSTD_MAGIC) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| bad(format!("cannot start decompressing it: {e}")))?,
        )
    } else {
        Box::new(buffered)
    };
    let mut archive = tar::Archive::new(reader);
    let mut trailer: Option<Checksums> = None;
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("it is not a tar archive: {e}")))?;
    let mut manifest: Option<Manifest> = None;
    // (item index, next part number) of the item under way.
    let mut current: Option<(usize, usize)> = None;
    let mut started: Vec<usize> = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| match manifest {
            None => bad(format!("it is not a stackctl data archive ({e})")),
            Some(_) => bad(format!("it is damaged: {e}")),
        })?;
        let name = entry
            .path()
            .map_err(|e| bad(format!("it is damaged: {e}")))?
            .to_string_lossy()
            .into_owned();
        if trailer.is_some() {
            return Err(bad(format!(
                "unexpected entry `{name}` after checksums.json"
            )));
        }
        let Some(manifest_ref) = manifest.as_ref() else {
            if name != "manifest.json" {
                return Err(bad(format!(
                    "it does not begin with manifest.json (first entry: `{name}`): not a stackctl data archive"
                )));
            }
            let parsed: Manifest = read_json(&mut entry, "manifest.json")?;
            if parsed.format != FORMAT {
                return Err(bad(format!(
                    "its format is `{}`; this stackctl reads `{FORMAT}`",
                    parsed.format
                )));
            }
            manifest = Some(parsed.clone());
            if !send(Ok(Msg::Manifest(parsed))) {
                return Ok(());
            }
            continue;
        };
        if name == "checksums.json" {
            if current.take().is_some() && !send(Ok(Msg::End)) {
                return Ok(());
            }
            trailer = Some(read_json(&mut entry, "checksums.json")?);
            continue;
        }
        let (item, part) = part_of(manifest_ref, &name).ok_or_else(|| {
            bad(format!(
                "unexpected entry `{name}`: no item of its manifest"
            ))
        })?;
        match current {
            Some((index, next)) if index == item => {
                if part != next {
                    return Err(bad(format!(
                        "part `{name}` is out of order (expected part {next})"
                    )));
                }
            }
            _ => {
                if current.is_some() && !send(Ok(Msg::End)) {
                    return Ok(());
                }
                if part != 0 {
                    return Err(bad(format!("`{name}`: parts before it are missing")));
                }
                if started.contains(&item) {
                    return Err(bad(format!("`{name}`: its item appears twice")));
                }
                started.push(item);
                if !send(Ok(Msg::Start(item))) {
                    return Ok(());
                }
            }
        }
        current = Some((item, part + 1));
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| bad(format!("it is damaged (in `{name}`): {e}")))?;
            if n == 0 {
                break;
            }
            if !send(Ok(Msg::Data(Bytes::copy_from_slice(&buf[..n])))) {
                return Ok(());
            }
        }
    }
    if manifest.is_none() {
        return Err(bad(
            "it holds no manifest.json: not a stackctl data archive",
        ));
    }
    let Some(sums) = trailer else {
        return Err(bad("it ends before checksums.json: it was cut short"));
    };
    read_to_end(archive.into_inner())?;
    send(Ok(Msg::Trailer(sums)));
    Ok(())
}

/// The archive's last bytes after its last entry: the rest of the tar's end (two blocks of
/// zeros, the first read by the tar reader) and, compressed, the end of the zstd frame with
/// its checksum, which the decoder checks only when it is read. An archive cut anywhere,
/// even in those last bytes, is refused: a backup verified by loading it must be whole.
fn read_to_end(mut rest: impl Read) -> Result<(), BadArchive> {
    const BLOCK: u64 = 512;
    let mut buf = vec![0u8; 64 << 10];
    let mut zeros: u64 = 0;
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(bad(format!("it is damaged at its end: {e}"))),
        };
        if buf[..n].iter().any(|&b| b != 0) {
            return Err(bad("it is damaged: bytes follow the end of its tar"));
        }
        zeros += n as u64;
    }
    if zeros < BLOCK {
        return Err(bad("its end is missing: it was cut short"));
    }
    Ok(())
}

/// The item index and part number of a part's entry name (`volumes/db.tar.000003`).
fn part_of(manifest: &Manifest, name: &str) -> Option<(usize, usize)> {
    let (entry, part) = name.rsplit_once('.')?;
    if part.len() != 6 || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index = manifest.items.iter().position(|i| i.entry == entry)?;
    Some((index, part.parse().ok()?))
}

fn read_json<T: serde::de::DeserializeOwned>(
    entry: &mut impl Read,
    name: &str,
) -> Result<T, BadArchive> {
    let mut text = Vec::new();
    entry
        .take(MAX_JSON + 1)
        .read_to_end(&mut text)
        .map_err(|e| bad(format!("it is damaged (in `{name}`): {e}")))?;
    if text.len() as u64 > MAX_JSON {
        return Err(bad(format!("its `{name}` is too large")));
    }
    serde_json::from_slice(&text).map_err(|e| bad(format!("its `{name}` is not valid: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        dir.set_mode(0o755);
        builder
            .append_data(&mut dir, "d/", std::io::empty())
            .unwrap();
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, format!("d/{name}"), *data)
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn the_scanner_counts_entries_and_content_in_any_chunking() {
        let long = "x".repeat(150);
        let tar = tar_of(&[("a", b"hello"), (&long, &[7u8; 1000])]);
        for chunk in [1, 7, 512, 100_000] {
            let mut measure = Measure::default();
            for piece in tar.chunks(chunk) {
                measure.feed(piece);
            }
            assert_eq!(measure.entries(), 3, "chunk {chunk}");
            let sum = measure.finish("e");
            assert_eq!(sum.content_bytes, 1005);
            assert_eq!(sum.bytes, tar.len() as u64);
        }
        let mut empty = Measure::default();
        empty.feed(&tar_of(&[]));
        assert_eq!(empty.entries(), 1, "the directory alone: empty");
    }

    fn archive(level: Option<i32>, items: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let manifest = Manifest {
            format: FORMAT.into(),
            project: "p".into(),
            stage: "s".into(),
            stackctl_version: "0".into(),
            created: "now".into(),
            compression: "none".into(),
            items: items
                .iter()
                .map(|(name, _)| ItemInfo {
                    name: name.to_string(),
                    kind: Kind::Volume,
                    path: "/stackctl-data".into(),
                    entry: format!("volumes/{name}.tar"),
                    mounts: Vec::new(),
                })
                .collect(),
        };
        let mut writer = ArchiveWriter::new(Vec::new(), level).unwrap();
        writer.manifest(&manifest).unwrap();
        let mut sums = Checksums::default();
        for (name, data) in items {
            let entry = format!("volumes/{name}.tar");
            writer.start(&entry);
            let mut measure = Measure::default();
            for piece in data.chunks(3 << 20) {
                writer.data(piece).unwrap();
                measure.feed(piece);
            }
            writer.end().unwrap();
            sums.items.push(measure.finish(&entry));
        }
        writer.finish(&sums).unwrap()
    }

    fn read_all(bytes: Vec<u8>) -> Result<(Vec<Vec<u8>>, Checksums), String> {
        let mut items: Vec<Vec<u8>> = Vec::new();
        let mut trailer = None;
        let mut error = None;
        read_archive(Box::new(std::io::Cursor::new(bytes)), &mut |msg| {
            match msg {
                Ok(Msg::Manifest(_)) | Ok(Msg::End) => {}
                Ok(Msg::Start(_)) => items.push(Vec::new()),
                Ok(Msg::Data(data)) => items.last_mut().unwrap().extend_from_slice(&data),
                Ok(Msg::Trailer(t)) => trailer = Some(t),
                Err(e) => error = Some(e.0),
            }
            true
        });
        match error {
            Some(e) => Err(e),
            None => Ok((items, trailer.expect("trailer"))),
        }
    }

    #[test]
    fn an_archive_round_trips_in_parts_compressed_or_not() {
        let big: Vec<u8> = (0..(PART * 2 + 1000)).map(|i| (i % 251) as u8).collect();
        for level in [None, Some(3)] {
            let bytes = archive(level, &[("a", big.clone()), ("b", b"small".to_vec())]);
            let (items, trailer) = read_all(bytes).unwrap();
            assert_eq!(items, vec![big.clone(), b"small".to_vec()]);
            assert_eq!(trailer.items.len(), 2);
        }
    }

    #[test]
    fn damaged_or_foreign_input_is_an_error_never_a_panic() {
        let good = archive(Some(3), &[("a", vec![1u8; 100_000])]);
        let mut flipped = good.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        assert!(read_all(flipped).is_err());
        let cut = good[..good.len() / 2].to_vec();
        assert!(read_all(cut).is_err());
        assert!(read_all(b"hello, not an archive".to_vec()).is_err());
        assert!(read_all(Vec::new()).is_err());
        let plain = archive(None, &[("a", vec![1u8; 10])]);
        assert!(read_all(plain[..plain.len() - 1024 - 512].to_vec()).is_err());
    }

    /// RELIABILITY 6: an archive missing its last 1-4 bytes (only the zstd frame's checksum
    /// cut) was accepted; so was a plain one missing its tar end. A cut anywhere is refused.
    #[test]
    fn reliability6_an_archive_cut_in_its_last_bytes_is_refused() {
        let items = [("a", vec![7u8; 50_000]), ("b", b"tiny".to_vec())];
        for level in [Some(3), None] {
            let good = archive(level, &items);
            assert!(read_all(good.clone()).is_ok());
            for cut in 1..=600.min(good.len()) {
                let err = read_all(good[..good.len() - cut].to_vec());
                assert!(err.is_err(), "{level:?}: cut of {cut} bytes accepted");
            }
        }
        let mut extra = archive(Some(3), &items);
        extra.extend_from_slice(b"garbage");
        assert!(read_all(extra).is_err(), "bytes after the frame");
    }

    #[test]
    fn no_mutation_or_cut_of_an_archive_panics() {
        let items = [("a", vec![3u8; 5000]), ("b", b"tiny".to_vec())];
        for level in [None, Some(1)] {
            let good = archive(level, &items);
            let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
            for _ in 0..300 {
                let mut bytes = good.clone();
                for _ in 0..3 {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let at = (seed >> 33) as usize % bytes.len();
                    bytes[at] ^= (seed >> 17) as u8 | 1;
                }
                let _ = read_all(bytes);
            }
            // Cut anywhere: refused.
            for cut in (0..good.len()).step_by(97) {
                assert!(read_all(good[..cut].to_vec()).is_err(), "cut at {cut}");
            }
        }
    }
}
