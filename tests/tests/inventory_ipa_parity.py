"""Run by tests/tests/inventory_ipa_parity.rs with target/ipa-venv's interpreter: what the
real ironic-python-agent (PyPI) sends for this machine at inspection, as one JSON object:
GenericHardwareManager.list_hardware_info() ("inventory"), the `pci-devices` and
`numa-topology` collectors ("pci_devices", "numa_topology") and the default collector's
"root_disk", plus every command IPA ran ("commands") and any it was refused ("blocked").

Read-only by construction:
- The hardware managers are not initialized: `initialize()` would assemble md RAID
  (mdadm --assemble --scan), log in to iBFT iSCSI targets, load IPMI modules and start
  multipathd. The generic manager is installed as the only manager by hand, and multipath
  is marked unavailable.
- Every command goes through oslo.concurrency's processutils.execute, replaced here by a
  guard that runs only an allow-list of read-only tools and refuses anything else with
  EPERM (IPA treats that as a missing tool), recording it under "blocked".
- Kernel parameters are read once from /proc/cmdline, with `boot_method` dropped so that IPA
  never mounts virtual media to look for more.

usage: python inventory_ipa_parity.py   (JSON on stdout)
"""
import errno
import json
import logging
import sys

logging.basicConfig(level=logging.ERROR, stream=sys.stderr)

from oslo_concurrency import processutils  # noqa: E402

COMMANDS = []
BLOCKED = []
_EXECUTE = processutils.execute

# Programs that only read; argument lists as IPA's inventory code passes them.
READ_ONLY = {"lshw", "lscpu", "lsblk", "biosdevname"}
# ipmitool through a shell pipeline: only the `lan print` / `lan6 print` queries.
IPMITOOL_QUERIES = ("ipmitool lan print ", "ipmitool lan6 print ")


def _allowed(cmd, kwargs):
    prog = cmd[0] if cmd else ""
    if kwargs.get("shell"):
        return len(cmd) == 1 and prog.startswith(IPMITOOL_QUERIES)
    if prog in READ_ONLY:
        return True
    return prog == "udevadm" and len(cmd) > 1 and cmd[1] in ("settle", "info")


def _guarded_execute(*cmd, **kwargs):
    cmd = [str(c) for c in cmd]
    if not _allowed(cmd, kwargs):
        BLOCKED.append(cmd)
        raise OSError(errno.EPERM, "refused by the parity test (not read-only)", cmd[0])
    COMMANDS.append(cmd)
    return _EXECUTE(*cmd, **kwargs)


processutils.execute = _guarded_execute

from oslo_config import cfg  # noqa: E402

from ironic_python_agent import config  # noqa: E402

config.populate_config()
cfg.CONF([], project="ironic-python-agent")

from ironic_python_agent import encoding  # noqa: E402
from ironic_python_agent import errors  # noqa: E402
from ironic_python_agent import hardware  # noqa: E402
from ironic_python_agent import inspector  # noqa: E402
from ironic_python_agent import numa_inspector  # noqa: E402
from ironic_python_agent import utils  # noqa: E402


def main():
    params = utils._read_params_from_file("/proc/cmdline")
    params.pop("boot_method", None)
    utils._set_cached_params(params)
    hardware.MULTIPATH_ENABLED = False
    manager = hardware.GenericHardwareManager()
    hardware._global_managers = [{
        "name": "GenericHardwareManager",
        "manager": manager,
        "support": manager.evaluate_hardware_support(),
    }]
    inventory = manager.list_hardware_info()
    data = {"inventory": inventory}
    failures = utils.AccumulatedFailures()
    inspector.collect_pci_devices_info(data, failures)
    numa_inspector.collect_numa_topology_info(data, failures)
    try:
        data["root_disk"] = utils.guess_root_disk(inventory["disks"][:])
    except errors.DeviceNotFound:
        pass
    data["commands"] = COMMANDS
    data["blocked"] = BLOCKED
    data["failures"] = failures.get_error()
    print(json.dumps(data, cls=encoding.RESTJSONEncoder))


if __name__ == "__main__":
    main()
