//! Shell programs the simulator builder writes for ipmi_sim: a chassis_control program
//! that keeps power and boot device in files, and a lan_config_program.

use std::path::Path;

pub(super) fn write_state_script(path: &Path, dir: &Path) -> std::io::Result<()> {
    let d = dir.display();
    let script = format!(
        r#"#!/bin/sh
# ipmi_sim chassis_control program written by ferrite_ipmi::sim: state lives in files.
D="{d}"
echo "$*" >> "$D/chassis.log"
op=$1; shift
case "$op" in
get)
  for p in "$@"; do
    case "$p" in
      power) echo "power:$(cat "$D/power" 2>/dev/null || echo 0)" ;;
      boot) echo "boot:$(cat "$D/boot" 2>/dev/null || echo default)" ;;
      *) echo "Invalid parameter: $p"; exit 1 ;;
    esac
  done ;;
set)
  while [ $# -ge 2 ]; do
    case "$1" in
      power) echo "$2" > "$D/power" ;;
      boot) echo "$2" > "$D/boot" ;;
      reset) echo "$2" >> "$D/resets" ;;
    esac
    shift 2
  done ;;
*) exit 1 ;;
esac
"#
    );
    std::fs::write(path, script)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// ipmi_sim calls `PROGRAM get PARM…` and reads `PARM: value` lines.
pub(super) fn write_lan_script(
    path: &Path,
    ip: std::net::Ipv4Addr,
    mac: [u8; 6],
) -> std::io::Result<()> {
    let mac = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let script = format!(
        r#"#!/bin/sh
# ipmi_sim lan_config_program written by ferrite_ipmi::sim.
[ "$1" = get ] || exit 0
shift
for p in "$@"; do
  case "$p" in
    ip_addr) echo "ip_addr: {ip}" ;;
    mac_addr) echo "mac_addr: {mac}" ;;
    ip_addr_src) echo "ip_addr_src: static" ;;
    subnet_mask) echo "subnet_mask: 255.255.255.0" ;;
    *_ip_addr) echo "$p: 0.0.0.0" ;;
    *_mac_addr) echo "$p: 00:00:00:00:00:00" ;;
  esac
done
"#
    );
    std::fs::write(path, script)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}
