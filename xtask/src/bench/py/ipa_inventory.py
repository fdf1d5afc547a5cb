"""The in-process baseline of `cargo xtask bench agent`: ironic-python-agent's own
GenericHardwareManager.list_hardware_info(), what IPA sends the conductor as inventory.
Prints one JSON line: the first call's time, every later call's time, and the keys of the
inventory (checked by the bench).

usage: ipa_inventory.py CALLS
"""
import json
import logging
import sys
import time

logging.basicConfig(level=logging.ERROR)

from oslo_config import cfg  # noqa: E402

from ironic_python_agent import config  # noqa: E402

config.populate_config()
cfg.CONF([], project="ironic-python-agent")

from ironic_python_agent import hardware  # noqa: E402


def main():
    calls = int(sys.argv[1])
    manager = hardware.GenericHardwareManager()
    # The generic manager as the only one, never initialized: initialize() would assemble
    # md RAID, log in to iBFT iSCSI targets, load IPMI modules and start multipathd on the
    # benchmark's host (IPA runs it once at startup, not per inventory).
    hardware.MULTIPATH_ENABLED = False
    hardware._global_managers = [{
        "name": "GenericHardwareManager",
        "manager": manager,
        "support": manager.evaluate_hardware_support(),
    }]
    times = []
    for _ in range(calls):
        start = time.monotonic()
        inventory = manager.list_hardware_info()
        times.append((time.monotonic() - start) * 1000)
    print(json.dumps({
        "ms": times,
        "keys": sorted(inventory),
        "disks": len(inventory.get("disks") or []),
        "interfaces": len(inventory.get("interfaces") or []),
    }))


if __name__ == "__main__":
    main()
