//! The kernel's IPMI character device (`/dev/ipmi0`, ipmi_devintf): one request/response to
//! the local BMC through the IPMICTL_SEND_COMMAND and IPMICTL_RECEIVE_MSG_TRUNC ioctls.
//! Built with the `device` feature (the agent's; the conductor talks to BMCs over LAN only).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::codec::commands::{self, LanParam};
use crate::codec::message::Request;
use crate::lan::{completed, LanConfigSource, LanError};

/// `IPMI_SYSTEM_INTERFACE_ADDR_TYPE` and `IPMI_BMC_CHANNEL` from linux/ipmi.h.
const SYSTEM_INTERFACE_ADDR_TYPE: i32 = 0x0c;
const BMC_CHANNEL: i16 = 0x0f;
/// `IPMI_RESPONSE_RECV_TYPE`.
const RESPONSE_RECV_TYPE: i32 = 1;
/// `IPMI_MAX_MSG_LENGTH` and `IPMI_MAX_ADDR_SIZE` (+ the two leading fields of ipmi_addr).
const MAX_MSG_LENGTH: usize = 272;
const MAX_ADDR_LENGTH: usize = 40;
/// How long one BMC answer may take; KCS answers in milliseconds when it works at all.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

#[repr(C)]
struct IpmiSystemInterfaceAddr {
    addr_type: i32,
    channel: i16,
    lun: u8,
}

#[repr(C)]
struct IpmiMsg {
    netfn: u8,
    cmd: u8,
    data_len: u16,
    data: *mut u8,
}

#[repr(C)]
struct IpmiReq {
    addr: *mut u8,
    addr_len: u32,
    msgid: libc::c_long,
    msg: IpmiMsg,
}

#[repr(C)]
struct IpmiRecv {
    recv_type: i32,
    addr: *mut u8,
    addr_len: u32,
    msgid: libc::c_long,
    msg: IpmiMsg,
}

const IPMICTL_SEND_COMMAND: libc::c_ulong =
    nix::request_code_read!(b'i', 13, std::mem::size_of::<IpmiReq>()) as libc::c_ulong;
const IPMICTL_RECEIVE_MSG_TRUNC: libc::c_ulong =
    nix::request_code_readwrite!(b'i', 11, std::mem::size_of::<IpmiRecv>()) as libc::c_ulong;

pub struct IpmiDevice {
    file: File,
    next_msgid: libc::c_long,
}

impl IpmiDevice {
    pub fn open(path: &Path) -> Result<IpmiDevice, LanError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| LanError::Device {
                what: format!("opening {}", path.display()),
                source,
            })?;
        Ok(IpmiDevice {
            file,
            next_msgid: 1,
        })
    }

    /// Sends one request to the BMC and returns its response data (completion code first).
    pub fn request(&mut self, req: &Request) -> Result<Vec<u8>, LanError> {
        let msgid = self.next_msgid;
        self.next_msgid += 1;
        send(&self.file, msgid, req.netfn, req.cmd, &req.data).map_err(|source| {
            LanError::Device {
                what: "IPMICTL_SEND_COMMAND".into(),
                source,
            }
        })?;
        let deadline = Instant::now() + RESPONSE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !readable(&self.file, left) {
                return Err(LanError::Timeout(RESPONSE_TIMEOUT));
            }
            let mut buf = [0u8; MAX_MSG_LENGTH];
            let (recv_type, got_id, len) =
                receive(&self.file, &mut buf).map_err(|source| LanError::Device {
                    what: "IPMICTL_RECEIVE_MSG_TRUNC".into(),
                    source,
                })?;
            // Stray events or answers to earlier, timed-out requests are dropped.
            if recv_type == RESPONSE_RECV_TYPE && got_id == msgid {
                return Ok(buf[..len.min(MAX_MSG_LENGTH)].to_vec());
            }
        }
    }
}

impl LanConfigSource for IpmiDevice {
    fn get_lan_config(
        &mut self,
        channel: u8,
        param: LanParam,
        set: u8,
    ) -> Result<Vec<u8>, LanError> {
        let resp = self.request(&commands::get_lan_config_set(channel, param, set))?;
        Ok(completed(&resp)?.to_vec())
    }
}

fn send(file: &File, msgid: libc::c_long, netfn: u8, cmd: u8, data: &[u8]) -> std::io::Result<()> {
    let mut addr = IpmiSystemInterfaceAddr {
        addr_type: SYSTEM_INTERFACE_ADDR_TYPE,
        channel: BMC_CHANNEL,
        lun: 0,
    };
    let mut body = data.to_vec();
    let req = IpmiReq {
        addr: (&mut addr as *mut IpmiSystemInterfaceAddr).cast(),
        addr_len: std::mem::size_of::<IpmiSystemInterfaceAddr>() as u32,
        msgid,
        msg: IpmiMsg {
            netfn,
            cmd,
            data_len: body.len() as u16,
            data: body.as_mut_ptr(),
        },
    };
    // SAFETY: `req` and the address and data buffers it points to live until the ioctl
    // returns; the kernel copies them in (copy_from_user) and keeps no pointer.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), IPMICTL_SEND_COMMAND as _, &req) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one message into `buf`: (receive type, message id, data length).
fn receive(
    file: &File,
    buf: &mut [u8; MAX_MSG_LENGTH],
) -> std::io::Result<(i32, libc::c_long, usize)> {
    let mut addr = [0u8; MAX_ADDR_LENGTH];
    let mut recv = IpmiRecv {
        recv_type: 0,
        addr: addr.as_mut_ptr(),
        addr_len: addr.len() as u32,
        msgid: 0,
        msg: IpmiMsg {
            netfn: 0,
            cmd: 0,
            data_len: buf.len() as u16,
            data: buf.as_mut_ptr(),
        },
    };
    // SAFETY: `recv` points at `addr` and `buf`, whose lengths it states; the kernel writes
    // at most those many bytes (the _TRUNC variant truncates longer messages) and the
    // buffers outlive the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), IPMICTL_RECEIVE_MSG_TRUNC as _, &mut recv) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        // EMSGSIZE: truncated, but the data we got is still the response.
        if err.raw_os_error() != Some(libc::EMSGSIZE) {
            return Err(err);
        }
    }
    Ok((recv.recv_type, recv.msgid, usize::from(recv.msg.data_len)))
}

/// Waits until the device has a message or `timeout` passes.
fn readable(file: &File, timeout: Duration) -> bool {
    let mut fds = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, count 1; poll only writes its `revents`.
    let rc = unsafe { libc::poll(&mut fds, 1, ms) };
    rc > 0 && fds.revents & libc::POLLIN != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_linux_ipmi_h() {
        // Values the C headers give on x86_64 (struct ipmi_req/ipmi_recv are 40/48 bytes).
        assert_eq!(std::mem::size_of::<IpmiReq>(), 40);
        assert_eq!(std::mem::size_of::<IpmiRecv>(), 48);
        assert_eq!(IPMICTL_SEND_COMMAND, 0x8028_690d);
        assert_eq!(IPMICTL_RECEIVE_MSG_TRUNC, 0xc030_690b);
    }

    #[test]
    fn opening_a_missing_device_is_an_error() {
        let err = IpmiDevice::open(Path::new("/nonexistent/ipmi0"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/ipmi0"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
