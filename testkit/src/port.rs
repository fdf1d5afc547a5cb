//! Free loopback ports for programs that must be told a port number.
//!
//! A port picked by binding port 0 and closing the socket is only free at that moment: on a
//! shared machine another process can take it before the program under test binds it. Code
//! that can take a listener should be handed one bound to port 0 instead (no race). Where a
//! number must be passed to another process (QEMU `hostfwd`, ipmi_sim, tgtd, postgres),
//! start it through [`with_free_port`], which picks a new port when the start fails.

use std::net::{TcpListener, UdpSocket};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to 0, then released).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free TCP port on loopback")
}

/// A UDP port on 127.0.0.1 that was free a moment ago (bound to 0, then released).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("no free UDP port on loopback")
}

/// How many ports [`with_free_port`] tries before it gives up.
pub const PORT_ATTEMPTS: usize = 3;

/// Runs `start` with a fresh free port (from `pick`, e.g. [`free_tcp_port`]) until it
/// succeeds, at most [`PORT_ATTEMPTS`] times: a start that fails because another process
/// took the port in between gets another port. Panics with the last error.
pub fn with_free_port<T, E: std::fmt::Debug>(
    what: &str,
    pick: fn() -> u16,
    mut start: impl FnMut(u16) -> Result<T, E>,
) -> T {
    let mut errors = Vec::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = pick();
        match start(port) {
            Ok(v) => return v,
            Err(e) => errors.push((port, e)),
        }
    }
    panic!("{what} did not start on {PORT_ATTEMPTS} free ports: {errors:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_can_be_bound() {
        let tcp = free_tcp_port();
        assert_ne!(tcp, 0);
        TcpListener::bind(("127.0.0.1", tcp)).expect("the TCP port is free");
        let udp = free_udp_port();
        assert_ne!(udp, 0);
        UdpSocket::bind(("127.0.0.1", udp)).expect("the UDP port is free");
    }

    #[test]
    fn a_start_that_fails_gets_another_port() {
        // Hold the first port so its start fails, as if another process had taken it.
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut tried = vec![];
        let mut first = true;
        let bound = with_free_port(
            "a listener",
            free_tcp_port,
            |port| -> std::io::Result<TcpListener> {
                let port = if std::mem::take(&mut first) {
                    taken.local_addr()?.port()
                } else {
                    port
                };
                tried.push(port);
                TcpListener::bind(("127.0.0.1", port))
            },
        );
        assert_eq!(tried.len(), 2, "{tried:?}");
        assert_eq!(bound.local_addr().unwrap().port(), tried[1]);
    }

    #[test]
    #[should_panic(expected = "did not start on 3 free ports")]
    fn gives_up_after_the_last_attempt() {
        with_free_port("nothing", free_tcp_port, |_| Err::<(), _>("refused"));
    }
}
