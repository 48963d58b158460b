#!/usr/bin/env bash
# Bridged slices across nodes: the VXLAN overlay (lib/netcfg/overlay.c).
#
# Four test hosts, each a network namespace of this run (vo<ID>-a/b/c/r),
# joined by a bridge on a fifth ("lan") on the underlay 10.216.<ID>.0/24:
# a .11, b .12, c .13 run slices (each its own VSLICE_ROOT and cgroup
# parent, the overlay on: VNI, local address), r .20 is a stranger on the
# underlay. Slices get cluster-wide addresses (--net bridge,ip=) from the
# default overlay subnet 10.213.0.0/16; each host's peer list (what the
# registry will tell the node managers) is set through the library call,
# by tests/integration/tools/netpeers. Nothing touches the machine's own
# network (checked at the end).
. "$(dirname "$0")/lib.sh"
need_busybox_image
command -v nsenter >/dev/null && command -v nft >/dev/null && command -v bridge >/dev/null || {
	echo "not ok - nsenter, nft and bridge are needed"
	exit 1
}
PEERS=$VS_REPO/build/tests/integration/tools/netpeers
[ -x "$PEERS" ] || make -C "$VS_REPO" -s build/tests/integration/tools/netpeers
SPOOF=$VS_REPO/build/tests/integration/helpers/netspoof
[ -x "$SPOOF" ] || make -C "$VS_REPO" -s build/tests/integration/helpers/netspoof

# The lan namespace is the claim on an id (as in tests/cluster/lib.sh).
ID=$(($$ % 200 + 20))
for _ in $(seq 200); do
	ip netns add "vo$ID-lan" 2>/dev/null && break
	ID=$(((ID - 20 + 1) % 200 + 20))
done
U=10.216.$ID
VNI=$((4000 + ID))
VX=vsx$VNI
BR=vob$ID
T=$(mktemp -d /tmp/vslice-overlay.XXXXXX)
chmod 0755 "$T"
declare -A HOSTNUM=([a]=11 [b]=12 [c]=13 [r]=20)
host_links_before=$(ip -br link | awk '{print $1}' | sort | tr '\n' ' ')

# on HOST CMD...: a command on a test host's network namespace, with that
# host's vslice root and overlay settings.
on() {
	local h=$1
	shift
	VSLICE_ROOT=$T/$h/root VSLICE_CGROUP_PARENT=vslice-test-$$-$h VSLICE_BRIDGE=$BR \
		VSLICE_OVERLAY_VNI=$VNI VSLICE_OVERLAY_LOCAL=$U.${HOSTNUM[$h]} \
		nsenter --net=/run/netns/vo$ID-$h "$@"
}
vsh() { # HOST slicectl-args...
	local h=$1
	shift
	on "$h" "$SLICECTL" "$@"
}
quiet() { "$@" >/dev/null 2>&1; }

overlay_cleanup() {
	local h s
	for h in a b c; do
		[ -d "$T/$h/root" ] || continue
		for s in $(vsh $h list -q 2>/dev/null); do vsh $h destroy --force "$s" >/dev/null 2>&1; done
		on $h "$PEERS" set >/dev/null 2>&1
		VSLICE_TEST_CGROUP_PARENT=vslice-test-$$-$h VSLICE_TEST_ROOT=$T/$h/root \
			bash -c ". '$VS_REPO/tests/integration/lib.sh'; trap - EXIT; vs_cleanup"
	done
	for h in a b c r lan; do ip netns del vo$ID-$h 2>/dev/null; done
	case "$T" in /tmp/vslice-overlay.*) rm -rf --one-file-system "$T" ;; esac
	vs_cleanup
}
trap overlay_cleanup EXIT

ip -n vo$ID-lan link add lan type bridge
ip -n vo$ID-lan link set lan up
for h in a b c r; do
	ip netns add vo$ID-$h
	# In the lan namespace from the start, never in the host's (test_net
	# compares the host's links before and after, run.sh runs it alongside).
	ip -n vo$ID-lan link add vo$ID-$h type veth peer name eth0 netns vo$ID-$h
	ip -n vo$ID-lan link set vo$ID-$h master lan up
	ip -n vo$ID-$h addr add $U.${HOSTNUM[$h]}/24 dev eth0
	ip -n vo$ID-$h link set eth0 up
	ip -n vo$ID-$h link set lo up
	# br_netfilter on where the kernel has it (Docker and Kubernetes hosts):
	# bridged IPv4 then also goes through the IPv4 hooks.
	[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] &&
		ip netns exec vo$ID-$h sysctl -qw net.bridge.bridge-nf-call-iptables=1
	if [ $h != r ]; then
		mkdir -p "$T/$h/root"
		chmod 0755 "$T/$h" "$T/$h/root"
		vsh $h image build busybox >/dev/null
	fi
