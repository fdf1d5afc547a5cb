//! NVMe admin commands for erasing a namespace, as pure encoding/decoding (byte offsets
//! from the NVMe Base Specification 2.0): Identify Controller and Namespace, Format NVM
//! keeping the current LBA format, Sanitize, and the Sanitize Status log page. The
//! kernel passthrough ioctl that carries them lives in `nvme_dev`.

/// Admin command opcodes.
pub const OPC_GET_LOG_PAGE: u8 = 0x02;
pub const OPC_IDENTIFY: u8 = 0x06;
pub const OPC_FORMAT_NVM: u8 = 0x80;
pub const OPC_SANITIZE: u8 = 0x84;

/// Identify data structures and log pages are 4 KiB / 512 bytes.
pub const IDENTIFY_LEN: usize = 4096;
pub const SANITIZE_LOG_LEN: usize = 512;
/// Log page identifier of the Sanitize Status log.
pub const LID_SANITIZE_STATUS: u8 = 0x81;
/// NSID meaning "every namespace" (controller-wide log pages).
pub const NSID_ALL: u32 = 0xFFFF_FFFF;

/// One admin command as the passthrough ioctl takes it (data buffer aside).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdminCommand {
    pub opcode: u8,
    pub nsid: u32,
    pub cdw10: u32,
    pub cdw11: u32,
    /// Bytes the controller returns into the buffer (0: no data).
    pub data_len: u32,
    /// 0: the kernel's admin timeout.
    pub timeout_ms: u32,
}

/// Identify with CNS 01h (controller) or 00h (namespace `nsid`).
pub fn identify_controller() -> AdminCommand {
    AdminCommand {
        opcode: OPC_IDENTIFY,
        cdw10: 0x01,
        data_len: IDENTIFY_LEN as u32,
        ..AdminCommand::default()
    }
}

pub fn identify_namespace(nsid: u32) -> AdminCommand {
    AdminCommand {
        opcode: OPC_IDENTIFY,
        nsid,
        cdw10: 0x00,
        data_len: IDENTIFY_LEN as u32,
        ..AdminCommand::default()
    }
}

/// Get Log Page: CDW10 LID bits 7:0, NUMDL bits 31:16; CDW11 NUMDU bits 15:0 (the
/// number of dwords, zero-based).
pub fn get_log_page(lid: u8, nsid: u32, len: usize) -> AdminCommand {
    let numd = (len / 4).saturating_sub(1) as u32;
    AdminCommand {
        opcode: OPC_GET_LOG_PAGE,
        nsid,
        cdw10: u32::from(lid) | ((numd & 0xFFFF) << 16),
        cdw11: numd >> 16,
        data_len: len as u32,
        ..AdminCommand::default()
    }
}

/// Secure Erase Settings of Format NVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecureErase {
    /// SES 001b: all user data erased.
    UserData = 1,
    /// SES 010b: the encryption key is changed (user data unreadable).
    Cryptographic = 2,
}

/// Format NVM of `nsid` with the namespace's current LBA format, metadata and protection
/// settings (so the size does not change), and the given secure erase setting.
/// CDW10: LBAFL 3:0, MSET 4, PI 7:5, PIL 8, SES 11:9, LBAFU 13:12.
pub fn format_nvm(
    nsid: u32,
    ns: &IdentifyNamespace,
    ses: SecureErase,
    timeout_ms: u32,
) -> AdminCommand {
    let lbaf = u32::from(ns.lba_format_index());
    let cdw10 = (lbaf & 0xF)
        | (u32::from(ns.extended_metadata()) << 4)
        | (u32::from(ns.dps & 0x7) << 5)
        | (u32::from((ns.dps >> 3) & 1) << 8)
        | ((ses as u32) << 9)
        | (((lbaf >> 4) & 0x3) << 12);
    AdminCommand {
        opcode: OPC_FORMAT_NVM,
        nsid,
        cdw10,
        timeout_ms,
        ..AdminCommand::default()
    }
}

/// Sanitize actions (SANACT, CDW10 bits 2:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeAction {
    BlockErase = 2,
    CryptoErase = 4,
}

