"""The python sushy baseline of `cargo xtask bench redfish`: power status and boot-device
set in-process with sushy, the Redfish library Ironic uses, in its default auth mode (a
session when the service offers one, else basic). Prints one JSON line of figures.

usage: sushy_redfish.py URL USER PASSWORD SYSTEM_PATH NEW_CALLS REUSED_CALLS BOOT_CALLS
"""
import json
import sys
import time
import warnings

import sushy

warnings.filterwarnings("ignore")


def main():
    url, user, password, path = sys.argv[1:5]
    new_calls, reused_calls, boot_calls = (int(a) for a in sys.argv[5:8])

    def connect():
        return sushy.Sushy(url + "/redfish/v1", username=user, password=password, verify=False)

    def check_off(system):
        if system.power_state != sushy.POWER_STATE_OFF:
            raise SystemExit(f"sushy says power is {system.power_state!r}, the BMC holds off")

    # New client per call: connect (service root) and read the system.
    start = time.monotonic()
    for _ in range(new_calls):
        check_off(connect().get_system(path))
    new_ms = (time.monotonic() - start) * 1000 / new_calls

    # Reused: one client and system object, refreshed for every read.
    root = connect()
    system = root.get_system(path)
    start = time.monotonic()
    cpu = time.process_time()
    for _ in range(reused_calls):
        system.refresh()
        check_off(system)
    reused_cpu_ms = (time.process_time() - cpu) * 1000 / reused_calls
    reused_ms = (time.monotonic() - start) * 1000 / reused_calls

    # Boot device, alternating PXE and disk, once; the last one is checked by the caller.
    targets = [sushy.BOOT_SOURCE_TARGET_PXE, sushy.BOOT_SOURCE_TARGET_HDD]
    start = time.monotonic()
    for i in range(boot_calls):
        system.set_system_boot_options(
            target=targets[i % 2], enabled=sushy.BOOT_SOURCE_ENABLED_ONCE)
    boot_ms = (time.monotonic() - start) * 1000 / boot_calls
    system.refresh()
    print(json.dumps({"new_ms": new_ms, "reused_ms": reused_ms,
                      "reused_cpu_ms": reused_cpu_ms, "boot_ms": boot_ms,
                      "last_target": str(system.boot.target)}))


if __name__ == "__main__":
    main()