done

snapshot() { # HOST: what the node's network looks like
	on "$1" ip -d link | sed 's/ *$//'
	on "$1" ip route
	on "$1" bridge fdb
	on "$1" ip neigh | grep -v ' dev eth0 ' # (the underlay's own ARP is not vslice's)
	on "$1" nft list ruleset
}
declare -A BEFORE
for h in a b c; do BEFORE[$h]=$(snapshot $h); done

# Addresses are cluster-wide: the node does not pick them.
out=$(vsh a run -d --net bridge noip -- sleep 60 2>&1)
check "with the overlay, --net bridge without ip= is refused ($out)" \
	test -n "$(grep -o 'needs a cluster-wide address' <<<"$out")"
vsh a destroy --force noip >/dev/null 2>&1
out=$(vsh a run -d --net bridge,ip=10.214.0.5 outside -- sleep 60 2>&1)
check "an ip= outside the overlay subnet is refused, naming it ($out)" \
	test -n "$(grep -o 'ip= 10.214.0.5: not a slice address of the bridge subnet 10.213.0.0/16' <<<"$out")"
vsh a destroy --force outside >/dev/null 2>&1
out=$(vsh a run -d --net bridge,ip=nonsense bad -- sleep 60 2>&1)
check "ip=nonsense is refused before anything is made ($out)" \
	test -n "$(grep -o 'ip=: not an IPv4 address' <<<"$out")" -a ! -d "$T/a/root/slices/bad"
# The default overlay subnet against the host's own addresses.
ip -n vo$ID-c addr add 10.213.200.1/32 dev lo
out=$(vsh c run -d --net bridge,ip=10.213.0.13 clash -- sleep 60 2>&1)
check "the default overlay subnet 10.213.0.0/16 is refused when the host has an address in it ($out)" \
	test -n "$(grep -o "10.213.0.0/16 overlaps the node's address 10.213.200.1" <<<"$out")"
vsh c destroy --force clash >/dev/null 2>&1
ip -n vo$ID-c addr del 10.213.200.1/32 dev lo
out=$(VSLICE_ROOT=$T/c/root VSLICE_CGROUP_PARENT=vslice-test-$$-c VSLICE_BRIDGE=$BR \
	VSLICE_OVERLAY_VNI=$VNI VSLICE_OVERLAY_LOCAL=$U.99 nsenter --net=/run/netns/vo$ID-c \
	"$SLICECTL" run -d --net bridge,ip=10.213.0.13 nolocal -- sleep 60 2>&1)
check "an underlay address that is not the host's is refused ($out)" \
	test -n "$(grep -o "VSLICE_OVERLAY_LOCAL $U.99: not an address of this node" <<<"$out")"
vsh c destroy --force nolocal >/dev/null 2>&1
expect_eq "the refused starts left host c's network as it was" "${BEFORE[c]}" "$(snapshot c)"

# Slices: a1 on a, b1 on b, c1 on c, and m (the one that moves) on a.
A1=10.213.0.11 B1=10.213.0.12 C1=10.213.0.13 M=10.213.0.50
declare -A WHERE=([a1]=a [b1]=b [c1]=c [m]=a)
declare -A ADDR=([a1]=$A1 [b1]=$B1 [c1]=$C1 [m]=$M)
for s in a1 b1 c1 m; do
	vsh ${WHERE[$s]} run -d --net bridge,ip=${ADDR[$s]} $s -- sleep 100000 >/dev/null
done
# Every host's peers: the slices on the other hosts (the registry's view).
peers_all() {
	local h s list
	for h in a b c; do
		list=()
		for s in "${!WHERE[@]}"; do
			[ "${WHERE[$s]}" = "$h" ] || list+=("${ADDR[$s]}@$U.${HOSTNUM[${WHERE[$s]}]}")
		done
		on $h "$PEERS" set "${list[@]}" || return 1
	done
}
check "each host takes its peer list" peers_all
ip_of() { vsh "$1" exec "$2" -- ip -4 -o addr show dev eth0 | awk '{print $4}'; }
expect_eq "a slice has the address it was given" "$B1/16" "$(ip_of b b1)"
expect_eq "its MAC follows from the address" "02:76:0a:d5:00:0c" \
	"$(vsh b exec b1 -- cat /sys/class/net/eth0/address)"