/// Sanitize the whole NVM subsystem with `action` (no overwrite passes, deallocate after).
pub fn sanitize(action: SanitizeAction) -> AdminCommand {
    AdminCommand {
        opcode: OPC_SANITIZE,
        cdw10: action as u32,
        ..AdminCommand::default()
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from(le32(b, at)) | (u64::from(le32(b, at + 4)) << 32)
}

fn ascii(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} is {got} bytes, expected {want}")]
pub struct ShortData {
    what: &'static str,
    got: usize,
    want: usize,
}

fn need(what: &'static str, b: &[u8], want: usize) -> Result<(), ShortData> {
    if b.len() < want {
        return Err(ShortData {
            what,
            got: b.len(),
            want,
        });
    }
    Ok(())
}

/// The fields of Identify Controller that erasing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyController {
    pub serial: String,
    pub model: String,
    /// Optional Admin Command Support (bytes 257:256).
    pub oacs: u16,
    /// Sanitize Capabilities (bytes 331:328).
    pub sanicap: u32,
    /// Number of Namespaces (bytes 519:516).
    pub nn: u32,
    /// Format NVM Attributes (byte 524).
    pub fna: u8,
}

impl IdentifyController {
    pub fn parse(b: &[u8]) -> Result<Self, ShortData> {
        need("Identify Controller data", b, IDENTIFY_LEN)?;
        Ok(IdentifyController {
            serial: ascii(&b[4..24]),
            model: ascii(&b[24..64]),
            oacs: le16(b, 256),
            sanicap: le32(b, 328),
            nn: le32(b, 516),
            fna: b[524],
        })
    }

    /// OACS bit 1: Format NVM supported.
    pub fn supports_format(&self) -> bool {
        self.oacs & (1 << 1) != 0
    }
    /// FNA bit 2: cryptographic erase supported as a Format NVM secure erase.
    pub fn format_crypto_erase(&self) -> bool {
        self.fna & (1 << 2) != 0
    }
    /// FNA bit 1: a secure erase acts on every namespace of the controller.
    pub fn secure_erase_all_namespaces(&self) -> bool {
        self.fna & (1 << 1) != 0
    }
    /// FNA bit 0: a format acts on every namespace of the controller.
    pub fn format_all_namespaces(&self) -> bool {
        self.fna & 1 != 0
    }
    /// SANICAP bit 0: Crypto Erase sanitize.
    pub fn sanitize_crypto_erase(&self) -> bool {
        self.sanicap & 1 != 0
    }
    /// SANICAP bit 1: Block Erase sanitize.
    pub fn sanitize_block_erase(&self) -> bool {
        self.sanicap & (1 << 1) != 0
    }
}

/// The fields of Identify Namespace that erasing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyNamespace {
    /// Namespace Size in logical blocks (bytes 7:0).
    pub nsze: u64,
    /// Number of LBA formats, zero-based (byte 25).
    pub nlbaf: u8,
    /// Formatted LBA Size (byte 26).
    pub flbas: u8,
    /// End-to-end Data Protection Type Settings (byte 29).
    pub dps: u8,
    /// Deallocate Logical Block Features (byte 33).
    pub dlfeat: u8,
    /// LBA Data Size (2^n bytes) of each LBA format (table at byte 128, 4 bytes each).
    pub lbads: Vec<u8>,
}

impl IdentifyNamespace {
    pub fn parse(b: &[u8]) -> Result<Self, ShortData> {
        need("Identify Namespace data", b, IDENTIFY_LEN)?;
        let nlbaf = b[25];
        let lbads = (0..=usize::from(nlbaf.min(63)))
            .map(|i| b[128 + 4 * i + 2])
            .collect();
        Ok(IdentifyNamespace {
            nsze: le64(b, 0),
            nlbaf,
            flbas: b[26],
            dps: b[29],
            dlfeat: b[33],
            lbads,
        })
    }

    /// The current LBA format: FLBAS bits 3:0, plus bits 6:5 as the upper bits when the
    /// namespace has more than 16 formats.
    pub fn lba_format_index(&self) -> u8 {
        let low = self.flbas & 0xF;
        if self.nlbaf >= 16 {
            low | (((self.flbas >> 5) & 0x3) << 4)
        } else {
            low
        }
    }
    /// FLBAS bit 4: metadata transferred at the end of each LBA.
    pub fn extended_metadata(&self) -> bool {
        self.flbas & (1 << 4) != 0
    }
    /// Logical block size of the current format, when the table has it.
    pub fn block_size(&self) -> Option<u64> {
        self.lbads
            .get(usize::from(self.lba_format_index()))
            .filter(|&&n| (9..=16).contains(&n))
            .map(|&n| 1u64 << n)
    }
    /// DLFEAT bits 2:0 = 001b: deallocated blocks read as zeroes.
    pub fn deallocated_reads_zeroes(&self) -> bool {
        self.dlfeat & 0x7 == 1
    }
}

