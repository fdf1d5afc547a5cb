//! qcow2 → raw while streaming: one sequential pass over the image, each data cluster
//! written to its guest offset as it goes by. Tables come first through Range requests
//! when the source offers them; otherwise they are learnt on the way, with a bounded
//! look-behind buffer for clusters that arrive before the table that maps them.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hasher as _};
use std::io::{self, BufRead, Read};

use super::header::{l1_entry, l2_entry, table_u64, CompressionType, Header, L2Entry, Qcow2Error};
use crate::sink::BlockSink;

/// Random access to the image, when the transport has it (HTTP Range, a local file).
pub trait RangeRead {
    fn read_range(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>>;
}

/// Bytes of clusters kept while their meaning is unknown (no Range support).
pub const LOOKBEHIND_BYTES: usize = 32 << 20;
/// Most clusters an image may map (16 bytes of memory each while waiting for them).
pub const MAX_MAPPED_CLUSTERS: usize = 1 << 22;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Format(#[from] Qcow2Error),
    #[error("reading the qcow2 image")]
    Read(#[source] io::Error),
    #[error("writing the disk")]
    Write(#[source] io::Error),
    #[error("qcow2 {0}")]
    Layout(String),
    #[error("qcow2 image is {virtual_size} bytes, larger than the {disk}-byte disk")]
    TooLarge { virtual_size: u64, disk: u64 },
}

/// What a conversion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Converted {
    pub virtual_size: u64,
    pub data_clusters: u64,
    pub compressed_clusters: u64,
    pub used_ranges: bool,
}

fn fingerprint(b: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write(b);
    h.finish()
}

struct Walker<'a> {
    h: Header,
    cs: u64,
    image_len: Option<u64>,
    out: &'a mut dyn BlockSink,
    /// (host cluster, guest offset) of plain data clusters still to come.
    data: BTreeSet<(u64, u64)>,
    /// host byte offset → (guest offset, length bound) of compressed clusters to come.
    compressed: BTreeMap<u64, Vec<(u64, u64)>>,
    l1_bytes: Option<Vec<u8>>,
    l1_known: bool,
    pending_l2: BTreeMap<u64, u64>,
    /// Tables fetched by Range: host cluster → (start in cluster, len, fingerprint).
    fetched: BTreeMap<u64, (usize, usize, u64)>,
    metadata: BTreeSet<u64>,
    held: BTreeMap<u64, Vec<u8>>,
    held_bytes: usize,
    tail: Vec<u8>,
    tail_base: u64,
    /// Host offset up to which the stream has been read.
    pos: u64,
    stats: Converted,
    scratch: Vec<u8>,
}

fn read_full(src: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Convert the qcow2 image read from `src` (positioned at its first byte) onto `out`.
pub fn convert(
    src: &mut dyn BufRead,
    ranges: Option<&mut dyn RangeRead>,
    image_len: Option<u64>,
    out: &mut dyn BlockSink,
) -> Result<Converted, ConvertError> {
    let mut probe = vec![0u8; Header::PROBE];
    let n = read_full(src, &mut probe).map_err(ConvertError::Read)?;
    let bits_probe = Header::parse(&probe[..n], None);
    // Cluster bits are needed to know how much of the header cluster to read; errors about
    // the header itself are reported once the full cluster is in.
    let cluster_bits = match bits_probe {
        Ok(h) => h.cluster_bits,
        Err(Qcow2Error::Truncated(_)) if n >= 24 => {
            u32::from_be_bytes([probe[20], probe[21], probe[22], probe[23]])
        }
        Err(e) => return Err(e.into()),
    };
    if !(9..=21).contains(&cluster_bits) {
        return Err(Qcow2Error::ClusterBits(cluster_bits).into());
    }
    let cs = 1u64 << cluster_bits;
    let mut first = probe[..n].to_vec();
    first.resize(cs as usize, 0);
    let got = if n == Header::PROBE {
        read_full(src, &mut first[n..]).map_err(ConvertError::Read)?
    } else {
        0
    };
    first.truncate(n + got);
    let h = Header::parse(&first, image_len)?;
    if h.virtual_size > out.size() {
        return Err(ConvertError::TooLarge {
            virtual_size: h.virtual_size,
            disk: out.size(),
        });
    }
    let mut w = Walker {
        cs,
        image_len,
        out,
        data: BTreeSet::new(),
        compressed: BTreeMap::new(),
        l1_bytes: None,
        l1_known: false,
        pending_l2: BTreeMap::new(),
        fetched: BTreeMap::new(),
        metadata: BTreeSet::new(),
        held: BTreeMap::new(),
        held_bytes: 0,
        tail: vec![],
        tail_base: 0,
        pos: first.len() as u64,
        stats: Converted {
            virtual_size: h.virtual_size,
            ..Converted::default()
        },
        scratch: vec![0u8; cs as usize],
        h,
    };
    if w.h.l1_entries == 0 {
        w.l1_known = true;
    } else if let Some(r) = ranges {
        w.prefetch(r)?;
        w.stats.used_ranges = true;
    }
    let mut buf = vec![0u8; cs as usize];
    loop {
        // A whole cluster in the source's buffer is handled in place; one split across
        // buffers is gathered into `buf`.
        let avail = src.fill_buf().map_err(ConvertError::Read)?;
        if avail.len() >= cs as usize {
            let at = w.pos;
            w.pos += cs;
            w.cluster(at, &avail[..cs as usize])?;
            src.consume(cs as usize);
            continue;
        }
        let n = read_full(src, &mut buf).map_err(ConvertError::Read)?;
        if n == 0 {
            break;
        }
        let at = w.pos;
        w.pos += n as u64;
        w.cluster(at, &buf[..n])?;
        if n < buf.len() {
            break;
        }
    }
    w.finish()
}

impl Walker<'_> {
    fn all_known(&self) -> bool {
        self.l1_known && self.pending_l2.is_empty()
    }

    fn l1_len(&self) -> u64 {
        self.h.l1_entries * 8
    }

    fn prefetch(&mut self, r: &mut dyn RangeRead) -> Result<(), ConvertError> {
        let l1 = r
            .read_range(self.h.l1_offset, self.l1_len() as usize)
            .map_err(ConvertError::Read)?;
        if l1.len() as u64 != self.l1_len() {
            return Err(self.past_end("L1 table", self.h.l1_offset));
        }
        self.remember(self.h.l1_offset, &l1);
        let mut tables = vec![];
        for (i, guest_base) in self.l1_iter() {
            let off = l1_entry(table_u64(&l1, i), &self.h)?;
            if off == 0 {
                self.zero_span(guest_base)?;
            } else {
                tables.push((off, guest_base));
            }
        }
        self.l1_known = true;
        for (off, guest_base) in tables {
            self.check_in_image("L2 table", off, self.cs)?;
            let t = r
                .read_range(off, self.cs as usize)
                .map_err(ConvertError::Read)?;
            if t.len() as u64 != self.cs {
                return Err(self.past_end("L2 table", off));
            }
            self.remember(off, &t);
            self.l2(&t, guest_base)?;
        }
        Ok(())
    }

    /// Note what a Range read returned, to compare with the stream when it passes.
    fn remember(&mut self, offset: u64, bytes: &[u8]) {
        let mut at = offset;
        for piece in bytes.chunks(self.cs as usize) {
            let cluster = at / self.cs * self.cs;
            let start = (at - cluster) as usize;
            let len = piece.len().min(self.cs as usize - start);
            self.fetched
                .insert(cluster, (start, len, fingerprint(&piece[..len])));
            at += len as u64;
        }
    }

    fn l1_iter(&self) -> impl Iterator<Item = (usize, u64)> {
        let span = self.h.l1_span();
        let vsize = self.h.virtual_size;
        (0..self.h.l1_entries as usize)
            .map(move |i| (i, i as u64 * span))
            .take_while(move |(_, g)| *g < vsize)
    }

    fn past_end(&self, what: &'static str, offset: u64) -> ConvertError {
        Qcow2Error::PastEnd {
            what,
            offset,
            len: self.image_len.unwrap_or(self.pos),
        }
        .into()
    }

    fn check_in_image(
        &self,
        what: &'static str,
        offset: u64,
        len: u64,
    ) -> Result<(), ConvertError> {
        match self.image_len {
            Some(l) if offset.saturating_add(len) > l => Err(self.past_end(what, offset)),
            _ => Ok(()),
        }
    }

    fn zero_span(&mut self, guest_base: u64) -> Result<(), ConvertError> {
        let end = (guest_base + self.h.l1_span()).min(self.h.virtual_size);
        self.zeroes(guest_base, end - guest_base)
    }

    fn zeroes(&mut self, guest: u64, len: u64) -> Result<(), ConvertError> {
        if len == 0 || self.out.reads_zero() {
            return Ok(());
        }
        self.out
            .write_zeroes(guest, len)
            .map_err(ConvertError::Write)
    }

    fn l1(&mut self, l1: &[u8]) -> Result<(), ConvertError> {
        let mut late = vec![];
        for (i, guest_base) in self.l1_iter() {
            let off = l1_entry(table_u64(l1, i), &self.h)?;
            if off == 0 {
                self.zero_span(guest_base)?;
            } else if off < self.pos {
                late.push((off, guest_base));
            } else {
                self.check_in_image("L2 table", off, self.cs)?;
                if self.pending_l2.insert(off, guest_base).is_some() {
                    return Err(ConvertError::Layout(format!(
                        "L1 entries share the L2 table at {off:#x}"
                    )));
                }
            }
        }
        self.l1_known = true;
        for (off, guest_base) in late {
            let t = self
                .held
                .get(&off)
                .cloned()
                .ok_or_else(|| self.lost("L2 table", off))?;
            self.l2(&t, guest_base)?;
        }
        Ok(())
    }

    fn lost(&self, what: &str, off: u64) -> ConvertError {
        ConvertError::Layout(format!(
            "{what} at {off:#x} comes before the table that points at it, further back than the \
             {} MiB look-behind; serve the image from a server with Range support or rewrite it \
             with `qemu-img convert -O qcow2`",
            LOOKBEHIND_BYTES >> 20
        ))
    }

    fn l2(&mut self, table: &[u8], guest_base: u64) -> Result<(), ConvertError> {
        let mut zero_run: Option<(u64, u64)> = None;
        for i in 0..self.h.l2_entries() as usize {
            let guest = guest_base + i as u64 * self.cs;
            if guest >= self.h.virtual_size {
                break;
            }
            let e = l2_entry(table_u64(table, i), &self.h, guest)?;
            if e == L2Entry::Zero {
                let len = self.cs.min(self.h.virtual_size - guest);
                zero_run = match zero_run {
                    Some((s, l)) if s + l == guest => Some((s, l + len)),
                    Some((s, l)) => {
                        self.zeroes(s, l)?;
                        Some((guest, len))
                    }
                    None => Some((guest, len)),
                };
                continue;
            }
            if self.data.len() + self.compressed.len() >= MAX_MAPPED_CLUSTERS {
                return Err(ConvertError::Layout(format!(
                    "image maps more than {MAX_MAPPED_CLUSTERS} clusters ahead of the stream; refusing it"
                )));
            }
            match e {
                L2Entry::Zero => {}
                L2Entry::Data(off) => {
                    self.check_in_image("data cluster", off, self.cs)?;
                    if off < self.pos {
                        let c = self
                            .held
                            .get(&off)
                            .cloned()
                            .ok_or_else(|| self.lost("data cluster", off))?;
                        self.emit(guest, &c)?;
                    } else {
                        self.data.insert((off, guest));
                    }
                }
                L2Entry::Compressed { offset, len } => {
                    if offset >= self.image_len.unwrap_or(u64::MAX) {
                        return Err(self.past_end("compressed cluster", offset));
                    }
                    if offset < self.pos {
                        let bytes = self
                            .gather_held(offset, len)
                            .ok_or_else(|| self.lost("compressed cluster", offset))?;
                        self.inflate_emit(guest, &bytes)?;
                    } else {
                        self.compressed
                            .entry(offset)
                            .or_default()
                            .push((guest, len));
                    }
                }
            }
        }
        if let Some((s, l)) = zero_run {
            self.zeroes(s, l)?;
        }
        Ok(())
    }

    fn gather_held(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let mut out = vec![];
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let cluster = at / self.cs * self.cs;
            let Some(c) = self.held.get(&cluster) else {
                break;
            };
            let from = (at - cluster) as usize;
            let to = ((end - cluster) as usize).min(c.len());
            out.extend_from_slice(&c[from..to]);
            at = cluster + self.cs;
        }
        (!out.is_empty()).then_some(out)
    }

