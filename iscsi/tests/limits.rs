//! The target's connection limits over real TCP on loopback: a cap on connections, a
//! login deadline (also for a client trickling a partial PDU) and an idle timeout for
//! logged-in sessions.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{start, wait_until, INITIATOR, IQN};
use ferrite_iscsi::{Initiator, LoginOptions};

fn opts() -> LoginOptions {
    LoginOptions::new(INITIATOR, IQN)
}

/// Blocks until the target closes `s` (EOF or reset), within `limit`; returns when.
fn closed_by_target(s: &mut TcpStream, limit: Duration) -> Instant {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Instant::now(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Instant::now(),
            Err(e) => panic!("the target did not close the connection within {limit:?}: {e}"),
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once() {
    let t = start(1 << 20, |c| {
        c.max_connections = 2;
        c.login_timeout = Duration::from_secs(60);
    });
    let held = [connect(t.addr), connect(t.addr)];
    wait_until("2 connections served", Duration::from_secs(10), || {
        (t.target.connections() == 2).then_some(())
    });
    let started = Instant::now();
    let mut third = connect(t.addr);
    let closed = closed_by_target(&mut third, Duration::from_secs(10));
    eprintln!(
        "the third connection was closed after {:?}",
        closed - started
    );
    assert!(closed - started < Duration::from_secs(5));
    assert_eq!(t.target.connections(), 2);
    // A freed slot takes a real login.
    drop(held);
    wait_until("the held connections gone", Duration::from_secs(10), || {
        (t.target.connections() == 0).then_some(())
    });
    let mut s = Initiator::connect(t.addr, &opts()).await.unwrap();
    s.test_unit_ready().await.unwrap();
    s.logout().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_does_not_log_in_in_time_is_closed() {
    let limit = Duration::from_secs(1);
    let t = start(1 << 20, |c| c.login_timeout = limit);
    // Logged in before the deadline: untouched by it.
    let mut session = Initiator::connect(t.addr, &opts()).await.unwrap();
    let started = Instant::now();
    let mut silent = connect(t.addr);
    // 20 of a login PDU's 48 header bytes, then nothing: a read timeout per read would
    // not catch a client that trickles, the deadline does.
    let mut trickler = connect(t.addr);
    trickler.write_all(&[0x43; 20]).unwrap();
    let (silent_at, trickler_at) = tokio::task::spawn_blocking(move || {
        let a = closed_by_target(&mut silent, Duration::from_secs(10));
        let b = closed_by_target(&mut trickler, Duration::from_secs(10));
        (a, b)
    })
    .await
    .unwrap();
    for (what, at) in [("silent", silent_at), ("trickling", trickler_at)] {
        let after = at - started;
        eprintln!("the {what} connection was closed after {after:?}");
        assert!(after >= limit, "{what}: closed early, after {after:?}");
        assert!(after < limit * 5, "{what}: closed late, after {after:?}");
    }
    assert!(started.elapsed() > limit);
    session.test_unit_ready().await.unwrap();
    session.logout().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_logged_in_session_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    let t = start(1 << 20, |c| c.idle_timeout = Some(idle));
    let mut s = Initiator::connect(t.addr, &opts()).await.unwrap();
    s.test_unit_ready().await.unwrap();
    let last_pdu = Instant::now();
    let closed = wait_until("the idle session closed", Duration::from_secs(10), || {
        (t.target.connections() == 0).then(Instant::now)
    });
    let after = closed - last_pdu;
    eprintln!("the idle session was closed after {after:?}");
    // The target's read began just before our last answer arrived.
    assert!(
        after + Duration::from_millis(100) >= idle,
        "closed early, after {after:?}"
    );
    assert!(after < idle * 5, "closed late, after {after:?}");
    assert!(s.test_unit_ready().await.is_err(), "the session is gone");
}
