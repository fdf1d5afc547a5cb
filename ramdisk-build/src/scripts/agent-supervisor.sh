#!/bin/sh
# Keeps ferrite-agent running: it is restarted whenever it exits (IPA's systemd unit has
# Restart=always), so a crash never leaves the node without an agent or with a root shell
# on its console. A console shell only with ferrite-debug-shell=1 on the kernel command
# line, for debugging a ramdisk by hand: it is root on the node for whoever has the console.
# The paths come from the environment so that tests can run this with stand-ins.
agent=${FERRITE_AGENT:-/bin/ferrite-agent}
cmdline=${FERRITE_CMDLINE:-/proc/cmdline}
log=${FERRITE_AGENT_LOG:-/var/log/ferrite-agent.log}
delay=${FERRITE_RESTART_DELAY:-5}
shell=${FERRITE_DEBUG_SHELL:-"setsid cttyhack sh"}

debug_shell=no
set -f
for arg in $(cat "$cmdline"); do
    case "$arg" in
        ferrite-debug-shell=1 | ferrite-debug-shell=yes | ferrite-debug-shell=true)
            debug_shell=yes ;;
    esac
done
set +f
if [ "$debug_shell" = yes ]; then
    echo "ferrite-ramdisk: ferrite-debug-shell is set: a root shell stays on the console"
    (while true; do $shell; done) &
fi
while true; do
    echo "ferrite-ramdisk: starting ferrite-agent"
    ("$agent" 2>&1; echo "ferrite-ramdisk: ferrite-agent exited with status $?") |
        tee -a "$log"
    echo "ferrite-ramdisk: restarting ferrite-agent in $delay s"
    sleep "$delay"
done
