#!/fixture/busybox sh
# /init of the synthetic Talos test release (tests/release). It stands in for Talos' machined
# init: it reports what it sees as FIXTURE-* marker lines on the serial port, mounts rootfs.sqsh
# and every extension layer listed in /extensions.yaml the way Talos does (squashfs over loop,
# read-only overlayfs with the last layer on top), then powers off. It never exits: an exiting
# PID 1 would panic the kernel, and the tests judge a boot only by the markers.
#
# Marker lines (one per line; "say" writes each exactly once to the serial port):
#   FIXTURE-BOOT-OK
#   FIXTURE-CMDLINE <contents of /proc/cmdline>
#   FIXTURE-FIRMWARE UEFI|BIOS
#   FIXTURE-KERNEL <uname -r> <uname -m>
#   FIXTURE-MICROCODE absent | present <file>:<bytes> ...   (early cpio kernel/x86/microcode)
#   FIXTURE-FWFILE <path>                   (each file under /usr/lib/firmware, /lib/firmware)
#   FIXTURE-ROOTFS <VERSION_ID>|failed      (rootfs.sqsh mounted, its os-release)
#   FIXTURE-KMOD <module> loaded|failed <path relative to its layer>
#   FIXTURE-SECUREBOOT enabled|disabled|unknown        (UEFI only)
#   FIXTURE-LOCKDOWN <mode>|unknown
#   FIXTURE-EXT <name> <version> image=<image> files=<regular files in the layer>
#   FIXTURE-EXT-FAIL <name> <version> image=<image>
#   FIXTURE-SCHEMATIC <id>                  (usr/local/share/schematic/<id> in a layer)
#   FIXTURE-DEPMOD <module path>            (extras/… entries of the merged modules.dep)
#   FIXTURE-EXTENSIONS none | <count>
#   FIXTURE-OVERLAY ok <lowerdirs> | failed
#   FIXTURE-DONE

BB=/fixture/busybox
$BB mkdir -p /bin /proc /sys /dev /tmp /layers /merged
$BB --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

# Where markers go: the hardware serial port (PL011 on arm64 virt, 8250 on x86), whatever the
# kernel's console= says, plus /dev/console unless that already is the serial port (the last
# entry of /sys/class/tty/console/active is the device behind /dev/console).
SERIAL=
for d in ttyAMA0 ttyS0; do
    if [ -e /sys/class/tty/$d ] && [ -c /dev/$d ]; then SERIAL=$d; break; fi
done
CONSDEV=
if [ -r /sys/class/tty/console/active ]; then
    for c in $(cat /sys/class/tty/console/active); do CONSDEV=$c; done
fi
say() {
    if [ -n "$SERIAL" ]; then echo "$*" > /dev/$SERIAL; fi
    if [ "$CONSDEV" != "$SERIAL" ]; then echo "$*" > /dev/console; fi
} 2>/dev/null

finish() {
    say "FIXTURE-DONE"
    sync
    poweroff -f
    sleep 2
    echo o > /proc/sysrq-trigger
    while :; do sleep 60; done
}

say "FIXTURE-BOOT-OK"
say "FIXTURE-CMDLINE $(cat /proc/cmdline)"
if [ -d /sys/firmware/efi ]; then FW=UEFI; else FW=BIOS; fi
say "FIXTURE-FIRMWARE $FW"
KVER=$(uname -r)
say "FIXTURE-KERNEL $KVER $(uname -m)"

uc=
for f in /kernel/x86/microcode/*; do
    [ -f "$f" ] && uc="$uc ${f##*/}:$(stat -c %s "$f")"
done
if [ -n "$uc" ]; then say "FIXTURE-MICROCODE present$uc"; else say "FIXTURE-MICROCODE absent"; fi

for d in /usr/lib/firmware /lib/firmware; do
    [ -d $d ] || continue
    for f in $(find $d -type f | sort); do say "FIXTURE-FWFILE $f"; done
done

# rootfs.sqsh: needs loop and squashfs from the bootstrap directory first.
insmod /fixture/modules/loop.ko
insmod /fixture/modules/squashfs.ko
ROOT=/layers/root
MODDIR=
mkdir -p $ROOT
if mount -t squashfs -o ro,loop /rootfs.sqsh $ROOT; then
    VERSION_ID=unknown
    [ -r $ROOT/usr/lib/os-release ] && . $ROOT/usr/lib/os-release
    say "FIXTURE-ROOTFS $VERSION_ID"
    for m in usr/lib/modules lib/modules; do
        if [ -d $ROOT/$m/$KVER ]; then MODDIR=$m; break; fi
    done
else
    say "FIXTURE-ROOTFS failed"
fi