    fn emit(&mut self, guest: u64, cluster: &[u8]) -> Result<(), ConvertError> {
        let n = (self.h.virtual_size - guest).min(cluster.len() as u64) as usize;
        self.stats.data_clusters += 1;
        self.out
            .write_at(guest, &cluster[..n])
            .map_err(ConvertError::Write)
    }

    fn inflate_emit(&mut self, guest: u64, input: &[u8]) -> Result<(), ConvertError> {
        let mut out = std::mem::take(&mut self.scratch);
        let r = inflate(self.h.compression, input, &mut out).map_err(|why| {
            ConvertError::Layout(format!(
                "compressed cluster for guest offset {guest:#x} is corrupt: {why}"
            ))
        });
        let r = r.and_then(|()| {
            let n = (self.h.virtual_size - guest).min(out.len() as u64) as usize;
            self.stats.compressed_clusters += 1;
            self.out
                .write_at(guest, &out[..n])
                .map_err(ConvertError::Write)
        });
        self.scratch = out;
        r
    }

    /// Handle the stream bytes `c` found at host offset `at` (one cluster, or the last part).
    fn cluster(&mut self, at: u64, c: &[u8]) -> Result<(), ConvertError> {
        let mut is_meta = false;
        if let Some((start, len, fp)) = self.fetched.remove(&at) {
            is_meta = true;
            if c.len() < start + len || fingerprint(&c[start..start + len]) != fp {
                return Err(ConvertError::Layout(format!(
                    "table at {at:#x} differs between the Range read and the stream: the image changed during the download"
                )));
            }
        }
        if !self.l1_known {
            let (l1s, l1e) = (self.h.l1_offset, self.h.l1_offset + self.l1_len());
            let (cs, ce) = (at, at + c.len() as u64);
            if cs < l1e && ce > l1s {
                is_meta = true;
                let from = l1s.max(cs);
                let to = l1e.min(ce);
                let bytes = self.l1_bytes.get_or_insert_with(Vec::new);
                bytes.extend_from_slice(&c[(from - cs) as usize..(to - cs) as usize]);
                if to == l1e {
                    let l1 = self.l1_bytes.take().unwrap_or_default();
                    self.l1(&l1)?;
                }
            }
        }
        if let Some(guest_base) = self.pending_l2.remove(&at) {
            is_meta = true;
            if c.len() as u64 != self.cs {
                return Err(self.past_end("L2 table", at));
            }
            self.l2(c, guest_base)?;
        }
        let rt = self.h.refcount_table_offset;
        let rt_end = rt + u64::from(self.h.refcount_table_clusters) * self.cs;
        if at >= rt && at < rt_end {
            is_meta = true;
            for i in 0..c.len() / 8 {
                let block = table_u64(c, i) & !(self.cs - 1);
                if block != 0 {
                    self.metadata.insert(block);
                }
            }
        }
        is_meta |= self.metadata.remove(&at);

        let guests: Vec<u64> = self
            .data
            .range((at, 0)..(at + 1, 0))
            .map(|&(_, g)| g)
            .collect();
        for g in &guests {
            self.data.remove(&(at, *g));
            if c.len() as u64 != self.cs {
                return Err(self.past_end("data cluster", at));
            }
            self.emit(*g, c)?;
        }
        let end = at + c.len() as u64;
        let compressed_here = self.compressed.range(..end).next().is_some();
        if compressed_here {
            if self.tail.is_empty() {
                self.tail_base = at;
            }
            self.tail.extend_from_slice(c);
            self.drain_compressed(false)?;
        }
        if !is_meta && guests.is_empty() && !compressed_here && !self.all_known() {
            self.held_bytes += c.len();
            if self.held_bytes > LOOKBEHIND_BYTES {
                return Err(self.lost("a cluster", at));
            }
            self.held.insert(at, c.to_vec());
        }
        if self.all_known() && !self.held.is_empty() {
            self.held.clear();
            self.held_bytes = 0;
        }
        Ok(())
    }

