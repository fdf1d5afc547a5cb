//! Framing at the socket edge: reads and writes whole PDUs over blocking or tokio streams.

use std::io::{BufRead, BufReader, Read, Write};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::crc32c::{crc32c, Crc32c};
use crate::pdu::{lengths, op, pad4, Bhs, DataOut, Framing, Pdu, PduError, BHS_LEN};

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("connection closed by the peer")]
    Closed,
    #[error("socket I/O failed")]
    Io(#[from] std::io::Error),
    #[error("the initiator queued more than {0} PDUs while a command waited for its data")]
    TooManyPending(usize),
    #[error("malformed PDU")]
    Pdu(#[from] PduError),
}

/// A parsed PDU, or the BHS of one that failed to parse (for a Reject carrying it).
pub type Received = Result<Pdu, (PduError, Option<[u8; BHS_LEN]>)>;

fn eof_closed(e: std::io::Error) -> IoError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        IoError::Closed
    } else {
        IoError::Io(e)
    }
}

/// Reads one PDU. Socket errors are `Err`; a PDU that is framed but fails to parse is
/// `Ok(Err(..))` when the stream is still in sync (unknown opcode), so the caller can reject
/// it; framing errors (oversized segment, bad digest) are `Err(IoError::Pdu)`.
pub fn read_pdu<R: Read>(r: &mut R, f: &Framing) -> Result<Received, IoError> {
    let mut bhs = [0u8; BHS_LEN];
    r.read_exact(&mut bhs).map_err(eof_closed)?;
    let l = lengths(&bhs, f)?;
    let mut rest = vec![0u8; l.rest(f)];
    r.read_exact(&mut rest).map_err(eof_closed)?;
    parse(&bhs, Bytes::from(rest), f)
}

/// Like [`read_pdu`], reading into `buf`, whose allocation is reused once the previous
/// PDU's data has been dropped (large per-PDU allocations cost page faults, notably with
/// musl, whose allocator maps every large block afresh).
pub fn read_pdu_buf<R: Read>(
    r: &mut R,
    f: &Framing,
    buf: &mut BytesMut,
) -> Result<Received, IoError> {
    let mut bhs = [0u8; BHS_LEN];
    r.read_exact(&mut bhs).map_err(eof_closed)?;
    let l = lengths(&bhs, f)?;
    let n = l.rest(f);
    buf.clear();
    buf.resize(n, 0);
    r.read_exact(&mut buf[..]).map_err(eof_closed)?;
    parse(&bhs, buf.split().freeze(), f)
}

/// Where the payload of a solicited Data-Out may go without a copy: a Data-Out of
/// `itt`/`ttt` whose data lies inside `buf` (which holds the command's bytes from buffer
/// offset `offset`) is read straight into it.
pub struct Landing<'a> {
    pub itt: u32,
    pub ttt: u32,
    pub offset: u32,
    pub buf: &'a mut [u8],
}

/// What [`read_pdu_landing`] read.
pub enum Landed {
    /// A Data-Out whose `usize` data bytes are now in the landing buffer.
    DataOut(DataOut, usize),
    /// Any other PDU (or a Data-Out that did not fit), as [`read_pdu_buf`] returns it.
    Pdu(Received),
}

