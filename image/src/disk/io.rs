//! `DiskIo`: positional reads and writes on a whole disk, so the partition-table and
//! config-drive code serves a local `File` and a remote iSCSI LUN alike.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A disk read and written at byte offsets (`read_exact_at`, `write_all_at` from
/// [`FileExt`]), plus a flush to stable storage.
pub trait DiskIo: FileExt + Sync {
    /// Wait until everything written is on stable storage.
    fn sync(&self) -> io::Result<()>;
}

impl DiskIo for File {
    fn sync(&self) -> io::Result<()> {
        self.sync_all()
    }
}
