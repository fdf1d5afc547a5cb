#!/bin/sh
# Ferrite deploy ramdisk: PID 1. Mounts the kernel filesystems, loads the drivers, brings
# every NIC up (static from ferrite-net=, else DHCP), and hands over to the supervisor that keeps ferrite-agent running.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
echo "ferrite-ramdisk: kernel $(uname -r), loading drivers"
# Cold-plug: the agent loads the drivers of the devices this machine has (by modalias, from
# the table in /etc/ferrite/coldplug). Should that fail, every module in the ramdisk, as
# before; drivers for hardware the machine lacks then refuse to load, which is expected.
if ! /bin/ferrite-agent coldplug; then
    echo "ferrite-ramdisk: cold-plug failed, loading every driver"
    while read -r ko; do insmod "$ko" 2>/dev/null; done </etc/ferrite/modules
fi
# Booted by UEFI: the NVRAM variables, for the boot entries install_bootloader writes.
if [ -d /sys/firmware/efi/efivars ]; then
    mount -t efivarfs efivarfs /sys/firmware/efi/efivars
fi
ip link set lo up
# Static addressing (virtual-media boot with network_data):
# ferrite-net=MAC,ADDRESS/PREFIX,GATEWAY,DNS[+DNS...] per NIC; the others use DHCP.
static_net() {
    for word in $(cat /proc/cmdline); do
        case "$word" in ferrite-net=*) ;; *) continue ;; esac
        IFS=, read -r mac addr gw dns <<EOF2
${word#ferrite-net=}
EOF2
        [ "$mac" = "$1" ] || continue
        echo "ferrite-ramdisk: $2 static $addr gateway ${gw:-none}"
        ip addr add "$addr" dev "$2"
        [ -n "$gw" ] && ip route add default via "$gw" dev "$2"
        for d in $(echo "$dns" | tr + ' '); do echo "nameserver $d" >>/etc/resolv.conf; done
        return 0
    done
    return 1
}
for dev in /sys/class/net/*; do
    nic=${dev##*/}
    [ "$nic" = lo ] && continue
    ip link set "$nic" up
    static_net "$(cat "$dev/address")" "$nic" && continue
    # Foreground until a lease (then it daemonises), or in the background after 10 tries.
    udhcpc -i "$nic" -s /etc/ferrite/udhcpc.script -t 10 -T 1 -b -S &
done
wait
exec /etc/ferrite/agent-supervisor.sh