/// Like [`read_pdu_buf`], except that a Data-Out matching `landing` has its data segment
/// read straight into the landing buffer (the WRITE hot path: one copy fewer per byte).
/// Digests are checked the same way.
pub fn read_pdu_landing<R: Read>(
    r: &mut BufReader<R>,
    f: &Framing,
    buf: &mut BytesMut,
    landing: &mut Landing<'_>,
) -> Result<Landed, IoError> {
    let mut bhs = [0u8; BHS_LEN];
    r.read_exact(&mut bhs).map_err(eof_closed)?;
    let l = lengths(&bhs, f)?;
    let n = l.data as usize;
    if bhs[0] & 0x3f == op::DATA_OUT && l.ahs == 0 && n > 0 {
        if let Ok(Bhs::DataOut(d)) = Bhs::read(&bhs) {
            let start = d.offset.wrapping_sub(landing.offset) as usize;
            let fits = d.offset >= landing.offset
                && start
                    .checked_add(n)
                    .is_some_and(|end| end <= landing.buf.len());
            if d.itt == landing.itt && d.ttt == landing.ttt && fits {
                if f.header_digest {
                    let got = read_u32_le(r)?;
                    let want = crc32c(&bhs);
                    if got != want {
                        return Err(PduError::HeaderDigest { got, want }.into());
                    }
                }
                let data = &mut landing.buf[start..start + n];
                // What is buffered already is copied; the rest comes straight from the
                // socket, past the reader's buffer.
                let k = r.buffer().len().min(n);
                data[..k].copy_from_slice(&r.buffer()[..k]);
                r.consume(k);
                r.get_mut().read_exact(&mut data[k..]).map_err(eof_closed)?;
                let mut pad = [0u8; 3];
                let pad = &mut pad[..pad4(n) - n];
                r.read_exact(pad).map_err(eof_closed)?;
                if f.data_digest {
                    let got = read_u32_le(r)?;
                    let mut c = Crc32c::new();
                    c.update(data);
                    c.update(pad);
                    let want = c.finish();
                    if got != want {
                        return Err(PduError::DataDigest { got, want }.into());
                    }
                }
                return Ok(Landed::DataOut(d, n));
            }
        }
    }
    buf.clear();
    buf.resize(l.rest(f), 0);
    r.read_exact(&mut buf[..]).map_err(eof_closed)?;
    parse(&bhs, buf.split().freeze(), f).map(Landed::Pdu)
}

fn read_u32_le<R: Read>(r: &mut R) -> Result<u32, IoError> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(eof_closed)?;
    Ok(u32::from_le_bytes(b))
}

fn parse(bhs: &[u8; BHS_LEN], rest: Bytes, f: &Framing) -> Result<Received, IoError> {
    match Pdu::decode_parts(bhs, rest, f) {
        Ok(p) => Ok(Ok(p)),
        Err(e @ PduError::UnknownOpcode(_)) => Ok(Err((e, Some(*bhs)))),
        Err(e) => Err(IoError::Pdu(e)),
    }
}

pub fn write_pdu<W: Write>(w: &mut W, pdu: &Pdu, f: &Framing) -> Result<(), IoError> {
    if !f.header_digest && !f.data_digest && pdu.ahs.is_empty() && pdu.data.len() > 4096 {
        // Large payloads go straight to the socket without a copy.
        let h = pdu.header()?;
        w.write_all(&h)?;
        w.write_all(&pdu.data)?;
        let pad = crate::pdu::pad4(pdu.data.len()) - pdu.data.len();
        w.write_all(&[0u8; 3][..pad])?;
        return Ok(());
    }
    let mut buf = BytesMut::new();
    pdu.encode(f, &mut buf)?;
    w.write_all(&buf)?;
    Ok(())
}

pub async fn read_pdu_async<R: AsyncRead + Unpin>(
    r: &mut R,
    f: &Framing,
) -> Result<Received, IoError> {
    let mut bhs = [0u8; BHS_LEN];
    r.read_exact(&mut bhs).await.map_err(eof_closed)?;
    let l = lengths(&bhs, f)?;
    let mut rest = vec![0u8; l.rest(f)];
    r.read_exact(&mut rest).await.map_err(eof_closed)?;
    parse(&bhs, Bytes::from(rest), f)
}