/// Sanitize Status (SSTAT bits 2:0 of log page 81h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeState {
    NeverSanitized,
    Completed,
    InProgress,
    Failed,
    /// Completed without deallocating (No-Deallocate After Sanitize).
    CompletedNoDeallocate,
    Reserved(u8),
}

/// The Sanitize Status log page (81h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SanitizeStatus {
    /// Progress numerator over 65536 while in progress (bytes 1:0).
    pub sprog: u16,
    pub state: SanitizeState,
    /// SSTAT bit 8: no user data has been written since the last sanitize.
    pub global_data_erased: bool,
}

impl SanitizeStatus {
    pub fn parse(b: &[u8]) -> Result<Self, ShortData> {
        need("Sanitize Status log", b, 20)?;
        let sstat = le16(b, 2);
        let state = match (sstat & 0x7) as u8 {
            0 => SanitizeState::NeverSanitized,
            1 => SanitizeState::Completed,
            2 => SanitizeState::InProgress,
            3 => SanitizeState::Failed,
            4 => SanitizeState::CompletedNoDeallocate,
            n => SanitizeState::Reserved(n),
        };
        Ok(SanitizeStatus {
            sprog: le16(b, 0),
            state,
            global_data_erased: sstat & (1 << 8) != 0,
        })
    }

    /// Progress in percent while in progress.
    pub fn percent(&self) -> f64 {
        f64::from(self.sprog) * 100.0 / 65536.0
    }
}

/// How a namespace gets erased, best first: a Format NVM secure erase (what IPA does), or
/// a Sanitize when the controller cannot format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasePlan {
    Format(SecureErase),
    Sanitize(SanitizeAction),
}

impl ErasePlan {
    /// The `method` reported in the step result.
    pub fn method(self) -> &'static str {
        match self {
            ErasePlan::Format(SecureErase::Cryptographic) => "nvme crypto erase",
            ErasePlan::Format(SecureErase::UserData) => "nvme user-data erase",
            ErasePlan::Sanitize(SanitizeAction::CryptoErase) => "nvme sanitize (crypto erase)",
            ErasePlan::Sanitize(SanitizeAction::BlockErase) => "nvme sanitize (block erase)",
        }
    }

    /// Pick the plan from Identify Controller, as IPA does for Format NVM: crypto erase
    /// when FNA says so, else user-data erase; Sanitize only without Format support.
    pub fn choose(ctrl: &IdentifyController) -> Option<ErasePlan> {
        if ctrl.supports_format() {
            return Some(ErasePlan::Format(if ctrl.format_crypto_erase() {
                SecureErase::Cryptographic
            } else {
                SecureErase::UserData
            }));
        }
        if ctrl.sanitize_crypto_erase() {
            return Some(ErasePlan::Sanitize(SanitizeAction::CryptoErase));
        }
        if ctrl.sanitize_block_erase() {
            return Some(ErasePlan::Sanitize(SanitizeAction::BlockErase));
        }
        None
    }
}

/// An NVMe completion status as the passthrough ioctl returns it (SC bits 7:0, SCT bits
/// 10:8, DNR bit 14), rendered for error messages.
pub fn describe_status(status: u32) -> String {
    let sc = status & 0xFF;
    let sct = (status >> 8) & 0x7;
    let name = match (sct, sc) {
        (0, 0x01) => "Invalid Command Opcode",
        (0, 0x02) => "Invalid Field in Command",
        (0, 0x0B) => "Invalid Namespace or Format",
        (0, 0x1D) => "Sanitize Failed",
        (0, 0x1E) => "Sanitize In Progress",
        (1, 0x0A) => "Invalid Format",
        (1, 0x15) => "Namespace Insufficient Capacity",
        (1, 0x23) => "Prohibited by Command and Feature Lockdown",
        _ => "",
    };
    let dnr = if status & (1 << 14) != 0 { ", DNR" } else { "" };
    if name.is_empty() {
        format!("status {status:#06x} (SCT {sct}, SC {sc:#04x}{dnr})")
    } else {
        format!("{name} (status {status:#06x}{dnr})")
    }
}

#[cfg(test)]
#[path = "nvme_tests.rs"]
mod tests;
