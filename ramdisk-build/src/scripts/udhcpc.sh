#!/bin/sh
# busybox udhcpc event script: configures the lease it is given.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip addr replace "$ip/${mask:-24}" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    for r in $router; do
        ip route replace default via "$r" dev "$interface" && break
    done
    if [ -n "$dns" ]; then
        : >/etc/resolv.conf
        for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
    fi
    echo "ferrite-ramdisk: $interface has $ip/${mask:-24} (router ${router:-none})"
    ;;
esac
exit 0
