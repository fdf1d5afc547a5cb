//! Framing at the socket edge: reads and writes whole PDUs over blocking or tokio streams.

use std::io::{Read, Write};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::pdu::{lengths, Framing, Pdu, PduError, BHS_LEN};

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
