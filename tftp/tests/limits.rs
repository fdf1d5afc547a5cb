//! The server's resource limits over real UDP on loopback: transfers at once are capped
//! (extra requests get an ERROR) and one transfer cannot outlast `max_transfer_time`,
//! however promptly or slowly its client acknowledges.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrite_tftp::packet::Packet;
use ferrite_tftp::ServerConfig;
use tokio::net::UdpSocket;

mod common;

use common::{recv_within, Running};

/// A server with a 4 KiB and a 16 MiB file, configured by `tweak`.
async fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.bin"), vec![7u8; 4096]).unwrap();
    // 16 MiB: 2 million blocks of 8 bytes, far more than a second's worth.
    std::fs::write(dir.path().join("big.bin"), vec![9u8; 16 << 20]).unwrap();
    let root = dir.path().to_path_buf();
    Running::start(dir, &root, tweak).await
}

fn rrq(file: &str) -> Vec<u8> {
    Packet::Rrq {
        filename: file.into(),
        mode: "octet".into(),
        options: vec![("blksize".into(), "8".into())],
    }
    .encode()
}

async fn recv(sock: &UdpSocket) -> (Packet, SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) = recv_within(sock, &mut buf, Duration::from_secs(10)).await;
    (Packet::decode(&buf[..n]).unwrap(), from)
}

/// Sends a read request from a new socket; returns the socket and the first reply.
async fn request(server: SocketAddr, file: &str) -> (UdpSocket, Packet, SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&rrq(file), server).await.unwrap();
    let (p, from) = recv(&sock).await;
    (sock, p, from)
}

/// Requests `file` until a transfer starts (polled with a deadline: the server reaps a
/// finished transfer asynchronously).
async fn until_accepted(server: SocketAddr, file: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, p, _) = request(server, file).await;
        if matches!(p, Packet::Oack { .. }) {
            return;
        }
        assert!(Instant::now() < deadline, "no slot freed: {p:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_transfer_cap_get_an_error_until_a_slot_frees() {
    let s = start(|c| {
        c.max_transfers = 3;
        // Held transfers (no ACK to their OACK) stay held for the whole test.
        c.timeout = Duration::from_secs(30);
    })
    .await;
    let mut held = vec![];
    for _ in 0..3 {
        let (sock, p, tid) = request(s.addr, "small.bin").await;
        assert!(matches!(p, Packet::Oack { .. }), "{p:?}");
        held.push((sock, tid));
    }
    let (_, p, from) = request(s.addr, "small.bin").await;
    assert_eq!(
        from, s.addr,
        "refused from the server's port, not a transfer's"
    );
    match p {
        Packet::Error { code, message } => {
            assert_eq!(code, 0);
            assert!(message.contains("too many transfers"), "{message}");
        }
        other => panic!("want ERROR, got {other:?}"),
    }
    // One client gives up (an ERROR to its transfer): its slot frees.
    let (sock, tid) = held.pop().unwrap();
    let abort = Packet::Error {
        code: 0,
        message: "bye".into(),
    };
    sock.send_to(&abort.encode(), tid).await.unwrap();
    until_accepted(s.addr, "small.bin").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_is_cut_off_at_max_transfer_time_and_frees_its_slot() {
    let limit = Duration::from_secs(1);
    let s = start(|c| {
        c.max_transfers = 1;
        c.max_transfer_time = limit;
    })
    .await;
    let started = Instant::now();
    let (sock, mut p, tid) = request(s.addr, "big.bin").await;
    // A client that acknowledges every block at once: it never times out, and on its
    // own would hold the only slot for the whole 16 MiB at 8 bytes a block.
    let mut blocks = 0u64;
    let message = loop {
        let block = match p {
            Packet::Oack { .. } => 0,
            Packet::Data { block, .. } => {
                blocks += 1;
                block
            }
            Packet::Error { message, .. } => break message,
            other => panic!("unexpected {other:?}"),
        };
        sock.send_to(&Packet::Ack { block }.encode(), tid)
            .await
            .unwrap();
        p = recv(&sock).await.0;
    };
    let took = started.elapsed();
    eprintln!("cut off after {took:?} and {blocks} blocks: {message:?}");
    assert!(
        message.contains("transfer took longer than 1 s"),
        "{message}"
    );
    assert!(took >= limit, "cut off early, after {took:?}");
    assert!(took < limit * 5, "cut off late, after {took:?}");
    assert!(
        blocks < (16 << 20) / 8,
        "the transfer finished: nothing was cut"
    );
    // The slot is free again for the next client.
    until_accepted(s.addr, "small.bin").await;
    s.stop().await;
}
