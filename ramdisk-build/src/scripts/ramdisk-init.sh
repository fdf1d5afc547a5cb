#!/bin/sh
# Ferrite deploy ramdisk: PID 1. Mounts the kernel filesystems, loads the drivers, brings
# every NIC up with DHCP, runs ferrite-agent, and keeps a shell on the console if it exits.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
echo "ferrite-ramdisk: kernel $(uname -r), loading drivers"
# Drivers for hardware this machine lacks (ipmi_si without a BMC) refuse to load: expected.
while read -r ko; do insmod "$ko" 2>/dev/null; done </etc/ferrite/modules
ip link set lo up
for dev in /sys/class/net/*; do
    nic=${dev##*/}
    [ "$nic" = lo ] && continue
    ip link set "$nic" up
    # Foreground until a lease (then it daemonises), or in the background after 10 tries.
    udhcpc -i "$nic" -s /etc/ferrite/udhcpc.script -t 10 -T 1 -b -S &
done
wait
echo "ferrite-ramdisk: starting ferrite-agent"
set -o pipefail
/bin/ferrite-agent 2>&1 | tee /var/log/ferrite-agent.log
status=$?
echo "ferrite-ramdisk: ferrite-agent exited with status $status; its log:"
cat /var/log/ferrite-agent.log
echo "ferrite-ramdisk: end of the agent log; starting a shell on the console"
while true; do
    setsid cttyhack sh
done