pub async fn write_pdu_async<W: AsyncWrite + Unpin>(
    w: &mut W,
    pdu: &Pdu,
    f: &Framing,
) -> Result<(), IoError> {
    if !f.header_digest && !f.data_digest && pdu.ahs.is_empty() && pdu.data.len() > 4096 {
        // Large payloads (Data-Out, immediate data) go to the writer without a copy.
        let h = pdu.header()?;
        w.write_all(&h).await?;
        w.write_all(&pdu.data).await?;
        let pad = crate::pdu::pad4(pdu.data.len()) - pdu.data.len();
        w.write_all(&[0u8; 3][..pad]).await?;
        return Ok(());
    }
    let mut buf = BytesMut::new();
    pdu.encode(f, &mut buf)?;
    w.write_all(&buf).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::Nop;

    fn framing(digests: bool) -> Framing {
        Framing {
            header_digest: digests,
            data_digest: digests,
            max_recv_data: 1 << 20,
        }
    }

    fn data_out(itt: u32, ttt: u32, offset: u32, data: &[u8], f: &Framing) -> Vec<u8> {
        let d = DataOut {
            final_: true,
            itt,
            ttt,
            offset,
            ..Default::default()
        };
        let mut b = BytesMut::new();
        Pdu::with_data(Bhs::DataOut(d), data.to_vec())
            .encode(f, &mut b)
            .unwrap();
        b.to_vec()
    }

    /// Reads `wire` with a reader buffer of `cap` bytes into a 64-byte landing at 1000.
    fn land(wire: &[u8], f: &Framing, cap: usize) -> (Result<Landed, IoError>, Vec<u8>) {
        let mut r = BufReader::with_capacity(cap, wire);
        let mut dest = vec![0u8; 64];
        let mut landing = Landing {
            itt: 7,
            ttt: 9,
            offset: 1000,
            buf: &mut dest,
        };
        let got = read_pdu_landing(&mut r, f, &mut BytesMut::new(), &mut landing);
        (got, dest)
    }

    #[test]
    fn a_matching_data_out_lands_in_place_with_or_without_digests() {
        for digests in [false, true] {
            let f = framing(digests);
            // 13 bytes: padded on the wire; reader buffers smaller and larger than the PDU.
            let wire = data_out(7, 9, 1010, b"thirteen byte", &f);
            for cap in [8, 50, 4096] {
                let (got, dest) = land(&wire, &f, cap);
                match got {
                    Ok(Landed::DataOut(d, 13)) => assert_eq!(d.offset, 1010),
                    _ => panic!("digests {digests}, buffer {cap}: not landed"),
                }
                assert_eq!(&dest[10..23], b"thirteen byte");
                assert!(dest[..10].iter().chain(&dest[23..]).all(|&b| b == 0));
            }
        }
    }

    #[test]
    fn anything_else_is_read_as_a_pdu() {
        let f = framing(false);
        let cases = [
            ("another task", data_out(8, 9, 1000, b"x", &f)),
            ("another transfer tag", data_out(7, 1, 1000, b"x", &f)),
            ("before the landing", data_out(7, 9, 999, b"xy", &f)),
            ("past its end", data_out(7, 9, 1060, b"12345", &f)),
            ("no data", data_out(7, 9, 1000, b"", &f)),
        ];
        for (what, wire) in cases {
            let (got, dest) = land(&wire, &f, 4096);
            assert!(matches!(got, Ok(Landed::Pdu(Ok(_)))), "{what}");
            assert!(dest.iter().all(|&b| b == 0), "{what}: nothing landed");
        }
        let mut b = BytesMut::new();
        Pdu::new(Bhs::NopOut(Nop::default()))
            .encode(&f, &mut b)
            .unwrap();
        let (got, _) = land(&b, &f, 4096);
        assert!(matches!(
            got,
            Ok(Landed::Pdu(Ok(Pdu {
                bhs: Bhs::NopOut(_),
                ..
            })))
        ));
    }

    #[test]
    fn a_landed_data_out_with_a_bad_digest_is_an_error() {
        let f = framing(true);
        let mut wire = data_out(7, 9, 1000, b"abcd", &f);
        let n = wire.len();
        wire[n - 1] ^= 1;
        let (got, _) = land(&wire, &f, 4096);
        assert!(matches!(
            got,
            Err(IoError::Pdu(PduError::DataDigest { .. }))
        ));
        let mut wire = data_out(7, 9, 1000, b"abcd", &f);
        wire[BHS_LEN] ^= 1;
        let (got, _) = land(&wire, &f, 4096);
        assert!(matches!(
            got,
            Err(IoError::Pdu(PduError::HeaderDigest { .. }))
        ));
        // Cut short: the peer closed the connection.
        let wire = data_out(7, 9, 1000, b"abcd", &f);
        let (got, _) = land(&wire[..BHS_LEN + 6], &f, 4096);
        assert!(matches!(got, Err(IoError::Closed)));
    }
}