vxd=$(on a ip -d link show $VX)
check "host a has the VXLAN port: VNI, local address, UDP 4789, no learning" \
	test -n "$(grep -E "vxlan id $VNI local $U.11 .*dstport 4789 nolearning" <<<"$vxd")" \
	-a -n "$(grep -o "master $BR" <<<"$vxd")"
bport=$(on a bridge -d link show dev $VX)
check "its bridge port answers ARP itself and floods nothing (neigh_suppress, flood off, learning off)" \
	test -n "$(grep -o 'neigh_suppress on' <<<"$bport")" -a -n "$(grep -o 'flood off' <<<"$bport")" \
	-a -n "$(grep -o 'learning off' <<<"$bport")"
expect_eq "the slices' MTU leaves room for VXLAN" 1450 "$(vsh a exec a1 -- cat /sys/class/net/eth0/mtu)"

# Slivers on different hosts reach each other by address.
check "a1 (host a) pings b1 (host b)" quiet vsh a exec a1 -- ping -c2 -W3 $B1
check "c1 (host c) pings m (host a)" quiet vsh c exec c1 -- ping -c2 -W3 $M
wait_listen() { # PORT HOST SLICE: something listens on PORT in the slice (at most ~10 s)
	local i
	for i in $(seq 100); do
		vsh "$2" exec "$3" -- netstat -ltn 2>/dev/null | grep -q ":$1 " && return 0
		sleep 0.1
	done
	return 1
}
(vsh b exec b1 -- sh -c 'echo hello-from-b1 | nc -l -p 7000' >/dev/null 2>&1 &)
wait_listen 7000 b b1
expect_eq "a1 reads b1's TCP service across the overlay" hello-from-b1 \
	"$(vsh a exec a1 -- sh -c "nc -w 3 $B1 7000 </dev/null")"
# The fast path across nodes (lib/netcfg/fast.c): each host's VXLAN device
# and its slices' host ends carry the program (attached after the start and
# the peer list); host a's map sends b1's MAC out of its VXLAN device (a
# remote entry naming that device), host b's delivers it straight into b1
# (b1's local entry). A ping from a1 to b1 goes that way on both hosts: both
# entries count it. (The forged VXLAN below meets this program on host b
# too; the outer-source rule drops it before it is decapsulated.)
hostend() { # HOST SLICE: the slice's host end
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["leases"][sys.argv[2]]["veth"])' \
		"$T/$1/root/net/leases.json" "$2" 2>/dev/null
}
fast_wait() { # HOST DEV...: every DEV carries the program (at most ~10 s each)
	local h=$1 d i
	shift
	for d in "$@"; do
		for i in $(seq 100); do
			vs_fast_on on "$h" "$d" && break
			[ "$i" = 100 ] && return 1
			sleep 0.1
		done
	done
}
check "host a: the fast path on its VXLAN device and a1's host end" fast_wait a $VX "$(hostend a a1)"
check "host b: the fast path on its VXLAN device and b1's host end" fast_wait b $VX "$(hostend b b1)"
vx_a=$(on a ip -o link show $VX | cut -d: -f1)
ent_a=$(vs_fast_entry "$T/a/root" 02:76:0a:d5:00:0c)
check "host a's map sends b1's MAC out of its VXLAN device (ifindex $vx_a, remote: $ent_a)" \
	test -n "$ent_a" -a "$(cut -d' ' -f1-2 <<<"$ent_a")" = "$vx_a 1"
