//! Block device ioctls the agent needs (`BLKZEROOUT`, `BLKDISCARD`, `BLKRRPART`,
//! `BLKSSZGET`, `BLKFLSBUF`), each a small safe wrapper.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;

nix::ioctl_write_ptr_bad!(
    ioctl_blkzeroout,
    nix::request_code_none!(0x12, 127),
    [u64; 2]
);
nix::ioctl_write_ptr_bad!(
    ioctl_blkdiscard,
    nix::request_code_none!(0x12, 119),
    [u64; 2]
);
nix::ioctl_none_bad!(ioctl_blkrrpart, nix::request_code_none!(0x12, 95));
nix::ioctl_none_bad!(ioctl_blkflsbuf, nix::request_code_none!(0x12, 97));
nix::ioctl_read_bad!(
    ioctl_blksszget,
    nix::request_code_none!(0x12, 104),
    libc::c_int
);

/// True when `file` is a block device.
pub fn is_block_device(file: &File) -> io::Result<bool> {
    Ok(file.metadata()?.file_type().is_block_device())
}

/// Zero `offset..offset+len` with the kernel's write-zeroes path (offloaded where the
/// device supports it). Both must be multiples of 512.
pub fn zero_out(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let range = [offset, len];
    // SAFETY: BLKZEROOUT reads two u64s from the pointer, which points at `range`, alive
    // for the call; the fd is open for the whole call.
    unsafe { ioctl_blkzeroout(file.as_raw_fd(), &range) }
        .map(|_| ())
        .map_err(io::Error::from)
}

/// Discard `offset..offset+len` (no guarantee of zeroes afterwards).
pub fn discard(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let range = [offset, len];
    // SAFETY: as for BLKZEROOUT: the kernel reads two u64s from `range`.
    unsafe { ioctl_blkdiscard(file.as_raw_fd(), &range) }
        .map(|_| ())
        .map_err(io::Error::from)
}

/// Ask the kernel to re-read the partition table.
pub fn reread_partitions(file: &File) -> io::Result<()> {
    // SAFETY: BLKRRPART takes no argument; the fd stays open during the call.
    unsafe { ioctl_blkrrpart(file.as_raw_fd()) }
        .map(|_| ())
        .map_err(io::Error::from)
}

/// Logical sector size of a block device.
pub fn logical_sector_size(file: &File) -> io::Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int into `size`, which outlives the call.
    unsafe { ioctl_blksszget(file.as_raw_fd(), &mut size) }.map_err(io::Error::from)?;
    Ok(size.max(512) as u32)
}

/// Flush and drop the kernel's buffer cache of a block device (after the device changed
/// its contents behind the cache, e.g. an NVMe format).
pub fn flush_buffers(file: &File) -> io::Result<()> {
    // SAFETY: BLKFLSBUF takes no argument; the fd stays open during the call.
    unsafe { ioctl_blkflsbuf(file.as_raw_fd()) }
        .map(|_| ())
        .map_err(io::Error::from)
}
