//! Finishing data-out commands against the store: WRITE, VERIFY, WRITE SAME, UNMAP,
//! COMPARE AND WRITE. Every offset is range-checked before any byte is written.

use super::sense::Sense;
use super::{pages, Lun};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOutOp {
    Write {
        lba: u64,
        fua: bool,
    },
    /// VERIFY with BYTCHK: compare the data (or one block repeated, `same`) with the medium.
    Compare {
        lba: u64,
        blocks: u32,
        same: bool,
    },
    WriteSame {
        lba: u64,
        blocks: u64,
        unmap: bool,
    },
    Unmap,
    CompareAndWrite {
        lba: u64,
        blocks: u32,
    },
}

fn write_err(e: super::BackingError) -> Sense {
    tracing::warn!(error = %e, "LUN write failed");
    Sense::WRITE_ERROR
}

pub fn finish(lun: &Lun, op: &DataOutOp, data: &[u8]) -> Result<(), Sense> {
    let bs = lun.id.block_size as u64;
    match *op {
        DataOutOp::Write { lba, fua } => {
            lun.range(lba, data.len() as u64 / bs)?;
            lun.store.write_at(data, lba * bs).map_err(write_err)?;
            if fua {
                lun.sync()?;
            }
            Ok(())
        }
        DataOutOp::Compare { lba, blocks, same } => {
            lun.range(lba, blocks as u64)?;
            let mut cur = vec![0u8; bs as usize];
            for i in 0..blocks as u64 {
                lun.read(lba + i, 0, &mut cur)?;
                let want = if same {
                    &data[..bs as usize]
                } else {
                    &data[(i * bs) as usize..((i + 1) * bs) as usize]
                };
                if let Some(pos) = cur.iter().zip(want).position(|(a, b)| a != b) {
                    return Err(Sense::MISCOMPARE_VERIFY.with_info((i * bs) as u32 + pos as u32));
                }
            }
            Ok(())
        }
        DataOutOp::WriteSame { lba, blocks, unmap } => {
            lun.range(lba, blocks)?;
            // With UNMAP the blocks are deallocated whatever the pattern (SBC-3 lets the
            // device server choose); LBPRZ then makes them read back as zeros.
            if unmap {
                return lun.store.unmap(lba * bs, blocks * bs).map_err(write_err);
            }
            if data.iter().all(|&b| b == 0) {
                return lun
                    .store
                    .write_zeros(lba * bs, blocks * bs)
                    .map_err(write_err);
            }
            let pattern: Vec<u8> = if data.is_empty() {
                vec![0; bs as usize]
            } else {
                data.to_vec()
            };
            let per = 2048u64.min(blocks);
            let chunk: Vec<u8> = pattern.repeat(per as usize);
            let mut done = 0;
            while done < blocks {
                let n = per.min(blocks - done);
                lun.store
                    .write_at(&chunk[..(n * bs) as usize], (lba + done) * bs)
                    .map_err(write_err)?;
                done += n;
            }
            Ok(())
        }
        DataOutOp::Unmap => unmap(lun, data),
        DataOutOp::CompareAndWrite { lba, blocks } => {
            let len = (blocks as u64 * bs) as usize;
            let _guard = lun.caw.lock().unwrap_or_else(|p| p.into_inner());
            let mut cur = vec![0u8; len];
            lun.read(lba, 0, &mut cur)?;
            if let Some(pos) = cur.iter().zip(&data[..len]).position(|(a, b)| a != b) {
                return Err(Sense::MISCOMPARE_VERIFY.with_info(pos as u32));
            }
            lun.store
                .write_at(&data[len..2 * len], lba * bs)
                .map_err(write_err)
        }
    }
}

/// UNMAP parameter list (SBC-3 §5.28.2): 8-byte header then 16-byte block descriptors.
fn unmap(lun: &Lun, p: &[u8]) -> Result<(), Sense> {
    if p.len() < 8 {
        return if p.is_empty() {
            Ok(())
        } else {
            Err(Sense::PARAM_LIST_LENGTH)
        };
    }
    let data_len = u16::from_be_bytes([p[0], p[1]]) as usize;
    let desc_len = u16::from_be_bytes([p[2], p[3]]) as usize;
    if data_len + 2 > p.len() || desc_len + 8 > p.len() || !desc_len.is_multiple_of(16) {
        return Err(Sense::PARAM_LIST_LENGTH);
    }
    let n = desc_len / 16;
    if n > pages::MAX_UNMAP_DESCRIPTORS as usize {
        return Err(Sense::INVALID_FIELD_IN_PARAM);
    }
    let descs: Vec<(u64, u64)> = (0..n)
        .map(|i| {
            let d = &p[8 + 16 * i..24 + 16 * i];
            (
                u64::from_be_bytes(d[0..8].try_into().expect("8 bytes")),
                u32::from_be_bytes(d[8..12].try_into().expect("4 bytes")) as u64,
            )
        })
        .collect();
    // Validate every descriptor before touching the store.
    for &(lba, count) in &descs {
        if count > pages::MAX_UNMAP_BLOCKS as u64 {
            return Err(Sense::INVALID_FIELD_IN_PARAM);
        }
        match lba.checked_add(count) {
            Some(end) if end <= lun.id.blocks => {}
            _ => return Err(Sense::LBA_OUT_OF_RANGE),
        }
    }
    let bs = lun.id.block_size as u64;
    for (lba, count) in descs {
        lun.store.unmap(lba * bs, count * bs).map_err(write_err)?;
    }
    Ok(())
}
