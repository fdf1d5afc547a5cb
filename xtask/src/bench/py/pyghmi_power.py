"""The pyghmi baseline of `cargo xtask bench ipmi`: power status in-process, the way
VirtualBMC and Ironic's tools use the library. Prints one JSON line of figures.

usage: pyghmi_power.py HOST PORT USER PASSWORD NEW_SESSION_CALLS REUSED_CALLS
"""
import json
import sys
import time

from pyghmi.ipmi import command
from pyghmi.ipmi.private import session


def power(c):
    state = c.get_power()["powerstate"]
    if state != "off":
        raise SystemExit(f"pyghmi says the power is {state!r}, the BMC holds off")


def main():
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    new_calls, reused_calls = int(sys.argv[5]), int(sys.argv[6])
    def connect(keepalive=True):
        return command.Command(
            bmc=host, port=port, userid=user, password=password, keepalive=keepalive
        )

    # New session per call: pyghmi keeps a session per BMC in the process, so each call
    # logs out at the end to make the next one open its own. pyghmi 1.6 files a session
    # being set up under kg=None but removes it under its effective kg (the password), so
    # the stale entry is dropped here; otherwise the next Command gets the logged-out one.
    start = time.monotonic()
    for _ in range(new_calls):
        # No keepalive thread work for a session that is closed right away.
        c = connect(keepalive=False)
        power(c)
        c.ipmi_session.logout()
        session.Session.initting_sessions.pop((host, user, password, port, None), None)
    new_ms = (time.monotonic() - start) * 1000 / new_calls

    c = connect()
    power(c)
    start = time.monotonic()
    for _ in range(reused_calls):
        power(c)
    reused_ms = (time.monotonic() - start) * 1000 / reused_calls
    c.ipmi_session.logout()
    print(json.dumps({"new_session_ms": new_ms, "reused_ms": reused_ms, "calls": new_calls + reused_calls + 1}))


if __name__ == "__main__":
    main()
