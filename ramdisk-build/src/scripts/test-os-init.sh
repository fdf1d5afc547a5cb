#!/bin/sh
# Ferrite test OS: PID 1. Finds the config drive (the partition labelled config-2), reads
# openstack/latest/meta_data.json, and prints the marker the end-to-end tests wait for.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "ferrite-test-os: kernel $(uname -r) booted from disk"
while read -r ko; do insmod "$ko" 2>/dev/null; done </etc/ferrite/modules
# Disks may show up a moment after their driver loads: look for up to 10 s.
dev=
i=0
while [ $i -lt 50 ]; do
    # FAT tools may store the label upper-cased; cloud-init accepts both spellings too.
    dev=$(findfs LABEL=config-2 2>/dev/null || findfs LABEL=CONFIG-2 2>/dev/null)
    [ -n "$dev" ] && break
    i=$((i + 1))
    sleep 0.2
done
if [ -z "$dev" ]; then
    echo "ferrite-test-os: no partition labelled config-2; partitions:"
    cat /proc/partitions
elif ! mount -o ro "$dev" /mnt; then
    echo "ferrite-test-os: cannot mount the config drive $dev"
elif [ ! -f /mnt/openstack/latest/meta_data.json ]; then
    echo "ferrite-test-os: $dev has no openstack/latest/meta_data.json"
else
    json=$(tr -d '\n' </mnt/openstack/latest/meta_data.json)
    field() {
        echo "$json" | sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\([^\"]*\)\".*/\1/p"
    }
    uuid=$(field uuid)
    host=$(field hostname)
    [ -n "$host" ] && hostname "$host"
    echo "FERRITE-DEPLOYED uuid=$uuid hostname=$host"
fi
while true; do
    setsid cttyhack sh
done