ent_b=$(vs_fast_entry "$T/b/root" 02:76:0a:d5:00:0c)
check "host b's map has b1 as a local slice ($ent_b)" test -n "$ent_b" -a "$(cut -d' ' -f2 <<<"$ent_b")" = 0
quiet vsh a exec a1 -- ping -c5 -i 0.2 -W3 $B1
ent_a2=$(vs_fast_entry "$T/a/root" 02:76:0a:d5:00:0c)
ent_b2=$(vs_fast_entry "$T/b/root" 02:76:0a:d5:00:0c)
check "5 pings a1 -> b1 went through the program on both hosts (a: ${ent_a##* } -> ${ent_a2##* }, b: ${ent_b##* } -> ${ent_b2##* })" \
	test -n "$ent_a2" -a -n "$ent_b2" -a "${ent_a2##* }" -ge $((${ent_a##* } + 5)) -a "${ent_b2##* }" -ge $((${ent_b##* } + 5))
# Neither the VXLAN datagrams (UDP 4789, our VNI) nor the slices' bridged
# traffic inside them take connection entries on the nodes (nft.c:
# raw_prerouting, raw_output; br_netfilter is on in a test host's
# namespace when the kernel has it).
conns() { on "$1" cat /proc/net/nf_conntrack 2>/dev/null | grep -E -c "$2"; }
check "no connection entry for VXLAN or a1-b1 on host a or b" \
	test "$(conns a 'dport=4789 ')" = 0 -a "$(conns b 'dport=4789 ')" = 0 -a \
	"$(conns a "src=$A1 dst=$B1 ")" = 0 -a "$(conns b "src=$A1 dst=$B1 ")" = 0
expect_eq "host a's bridge answers for b1 from the peer list (neighbour entry)" \
	"$B1 lladdr 02:76:0a:d5:00:0c PERMANENT" \
	"$(on a ip neigh show $B1 dev $BR | sed 's/ *$//; s/dev [^ ]* //')"

# Stale entries (a crash, a peer list from an older run) go with the next change.
on a bridge fdb add 02:76:0a:d5:00:63 dev $VX dst $U.99 self permanent
on a ip neigh add 10.213.0.99 lladdr 02:76:0a:d5:00:63 dev $BR nud permanent
vsh a run -d --net bridge,ip=10.213.0.21 a2 -- sleep 100000 >/dev/null
WHERE[a2]=a ADDR[a2]=10.213.0.21
check "a start removes forwarding and neighbour entries no peer names" \
	test -n "$(on a ip -br link show $VX 2>/dev/null)" -a -z "$(on a bridge fdb show dev $VX | grep 02:76:0a:d5:00:63)" \
	-a -z "$(on a ip neigh show 10.213.0.99 dev $BR)"
peers_all

# The move: m leaves host a and comes up on host b with the same address.
mac_m=$(vsh a exec m -- cat /sys/class/net/eth0/address)
arp_c1_before=$(vsh c exec c1 -- ip neigh show $M | awk '{print $5}')
vsh a destroy --force m >/dev/null
WHERE[m]=b
vsh b run -d --net bridge,ip=$M m -- sleep 100000 >/dev/null
expect_eq "the moved slice has the same address" "$M/16" "$(ip_of b m)"
check "and the same MAC ($mac_m)" test -n "$mac_m" -a "$mac_m" = "$(vsh b exec m -- cat /sys/class/net/eth0/address)"
check "its gratuitous ARP taught host b's bridge its new port" \
	test -n "$(on b bridge fdb show br $BR | grep "^$mac_m dev vsh")"
# Host c still points m's MAC at host a: nothing gets there.
check "before host c is repointed, c1 does not reach m" \
	test -z "$(vsh c exec c1 -- ping -c1 -W1 $M 2>/dev/null | grep '1 packets received')"
peers_all
t0=$(date +%s%N)
check "after the repoint (fdb entry -> host b), c1 reaches m at once" \
	quiet vsh c exec c1 -- ping -c1 -W3 $M
t1=$(date +%s%N)
echo "# c1 -> m after the repoint: $(((t1 - t0) / 1000000)) ms for the first reply (with slicectl exec)"
check "host c's fdb sends m's MAC to host b" \
	test -n "$(on c bridge fdb show dev $VX | grep "^$mac_m dst $U.12 self")"
expect_eq "c1's ARP entry for m was never re-learnt (same MAC)" "$mac_m" \
	"$(vsh c exec c1 -- ip neigh show $M | awk '{print $5}')"
check "(it was known before the move: $arp_c1_before)" test -n "$mac_m" -a "$arp_c1_before" = "$mac_m"
check "a1 (host a, where m was) reaches m on host b" quiet vsh a exec a1 -- ping -c1 -W3 $M
vsh b stop m >/dev/null && vsh b start m >/dev/null
check "after stop and start on host b, m keeps its address and c1 reaches it" \
	test "$(ip_of b m)" = "$M/16" -a -n "$(vsh c exec c1 -- ping -c1 -W3 $M 2>/dev/null | grep '1 packets received')"

# Isolation across the overlay.
udp_listen() { # HOST SLICE PORT SECS OUTFILE: "source:text" of each datagram, in the slice's netns
	local pid
	pid=$(vsh "$1" show --json "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
	nsenter --net=/proc/$pid/ns/net python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
open(sys.argv[3], "w").close()
s.settimeout(float(sys.argv[2]))
got = set()
try:
    while True:
        d, a = s.recvfrom(512)
        got.add("%s:%s" % (a[0], d.decode(errors="replace")))
except socket.timeout:
    pass
print(" ".join(sorted(got)))' "$3" "$4" "$5.ready" >"$5" &
	for _ in $(seq 100); do [ -e "$5.ready" ] && return 0; sleep 0.1; done
}
vsh a exec a1 -- sh -c 'cat > /bin/netspoof && chmod 755 /bin/netspoof' <"$SPOOF"
udp_listen b b1 7300 10 "$T/udp1"
vsh a exec a1 -- netspoof udp $C1 $B1 7300 spoofed-c1
vsh a exec a1 -- netspoof udp $A1 $B1 7300 genuine
wait
expect_eq "a1 cannot send as c1 across the overlay (its own datagram arrives)" \
	"$A1:genuine" "$(cat "$T/udp1")"

# VXLAN packets forged on the underlay: a stranger (host r) is not a peer
# node; a peer node (host a) may speak only for its own slices.
cat >"$T/vxsend.py" <<'EOF'
import socket, struct, sys
vni, dst, smac, sip, dmac, dip, port, text = sys.argv[1:9]
def mac(m): return bytes(int(x, 16) for x in m.split(":"))
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
data = text.encode()
udp = struct.pack("!HHHH", 40000, int(port), 8 + len(data), 0) + data
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(sip), socket.inet_aton(dip))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
frame = mac(dmac) + mac(smac) + b"\x08\x00" + ip + udp
pkt = struct.pack("!II", 0x08000000, int(vni) << 8) + frame
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(pkt, (dst, 4789))
EOF
mac_a1=02:76:0a:d5:00:0b mac_b1=02:76:0a:d5:00:0c mac_c1=02:76:0a:d5:00:0d
udp_listen b b1 7301 10 "$T/udp2"
on r python3 "$T/vxsend.py" $VNI $U.12 $mac_a1 $A1 $mac_b1 $B1 7301 from-stranger
on a python3 "$T/vxsend.py" $VNI $U.12 $mac_c1 $C1 $mac_b1 $B1 7301 node-a-as-c1
on a python3 "$T/vxsend.py" $VNI $U.12 $mac_a1 $A1 $mac_b1 $B1 7301 node-a-as-a1
wait
expect_eq "forged VXLAN: a stranger on the underlay and a node speaking for another node's slice are dropped (the genuine one arrives)" \
	"$A1:node-a-as-a1" "$(cat "$T/udp2")"
check "nft on host b: VXLAN of this VNI only from a peer's node with that peer's MAC" \
	test -n "$(on b nft list set inet vslice overlay_src | grep -o "$U.13 . 0x2760ad5000d")" \
	-a -n "$(on b nft list chain inet vslice input | grep -o "@th,96,24 $(printf 0x%x $VNI) ip saddr")"

# Peer lists are checked as a whole before anything changes.
out=$(on a "$PEERS" set $B1@$U.12 10.99.0.1@$U.12 2>&1)
check "a peer outside the overlay subnet is refused, naming it ($out)" \
	test -n "$(grep -o 'peer 1 ip 10.99.0.1: not a slice address' <<<"$out")"
out=$(on a "$PEERS" set $B1@$U.12 $B1@$U.13 2>&1)
check "a peer address given twice is refused ($out)" test -n "$(grep -o 'given twice' <<<"$out")"
check "and the old list stays" test -n "$(on a "$PEERS" show | grep "^$C1@$U.13$")"

# All gone: hosts as they were.
for h in a b c; do
	for s in $(vsh $h list -q); do vsh $h destroy --force "$s" >/dev/null; done
	on $h "$PEERS" set
	if [ $h = c ]; then
		# A VXLAN device of ours left without a lease (a crash between the
		# two): the next first slice replaces it, and it goes with that slice.
		on c ip link add $VX type vxlan id $VNI local $U.13 dstport 4789
		check "a leftover $VX does not stop the first slice, which makes its own" \
			quiet vsh c run -d --net bridge,ip=$C1 c9 -- sleep 100000
		check "(the new one does not learn: it is vslice's)" \
			test -n "$(on c ip -d link show $VX | grep -o nolearning)"
		vsh c destroy --force c9 >/dev/null
	fi
	expect_eq "after destroy, host $h: links, routes, fdb, neighbours, nft ruleset as before" \
		"${BEFORE[$h]}" "$(snapshot $h)"
	check "host $h: no lease or peer file left" \
		test ! -e "$T/$h/root/net/leases.json" -a ! -e "$T/$h/root/net/peers.json"
done
expect_eq "the machine's own links were never touched" "$host_links_before" \
	"$(ip -br link | awk '{print $1}' | grep -v "^vo$ID-" | sort | tr '\n' ' ')"
finish
