//! The I/O edge of LLDP collection: an AF_PACKET socket per interface, bound to the LLDP
//! ethertype, with promiscuous reception for as long as the socket lives (a
//! `PACKET_MR_PROMISC` membership, which the kernel drops on close, where IPA sets the
//! interface's IFF_PROMISC flag and clears it afterwards).

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::lldp::ETHERTYPE;

/// A non-blocking raw socket receiving the LLDP frames of one interface.
#[derive(Debug)]
pub(crate) struct LldpSocket {
    fd: OwnedFd,
}

impl LldpSocket {
    pub(crate) fn open(interface: &str) -> io::Result<LldpSocket> {
        let index = nix::net::if_::if_nametoindex(interface).map_err(io::Error::from)?;
        let index = i32::try_from(index).map_err(|_| io::Error::other("interface index"))?;
        let proto = ETHERTYPE.to_be();
        // SAFETY: socket(2) takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns, so OwnedFd may close it.
        let fd = unsafe {
            let raw = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(proto),
            );
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(raw)
        };
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = index;
        // SAFETY: `addr` is a live sockaddr_ll and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: packet_mreq is plain data; all-zero is a valid value.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = index;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        // SAFETY: `mreq` is a live packet_mreq and the length passed is its size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                (&raw const mreq).cast::<libc::c_void>(),
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(LldpSocket { fd })
    }

    /// Waits up to `timeout` for any of `sockets` to have a frame; the indexes of those
    /// that have one (empty on timeout).
    pub(crate) fn wait<'a>(
        sockets: impl Iterator<Item = &'a LldpSocket>,
        timeout: Duration,
    ) -> io::Result<Vec<usize>> {
        let mut fds: Vec<PollFd> = sockets
            .map(|s| PollFd::new(s.fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let ms = u16::try_from(timeout.as_millis().max(1)).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(fds
            .iter()
            .enumerate()
            .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(i, _)| i)
            .collect())
    }

    /// One frame into `buf` (truncated to its size): its length, or `None` when there is
    /// none yet.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match nix::sys::socket::recv(
            self.fd.as_raw_fd(),
            buf,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(n) => Ok(Some(n)),
            Err(nix::errno::Errno::EAGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
