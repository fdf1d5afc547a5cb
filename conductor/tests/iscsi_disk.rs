//! The image pipeline writing to a remote LUN: our target serves a sparse file on
//! loopback, `IscsiDisk` (our initiator) is the pipeline's sink. Checks the bytes on the
//! file, zero skipping, unaligned writes, the config drive over iSCSI, and the wipe after
//! a checksum mismatch.

use std::io::Cursor;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ferrite_conductor::drivers::iscsi_disk::IscsiDisk;
use ferrite_image::checksum::{Algo, Expected, Hasher};
use ferrite_image::disk::{configdrive, gpt};
use ferrite_image::{write_image, BlockSink, ImageError, Input, Progress};
use ferrite_iscsi::{LoginOptions, Target, TargetConfig};

const IQN: &str = "iqn.2026-01.org.ferrite:remote-disk";
const DISK: u64 = 128 << 20;

struct Served {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    async fn start(backing: &Path) -> Served {
        let target = Target::new(TargetConfig::new(IQN, backing)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = target
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Served {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
    }
}

fn sha256(data: &[u8]) -> Expected {
    let mut h = Hasher::new(Algo::Sha256);
    h.update(data);
    Expected {
        algo: Algo::Sha256,
        hex: h.finish_hex(),
    }
}

/// An MBR disk image: partition 1 at 1 MiB, patterned data, a 2 MiB zero run, and a
/// length that is not a multiple of the block size.
fn image() -> Vec<u8> {
    let mut img: Vec<u8> = (0..(6 << 20) + 1000)
        .map(|i: usize| (i % 251) as u8 | 1)
        .collect();
    img[..512].fill(0);
    let e = &mut img[446..462];
    e[4] = 0x83;
    e[8..12].copy_from_slice(&2048u32.to_le_bytes());
    e[12..16].copy_from_slice(&8192u32.to_le_bytes());
    img[440..444].copy_from_slice(&0x1234_5678u32.to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xAA;
    img[(2 << 20)..(4 << 20)].fill(0);
    img
}

fn input(img: &[u8]) -> Input<Cursor<Vec<u8>>> {
    Input {
        reader: Cursor::new(img.to_vec()),
        len: Some(img.len() as u64),
        ranges: None,
        declared_format: Some("raw".into()),
    }
}

fn opts() -> LoginOptions {
    LoginOptions::new("iqn.2026-01.org.ferrite:test-initiator", IQN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_writes_image_and_config_drive_over_iscsi() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("lun.img");
    // Old bytes everywhere: a zero-first LUN must read back zeroes where the image has them.
    std::fs::write(&backing, vec![0x5au8; DISK as usize]).unwrap();
    let served = Served::start(&backing).await;
    let mut disk = IscsiDisk::connect(served.addr, &opts(), true)
        .await
        .unwrap();
    assert!(
        disk.reads_zero(),
        "our target reports LBPRZ; the LUN was unmapped"
    );
    assert_eq!(disk.size(), DISK);
    let img = image();
    let expected = sha256(&img);
    let (disk, outcome, cd_msg) = tokio::task::spawn_blocking(move || {
        let progress = Progress::new();
        let o = write_image(input(&img), Some(&expected), &mut disk, &progress).unwrap();
        // The config drive through the same LUN: a new MBR partition at the end.
        let cd = vec![0xcdu8; 3 << 20];
        let msg = configdrive::write_data(&disk, DISK, 512, &cd, "lun").unwrap();
        // Unaligned positional I/O goes through read-modify-write.
        disk.write_all_at(b"odd", 5_000_001).unwrap();
        let mut back = [0u8; 7];
        disk.read_exact_at(&mut back, 4_999_999).unwrap();
        assert_eq!(&back[2..5], b"odd");
        let table = gpt::read_table(&disk, 512).unwrap();
        assert!(matches!(table, gpt::Table::Mbr { ref partitions, .. } if partitions.len() == 2));
        disk.logout().unwrap();
        (img, o, msg)
    })
    .await
    .unwrap();
    let img = disk;
    served.stop().await;
    assert_eq!(outcome.disk_bytes, img.len() as u64);
    assert!(
        outcome.zero_bytes_skipped >= 2 << 20,
        "the zero run was not sent: {outcome:?}"
    );
    assert!(cd_msg.contains("new MBR partition 2"), "{cd_msg}");
    let f = std::fs::File::open(&backing).unwrap();
    let mut got = vec![0u8; img.len()];
    f.read_exact_at(&mut got, 0).unwrap();
    let mut want = img.clone();
    want[5_000_001..5_000_004].copy_from_slice(b"odd");
    // The MBR now also lists the config drive partition.
    assert_eq!(&got[512..], &want[512..]);
    assert_eq!(&got[..446], &want[..446]);
    let mut rest = vec![0u8; (DISK - (64 << 20) - img.len() as u64) as usize];
    f.read_exact_at(&mut rest, img.len() as u64).unwrap();
    assert!(rest.iter().all(|&b| b == 0), "old bytes past the image");
    let mut cd = vec![0u8; 3 << 20];
    f.read_exact_at(&mut cd, DISK - (64 << 20)).unwrap();
    assert!(cd.iter().all(|&b| b == 0xcd));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_mismatch_wipes_the_remote_disk() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("lun.img");
    std::fs::write(&backing, vec![0x5au8; 16 << 20]).unwrap();
    let served = Served::start(&backing).await;
    // Not zeroed first: every byte goes over the wire and the old bytes stay elsewhere.
    let mut disk = IscsiDisk::connect(served.addr, &opts(), false)
        .await
        .unwrap();
    assert!(!disk.reads_zero());
    let img = image();
    let mut wrong = sha256(&img);
    wrong.hex = "0".repeat(64);
    let err = tokio::task::spawn_blocking(move || {
        let e = write_image(input(&img), Some(&wrong), &mut disk, &Progress::new()).unwrap_err();
        disk.logout().unwrap();
        e
    })
    .await
    .unwrap();
    served.stop().await;
    assert!(matches!(err, ImageError::Checksum(_)), "{err:?}");
    let file = std::fs::read(&backing).unwrap();
    assert!(file[..1 << 20].iter().all(|&b| b == 0), "head wiped");
    assert!(file[(15 << 20)..].iter().all(|&b| b == 0), "tail wiped");
    assert!(file[(8 << 20)..(15 << 20)].iter().all(|&b| b == 0x5a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_fails_the_write_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("lun.img");
    std::fs::write(&backing, vec![0u8; 16 << 20]).unwrap();
    let served = Served::start(&backing).await;
    let mut disk = IscsiDisk::connect(served.addr, &opts(), false)
        .await
        .unwrap();
    served.stop().await;
    let r = tokio::task::spawn_blocking(move || {
        let data = vec![1u8; 8 << 20];
        let w = BlockSink::write_at(&mut disk, 0, &data).and_then(|_| disk.flush());
        (w, BlockSink::write_at(&mut disk, 0, &[1; 512]))
    })
    .await
    .unwrap();
    let e = r.0.unwrap_err();
    // The original cause, not a generic "session ended".
    let msg = e.to_string();
    assert!(
        msg.contains("iSCSI I/O failed: the iSCSI session failed")
            && (msg.contains("connection closed by the peer") || msg.contains("socket I/O failed")),
        "{msg}"
    );
    assert!(r.1.is_err(), "later writes fail too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_writes_in_flight_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("lun.img");
    std::fs::File::create(&backing)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let served = Served::start(&backing).await;
    let mut disk = IscsiDisk::connect(served.addr, &opts(), false)
        .await
        .unwrap();
    let want = tokio::task::spawn_blocking(move || {
        // 40 MiB in pieces that do not line up with the 4 MiB WRITEs: ten and more are
        // queued and sent with several in flight.
        let mut want: Vec<u8> = (0..40 << 20).map(|i: usize| (i / 4093) as u8).collect();
        for (n, piece) in want.chunks((1 << 20) + 3 * 512).enumerate() {
            let at = (n * ((1 << 20) + 3 * 512)) as u64;
            BlockSink::write_at(&mut disk, at, piece).unwrap();
        }
        // Rewrite the head while later writes may still be in flight (the pipeline writes
        // its held-back first MiB last): the newer bytes must win.
        BlockSink::write_at(&mut disk, 0, &[0xa5; 1 << 20]).unwrap();
        want[..1 << 20].fill(0xa5);
        // A zero run and an unaligned write after writes in flight.
        BlockSink::write_zeroes(&mut disk, 8 << 20, 5 << 20).unwrap();
        want[(8 << 20)..(13 << 20)].fill(0);
        disk.write_all_at(b"tail", (39 << 20) + 7).unwrap();
        want[(39 << 20) + 7..(39 << 20) + 11].copy_from_slice(b"tail");
        disk.flush().unwrap();
        let mut back = vec![0u8; want.len()];
        disk.read_exact_at(&mut back, 0).unwrap();
        assert!(back == want, "the LUN reads back what was written");
        let peak = disk.peak_in_flight();
        assert!(
            (2..=ferrite_conductor::drivers::iscsi_disk::IN_FLIGHT).contains(&peak),
            "{peak} WRITEs were outstanding together"
        );
        disk.logout().unwrap();
        want
    })
    .await
    .unwrap();
    served.stop().await;
    let file = std::fs::read(&backing).unwrap();
    assert!(
        file[..want.len()] == want[..],
        "the backing file holds the writes"
    );
    assert!(file[want.len()..].iter().all(|&b| b == 0));
}