    /// Decompress the compressed clusters whose bytes have all arrived (or all there will
    /// be, at the end), then drop tail bytes nobody needs.
    fn drain_compressed(&mut self, at_eof: bool) -> Result<(), ConvertError> {
        let ready: Vec<u64> = self
            .compressed
            .range(..self.pos)
            .filter(|(&off, v)| at_eof || v.iter().all(|&(_, len)| off + len <= self.pos))
            .map(|(&off, _)| off)
            .collect();
        for off in ready {
            let Some(entries) = self.compressed.remove(&off) else {
                continue;
            };
            for (guest, len) in entries {
                if off < self.tail_base {
                    return Err(self.lost("compressed cluster", off));
                }
                let from = (off - self.tail_base) as usize;
                let to = (from as u64 + len).min(self.tail.len() as u64) as usize;
                let input = self.tail[from..to].to_vec();
                self.inflate_emit(guest, &input)?;
            }
        }
        let keep_from = self
            .compressed
            .keys()
            .next()
            .copied()
            .unwrap_or(self.pos)
            .min(self.pos);
        if keep_from > self.tail_base {
            let drop = ((keep_from - self.tail_base) as usize).min(self.tail.len());
            self.tail.drain(..drop);
            self.tail_base += drop as u64;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Converted, ConvertError> {
        if !self.l1_known {
            return Err(self.past_end("L1 table", self.h.l1_offset));
        }
        if let Some((&off, _)) = self.pending_l2.iter().next() {
            return Err(self.past_end("L2 table", off));
        }
        if let Some(&(off, _)) = self.data.iter().next() {
            return Err(self.past_end("data cluster", off));
        }
        self.drain_compressed(true)?;
        if let Some((&off, _)) = self.compressed.iter().next() {
            return Err(self.past_end("compressed cluster", off));
        }
        Ok(self.stats)
    }
}

/// Decompress one cluster: raw deflate (qemu's "zlib") or a zstd frame; the input may
/// carry padding after the compressed data.
pub fn inflate(kind: CompressionType, input: &[u8], out: &mut [u8]) -> Result<(), String> {
    match kind {
        CompressionType::Zlib => {
            let mut d = flate2::Decompress::new(false);
            d.decompress(input, out, flate2::FlushDecompress::Finish)
                .map_err(|e| e.to_string())?;
            if d.total_out() as usize != out.len() {
                return Err(format!(
                    "inflated to {} of {} bytes",
                    d.total_out(),
                    out.len()
                ));
            }
            Ok(())
        }
        CompressionType::Zstd => {
            let mut d =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| e.to_string())?;
            d.read_exact(out).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::MemSink;
    use rand::{Rng, SeedableRng};

    struct Ranges(Vec<u8>);
    impl RangeRead for Ranges {
        fn read_range(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
            let s = (offset as usize).min(self.0.len());
            Ok(self.0[s..(s + len).min(self.0.len())].to_vec())
        }
    }

    const CS: usize = 512;

    /// A v3 qcow2 with 512-byte clusters: header, L1 at cluster 1, data clusters placed
    /// *before* the L2 table (so the no-Range path needs its look-behind), one
    /// zlib-compressed cluster, one zero-flagged cluster. Returns (image, guest bytes).
    fn image() -> (Vec<u8>, Vec<u8>) {
        let vsize = 16 * CS; // 16 guest clusters, one L2 table (64 entries) covers them
        let mut guest = vec![0u8; vsize];
        let mut img = vec![0u8; 2 * CS];
        img[..4].copy_from_slice(&super::super::MAGIC);
        img[4..8].copy_from_slice(&3u32.to_be_bytes());
        img[20..24].copy_from_slice(&9u32.to_be_bytes());
        img[24..32].copy_from_slice(&(vsize as u64).to_be_bytes());
        img[36..40].copy_from_slice(&1u32.to_be_bytes());
        img[40..48].copy_from_slice(&(CS as u64).to_be_bytes());
        img[96..100].copy_from_slice(&4u32.to_be_bytes());
        img[100..104].copy_from_slice(&104u32.to_be_bytes());
        let mut l2 = vec![0u8; CS];
        // guest clusters 3 and 7: plain data at host clusters 2 and 3
        for (i, (g, h)) in [(3usize, 2usize), (7, 3)].into_iter().enumerate() {
            let data: Vec<u8> = (0..CS).map(|j| (j * (i + 3) % 251) as u8 + 1).collect();
            guest[g * CS..(g + 1) * CS].copy_from_slice(&data);
            img.extend_from_slice(&data);
            l2[g * 8..g * 8 + 8].copy_from_slice(&((1u64 << 63) | (h * CS) as u64).to_be_bytes());
        }
        // guest cluster 9: compressed (raw deflate) at host cluster 4
        let data: Vec<u8> = (0..CS).map(|j| (j / 7) as u8).collect();
        guest[9 * CS..10 * CS].copy_from_slice(&data);
        let mut c = flate2::Compress::new(flate2::Compression::best(), false);
        let mut packed = vec![0u8; CS];
        c.compress(&data, &mut packed, flate2::FlushCompress::Finish)
            .unwrap();
        packed.truncate(c.total_out() as usize);
        let host = (4 * CS) as u64;
        img.extend_from_slice(&packed);
        img.resize(5 * CS, 0);
        let sectors = (packed.len() as u64).div_ceil(512) - 1;
        let shift = 62 - (9 - 8);
        l2[72..80].copy_from_slice(&((1u64 << 62) | (sectors << shift) | host).to_be_bytes());
        // guest cluster 11: zero flag
        l2[88..96].copy_from_slice(&1u64.to_be_bytes());
        // L2 table at host cluster 5, pointed at by the L1 in cluster 1
        img[CS..CS + 8].copy_from_slice(&((1u64 << 63) | (5 * CS) as u64).to_be_bytes());
        img.extend_from_slice(&l2);
        (img, guest)
    }

    #[test]
    fn converts_with_and_without_ranges() {
        let (img, guest) = image();
        for zeroed in [true, false] {
            let mut disk = MemSink::new(guest.len() + CS, zeroed);
            let c = convert(&mut &img[..], None, Some(img.len() as u64), &mut disk).unwrap();
            assert_eq!(
                &disk.data[..guest.len()],
                &guest[..],
                "no ranges, zeroed={zeroed}"
            );
            assert_eq!(
                (c.data_clusters, c.compressed_clusters, c.used_ranges),
                (2, 1, false)
            );
            let mut disk = MemSink::new(guest.len(), zeroed);
            let mut r = Ranges(img.clone());
            let c = convert(
                &mut &img[..],
                Some(&mut r),
                Some(img.len() as u64),
                &mut disk,
            )
            .unwrap();
            assert_eq!(disk.data, guest, "ranges, zeroed={zeroed}");
            assert!(c.used_ranges);
        }
    }

    #[test]
    fn a_table_changed_between_range_read_and_stream_is_caught() {
        let (img, guest) = image();
        let mut other = img.clone();
        other[5 * CS + 30 * 8] = 0x80; // an extra entry only in the stream's copy
        let mut disk = MemSink::new(guest.len(), true);
        let mut r = Ranges(img);
        let e = convert(&mut &other[..], Some(&mut r), None, &mut disk).unwrap_err();
        assert!(
            e.to_string().contains("image changed during the download"),
            "{e}"
        );
    }

    #[test]
    fn mutated_images_never_panic() {
        let (img, guest) = image();
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..3000 {
            let mut m = img.clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..m.len());
                m[at] = rng.random();
            }
            m.truncate(rng.random_range(0..=m.len()));
            let mut disk = MemSink::new(guest.len() * 2, rng.random());
            let _ = convert(&mut &m[..], None, None, &mut disk);
            let mut r = Ranges(m.clone());
            let mut disk = MemSink::new(guest.len() * 2, true);
            let _ = convert(&mut &m[..], Some(&mut r), Some(m.len() as u64), &mut disk);
        }
    }
}