kmod() { # kmod <layer root> <path of the .ko relative to it>
    name=${2##*/}
    name=${name%.ko}
    if [ -d /sys/module/$name ] || insmod "$1/$2" 2>/dev/null; then
        say "FIXTURE-KMOD $name loaded $2"
    else
        say "FIXTURE-KMOD $name failed $2"
    fi
}

HAVE_OVERLAY=
if [ -n "$MODDIR" ]; then
    kmod $ROOT $MODDIR/$KVER/kernel/fs/overlayfs/overlay.ko && [ -d /sys/module/overlay ] \
        && HAVE_OVERLAY=1
    if [ $FW = UEFI ]; then
        kmod $ROOT $MODDIR/$KVER/kernel/fs/efivarfs/efivarfs.ko
    fi
fi

if [ $FW = UEFI ]; then
    # No SecureBoot variable at all (firmware built without Secure Boot) counts as disabled.
    sb=unknown
    efivars=/sys/firmware/efi/efivars
    if mount -t efivarfs efivarfs $efivars 2>/dev/null || [ -n "$(ls $efivars 2>/dev/null)" ]; then
        v=$efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
        sb=disabled
        if [ -r $v ] && [ "$(cat $v | od -An -tu1 -j4 -N1 | tr -d ' ')" = 1 ]; then sb=enabled; fi
    fi
    say "FIXTURE-SECUREBOOT $sb"
fi
mount -t securityfs securityfs /sys/kernel/security 2>/dev/null
lockdown=unknown
if [ -r /sys/kernel/security/lockdown ]; then
    lockdown=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/security/lockdown)
fi
say "FIXTURE-LOCKDOWN ${lockdown:-unknown}"

# /extensions.yaml (talos-assets.md §4.3) -> "image<TAB>name<TAB>version" per layer. A tiny
# indentation-aware reader: list items of the top-level "layers:" key; "image" at item level;
# "name"/"version" at the level directly under the item's "metadata:" (so compatibility's
# "version" and block-scalar text never match). Works for 2- and 4-space emitters and any key order.
layers_of() {
    awk '
    function unq(v,  q) {
        sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v)
        q = substr(v, 1, 1)
        if (length(v) >= 2 && (q == "\"" || q == sprintf("%c", 39)) && substr(v, length(v)) == q)
            v = substr(v, 2, length(v) - 2)
        return v
    }
    function flush() {
        if (img != "") print img "\t" (nm == "" ? "-" : nm) "\t" (ver == "" ? "-" : ver)
        img = ""; nm = ""; ver = ""
    }
    BEGIN { inlayers = 0; itemind = -1; keycol = -1; inmeta = 0; metacol = -1 }
    /^[ \t]*(#.*)?$/ { next }
    {
        line = $0
        match(line, /^ */); ind = RLENGTH
        s = substr(line, ind + 1)
        if (ind == 0 && s !~ /^- /) {
            flush(); inlayers = (s ~ /^layers:[ \t]*$/); itemind = -1; next
        }
        if (!inlayers) next
        col = ind
        if (s ~ /^- / && (itemind < 0 || ind == itemind)) {
            flush(); itemind = ind; inmeta = 0; metacol = -1
            s = substr(s, 2); match(s, /^ */); col = ind + 1 + RLENGTH; s = substr(s, RLENGTH + 1)
            keycol = col
        } else if (itemind >= 0 && ind <= itemind) {
            flush(); inlayers = 0; next
        }
        if (!match(s, /^[A-Za-z0-9_.-]+:/)) next
        key = substr(s, 1, RLENGTH - 1); val = substr(s, RLENGTH + 1)
        if (val != "" && val !~ /^[ \t]/) next
        if (col == keycol) {
            inmeta = (key == "metadata"); metacol = -1
            if (key == "image") img = unq(val)
        } else if (inmeta && col > keycol) {
            if (metacol < 0) metacol = col
            if (col == metacol && key == "name") nm = unq(val)
            if (col == metacol && key == "version") ver = unq(val)
        }
    }
    END { flush() }
    ' "$1"
}

if [ -f /extensions.yaml ]; then
    layers_of /extensions.yaml > /tmp/layers
    n=0
    lowers=
    TAB=$(printf '\t')
    while IFS="$TAB" read -r image name version; do
        dir=/layers/layer$n
        mkdir -p $dir
        if mount -t squashfs -o ro,loop "/$image" $dir; then
            files=$(find $dir -type f | wc -l)
            say "FIXTURE-EXT $name $version image=$image files=$files"
            lowers="$dir${lowers:+:$lowers}"
            for s in $dir/usr/local/share/schematic/*; do
                [ -e "$s" ] && say "FIXTURE-SCHEMATIC ${s##*/}"
            done
            for k in $(find $dir/usr/lib/modules $dir/lib/modules -name '*.ko' 2>/dev/null | sort); do
                kmod $dir "${k#"$dir"/}"
            done
        else
            say "FIXTURE-EXT-FAIL $name $version image=$image"
        fi
        n=$((n + 1))
    done < /tmp/layers
    say "FIXTURE-EXTENSIONS $n"
    if [ -n "$lowers" ] && [ -n "$HAVE_OVERLAY" ]; then
        if mount -t overlay overlay -o "ro,lowerdir=$lowers:$ROOT" /merged; then
            say "FIXTURE-OVERLAY ok $lowers:$ROOT"
            dep=/merged/$MODDIR/$KVER/modules.dep
            if [ -n "$MODDIR" ] && [ -f $dep ]; then
                for m in $(grep '^extras/' $dep | cut -d: -f1 | sort); do
                    say "FIXTURE-DEPMOD $m"
                done
            fi
        else
            say "FIXTURE-OVERLAY failed"
        fi
    fi
else
    say "FIXTURE-EXTENSIONS none"
fi

finish
