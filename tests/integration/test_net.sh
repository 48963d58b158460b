#!/usr/bin/env bash
# Bridged slice networking (--net bridge, --publish, --net-rate) on one node.
#
# The "node" is a network namespace of this test's own (vsn<pid>), entered
# with nsenter --net only (ip netns exec would remount /sys and hide the
# cgroup mounts); an "outside" namespace (vsx<pid>) hangs off it by a veth
# as the world beyond the node. Every slicectl call that touches the
# network runs in the node namespace: the host's interfaces, routes and nft
# tables are never touched (checked at the end), and the bridge has a
# per-run name. Addresses: bridge 10.213.0.0/24 (the default), node uplink
# 10.214.<pid%250>.0/24.
. "$(dirname "$0")/lib.sh"
need_busybox_image
command -v nsenter >/dev/null && command -v nft >/dev/null || {
	echo "not ok - nsenter and nft are needed"
	exit 1
}

NODE=vsn$$
OUT=vsx$$
export VSLICE_BRIDGE=vsbr$$
U=10.214.$(($$ % 250))
ip netns add $NODE
ip netns add $OUT
node() { nsenter --net=/run/netns/$NODE "$@"; }
outside() { nsenter --net=/run/netns/$OUT "$@"; }
vsn() { node "$SLICECTL" "$@"; }
quiet() { "$@" >/dev/null 2>&1; }
# wait_listen PORT tcp|udp CMD...: until something listens on PORT where CMD
# runs (a slice: vsn exec NAME --; the node; outside), at most ~10 s. A
# loaded machine may take a while to start a listener: no fixed sleeps.
wait_listen() {
	local port=$1 proto=$2 i
	shift 2
	local flags=-ltn
	[ "$proto" = udp ] && flags=-lun
	for i in $(seq 100); do
		"$@" sh -c "netstat $flags 2>/dev/null || ss $flags" 2>/dev/null | grep -q ":$port " && return 0
		sleep 0.1
	done
	echo "# nothing listens on $port/$proto after 10 s"
	return 1
}

host_links_before=$(ip -br link | awk '{print $1}' | sort | tr '\n' ' ')
host_vslice_tables_before=$(nft list tables 2>/dev/null | grep -c ' vslice$')

net_cleanup() {
	local n
	for n in $(vsn list -q 2>/dev/null); do vsn destroy --force "$n" >/dev/null 2>&1; done
	ip netns del $NODE 2>/dev/null
	ip netns del $OUT 2>/dev/null
	vs_cleanup
}
trap net_cleanup EXIT

# The node: lo, an uplink to the outside, a default route there.
node ip link set lo up
# br_netfilter (when the kernel has it) on, as on a host with Docker or
# Kubernetes: bridged IPv4 then also goes through the IPv4 hooks.
BRNF=
if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
	node sysctl -qw net.bridge.bridge-nf-call-iptables=1 && BRNF=1
fi
node ip link add up$$ type veth peer name dn$$ netns $OUT
node ip addr add $U.1/24 dev up$$
node ip link set up$$ up
outside ip link set lo up
outside ip addr add $U.2/24 dev dn$$
outside ip link set dn$$ up
outside ip route add 10.213.0.0/24 via $U.1

snapshot() {
	node ip -d link | sed 's/ *$//'
	node ip route
	node nft list ruleset
	node tc qdisc
	node cat /proc/sys/net/ipv4/ip_forward
}
# The uplink's carrier comes a moment after both ends are up (linkwatch):
# the snapshot is taken once it has, or "before" would say NO-CARRIER.
for i in $(seq 100); do
	node ip -br link show up$$ | grep -q ' UP ' && break
	sleep 0.1
done
before=$(snapshot)

# A subnet that overlaps the node's own addresses is refused, nothing made.
out=$(VSLICE_BRIDGE_SUBNET=$U.128/25 vsn run -d --net bridge clash -- sleep 60 2>&1)
rc=$?
check "a bridge subnet overlapping the node's address is refused ($out)" \
	test $rc -ne 0 -a -n "$(grep -o "overlaps the node's address $U.1" <<<"$out")"
vsn destroy --force clash >/dev/null 2>&1
expect_eq "the refused start left the node's network as it was" "$before" "$(snapshot)"
# A bridge of that name that no lease names is not ours: refused, and left
# alone (nothing of a refused start is undone on the node's objects).
node ip link add vsfb$$ type bridge
out=$(VSLICE_BRIDGE=vsfb$$ vsn run --rm --net bridge foreign -- true 2>&1)
rc=$?
check "a start on a bridge that is not ours is refused ($out)" \
	test $rc -ne 0 -a -n "$(grep -o "not ours" <<<"$out")"
check "and that bridge is still there" quiet node ip link show vsfb$$
node ip link del vsfb$$
vsn destroy --force foreign >/dev/null 2>&1
expect_eq "the refused start left the node's network as it was (2)" "$before" "$(snapshot)"

# Three slices: a (capped, publishes 8080 -> 80), b, c (no egress).
vsn run -d --net bridge --net-rate 10mbit --publish 8080:80 --publish 5353:53/udp a -- sleep 100000 >/dev/null
vsn run -d --net bridge b -- sleep 100000 >/dev/null
vsn run -d --net bridge,no-egress c -- sleep 100000 >/dev/null
ip_of() { vsn exec "$1" -- ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }
A=$(ip_of a)
B=$(ip_of b)
C=$(ip_of c)
check "each slice has its own address in 10.213.0.0/24 ($A $B $C)" \
	test -n "$A" -a -n "$B" -a -n "$C" -a "$A" != "$B" -a "$B" != "$C" -a "${A%.*}" = 10.213.0
# (old code: no addresses; later checks fail instead of tripping set -u)
A=${A:-none} B=${B:-none} C=${C:-none}
expect_eq "default route via the bridge" "default via 10.213.0.1 dev eth0" \
	"$(vsn exec a -- ip route | grep '^default' | sed 's/ proto.*//; s/ *$//')"
check "loopback is up in the slice" quiet vsn exec a -- ping -c1 -W2 127.0.0.1
check "/etc/hosts names the slice with its address" \
	test "$(vsn exec a -- awk -v ip="$A" '$1==ip{print $2}' /etc/hosts)" = a
check "/etc/resolv.conf lists the node's reachable name servers" \
	vsn exec a -- grep -q "written by vslice" /etc/resolv.conf

# Two slices talk over the bridge.
check "slice a pings slice b" quiet vsn exec a -- ping -c2 -W2 "$B"
(vsn exec b -- sh -c 'echo hello-from-b | nc -l -p 7000' >/dev/null 2>&1 &)
wait_listen 7000 tcp vsn exec b --
expect_eq "slice a reads slice b's TCP service" hello-from-b \
	"$(vsn exec a -- sh -c "nc -w 3 $B 7000 </dev/null")"

# A published port answers on the node's address, from outside and from the
# node itself; the slice's port itself is not reachable from outside.
serve() { # slice port text: a one-shot TCP server in the slice, left running
	(vsn exec "$1" -- sh -c "echo $3 | nc -l -p $2" >/dev/null 2>&1 &)
	wait_listen "$2" tcp vsn exec "$1" --
}
serve a 80 published-a
expect_eq "published 8080 answers on the node's address from outside" published-a \
	"$(outside sh -c "busybox nc -w 3 $U.1 8080 </dev/null")"
serve a 80 published-a2
expect_eq "published 8080 answers on the node's address from the node itself" published-a2 \
	"$(node sh -c "busybox nc -w 3 $U.1 8080 </dev/null")"
serve a 80 published-a3
expect_eq "published 8080 answers to another slice (hairpin through the node)" published-a3 \
	"$(vsn exec b -- sh -c "nc -w 3 $U.1 8080 </dev/null")"
vsn exec a -- sh -c 'pkill nc; true' >/dev/null 2>&1
serve b 7001 unpublished
check "an unpublished slice port is not reachable from outside" \
	test -z "$(outside sh -c "busybox nc -w 2 $B 7001 </dev/null" 2>/dev/null)"
vsn exec b -- sh -c 'pkill nc; true' >/dev/null 2>&1

# Egress: b reaches the outside (masqueraded as the node), c does not.
(outside sh -c 'echo outside-says-hi | busybox nc -l -p 7100' >/tmp/vsnet-$$.peer 2>&1 &)
wait_listen 7100 tcp outside
expect_eq "a slice reaches the outside through NAT" outside-says-hi \
	"$(vsn exec b -- sh -c "nc -w 3 $U.2 7100 </dev/null")"
outside pkill -f 'nc -l -p 7100' 2>/dev/null
(outside sh -c 'echo outside-says-hi | busybox nc -l -p 7101' >/dev/null 2>&1 &)
wait_listen 7101 tcp outside
check "a no-egress slice does not reach the outside" \
	test -z "$(vsn exec c -- sh -c "nc -w 2 $U.2 7101 </dev/null" 2>/dev/null)"
outside pkill -f 'nc -l -p 7101' 2>/dev/null
check "a no-egress slice still talks to its bridge peers" quiet vsn exec c -- ping -c1 -W2 "$B"

# Conntrack only where a rule needs it (lib/netcfg/nft.c, raw_prerouting):
# bridged slice-to-slice traffic, which br_netfilter hands to the IPv4 hooks
# (bridge-nf-call-iptables, 1 in the node's namespace above), leaves no
# connection entry on the node; traffic out of the subnet (NAT) has one.
if [ -n "$BRNF" ]; then
	conns() { node cat /proc/net/nf_conntrack 2>/dev/null | grep -c "src=$1 dst=$2 "; }
	check "bridged slice-to-slice traffic takes no connection entry on the node" \
		test "$(conns "$A" "$B")" = 0 -a "$(conns "$C" "$B")" = 0
	check "traffic that leaves the subnet does (NAT)" test "$(conns "$B" $U.2)" -gt 0
else
	echo "# no br_netfilter in this kernel: bridged traffic never meets conntrack"
fi

# The node's own services are out of reach (only published ports are in).
(node sh -c 'echo node-service | busybox nc -l -p 7200' >/dev/null 2>&1 &)
wait_listen 7200 tcp node
check "a slice cannot reach a service on the node's uplink address" \
	test -z "$(vsn exec b -- sh -c "nc -w 2 $U.1 7200 </dev/null" 2>/dev/null)"
check "nor on the bridge's address" \
	test -z "$(vsn exec b -- sh -c "nc -w 2 10.213.0.1 7200 </dev/null" 2>/dev/null)"
node pkill -f 'nc -l -p 7200' 2>/dev/null

# Spoofing, with forged packets (tests/integration/helpers/netspoof.c, run
# as the slice's root: CAP_NET_RAW in its own namespace). ARP: b tells the
# node "a's address is at my MAC"; the node's entry for a must keep a's MAC
# (one second after its last update, past the neighbour lock time). IP: b
# sends UDP to the outside with a's address as source (dropped) and then
# with its own (arrives, masqueraded): the helper works, the filter holds.
SPOOF=$VS_REPO/build/tests/integration/helpers/netspoof
[ -x "$SPOOF" ] || make -C "$VS_REPO" -s build/tests/integration/helpers/netspoof
vsn exec b -- sh -c 'cat > /bin/netspoof && chmod 755 /bin/netspoof' <"$SPOOF"
node busybox ping -c1 -W2 "$A" >/dev/null
mac_a=$(node ip neigh show "$A" dev $VSLICE_BRIDGE | awk '{print $3}')
check "the node knows a's MAC ($mac_a)" test -n "$mac_a" -a "$mac_a" = "$(vsn exec a -- cat /sys/class/net/eth0/address)"
sleep 1.5
check "the ARP forger ran" vsn exec b -- netspoof arp eth0 "$A" 10.213.0.1
expect_eq "a forged ARP reply from b claiming a's address is dropped" "$mac_a" \
	"$(node ip neigh show "$A" dev $VSLICE_BRIDGE | awk '{print $3}')"
udp_recv() { # WHERE port secs: "source:text" of each datagram received where
	# WHERE runs commands (outside, or a slice's network namespace)
	local where=$1
	shift
	"$where" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
got = set()
try:
    while True:
        d, a = s.recvfrom(512)
        got.add("%s:%s" % (a[0], d.decode(errors="replace")))
except socket.timeout:
    pass
print(" ".join(sorted(got)))' "$@"
}
udp_recv outside 7300 5 >/tmp/vsnet-udp-$$ &
wait_listen 7300 udp outside
vsn exec b -- netspoof udp "$A" $U.2 7300 spoofed
vsn exec b -- netspoof udp "$B" $U.2 7300 genuine
wait $!
expect_eq "a datagram with a forged source address is dropped (the genuine one arrives)" \
	"$U.1:genuine" "$(cat /tmp/vsnet-udp-$$)"
rm -f /tmp/vsnet-udp-$$ /tmp/vsnet-$$.peer
check "a slice cannot change its own address or link (no CAP_NET_ADMIN)" \
	test -n "$(vsn exec b -- ip addr add "$A"/24 dev eth0 2>&1 | grep -i 'not permitted')"

# The bridge's fast path (lib/netcfg/fast.c): the uncapped slices' host ends
# carry the vs_fast tc program (attached by a detached process after the
# start), a's (capped) does not; the node's map names b, c, q. It redirects
# only what the bridge would pass: b forging c's MAC and address, or its own
# MAC with c's address, reaches q neither way; b's genuine datagram does,
# through the program (q's entry counts it). bpftool reads the map by the id
# the node's fast.json names (other tests' nodes have maps of their own).
vsn run -d --net bridge q -- sleep 100000 >/dev/null
D=$(ip_of q)
D=${D:-none}
hostend() { cat "$VSLICE_ROOT/net/leases.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["leases"][sys.argv[1]]["veth"])' "$1" 2>/dev/null; }
fast_on() { vs_fast_on node "$(hostend "$1")"; }
wait_fast() {
	local n i
	for n in "$@"; do
		for i in $(seq 100); do
			fast_on "$n" && break
			[ "$i" = 100 ] && return 1
			sleep 0.1
		done
	done
}
check "b, c and q carry the fast path on their host ends" wait_fast b c q
check "a (capped) does not: its qdiscs see every frame" test -z "$(fast_on a && echo on)"
PROG=$(vs_fast_prog "$VSLICE_ROOT")
# "IFINDEX RX_PACKETS" of the node's entry for MAC ("" when none)
fast_entry() { vs_fast_entry "$VSLICE_ROOT" "$1" | awk '{print $1, $3}'; }
mac_of() { vsn exec "$1" -- cat /sys/class/net/eth0/address; }
MAC_A=$(mac_of a) MAC_B=$(mac_of b) MAC_C=$(mac_of c) MAC_D=$(mac_of q)
check "the node's map (program ${PROG:-none}) has b, c, q and not a" \
	test -n "$(fast_entry "$MAC_B")" -a -n "$(fast_entry "$MAC_C")" -a -n "$(fast_entry "$MAC_D")" -a -z "$(fast_entry "$MAC_A")"
PID_D=$(vsn show --json q | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
in_d() { nsenter --net=/proc/$PID_D/ns/net "$@"; }
before_d=$(fast_entry "$MAC_D")
udp_recv in_d 7400 4 >/tmp/vsnet-fast-$$ &
wait_listen 7400 udp in_d
vsn exec b -- netspoof eth eth0 "$MAC_C" "$C" "$MAC_D" "$D" 7400 as-c
vsn exec b -- netspoof eth eth0 "$MAC_B" "$C" "$MAC_D" "$D" 7400 ip-of-c
vsn exec b -- netspoof eth eth0 "$MAC_B" "$B" "$MAC_D" "$D" 7400 genuine
wait $!
expect_eq "b forging c's MAC and address, or c's address alone, reaches q neither way (b itself does)" \
	"$B:genuine" "$(cat /tmp/vsnet-fast-$$)"
rm -f /tmp/vsnet-fast-$$
after_d=$(fast_entry "$MAC_D")
check "b's genuine frames took the fast path (q's entry: ${before_d:-none} -> ${after_d:-none})" \
	test -n "$before_d" -a -n "$after_d" -a "${after_d#* }" -ge $((${before_d#* } + 3))
# What the fast path delivers past q's host end still counts as q's "in".
in_before=$(vsn stats --json q | python3 -c 'import json,sys; print(json.load(sys.stdin)["net"]["rx_bytes"])')
# (a receiver that ends at the sender's EOF: busybox nc -l would close at
# its own stdin's)
in_d python3 -c '
import socket
s = socket.socket()
s.bind(("0.0.0.0", 7401))
s.listen(1)
s.settimeout(20)
c, _ = s.accept()
c.settimeout(20)
n = 0
while True:
    b = c.recv(65536)
    if not b:
        break
    n += len(b)
print(n)' >/tmp/vsnet-fast-$$ &
wait_listen 7401 tcp in_d
vsn exec b -- sh -c "head -c 2000000 /dev/zero | nc -w 3 $D 7401" >/dev/null 2>&1
wait $!
in_after=$(vsn stats --json q | python3 -c 'import json,sys; print(json.load(sys.stdin)["net"]["rx_bytes"])')
check "2 MB from b to q arrive and count in q's stats ($(cat /tmp/vsnet-fast-$$) bytes received; stats $in_before -> $in_after)" \
	test "$(cat /tmp/vsnet-fast-$$)" = 2000000 -a "$((in_after - in_before))" -ge 2000000
rm -f /tmp/vsnet-fast-$$
# A restart: the entry of the last run goes with the new start (a stale one
# would send q's frames to its old, gone veth until the new program is on):
# b reaches q at once, before the fast path is back.
vsn stop q >/dev/null
vsn start q >/dev/null
check "b reaches q right after q's restart" quiet vsn exec b -- ping -c1 -W2 "$D"
check "and q gets the fast path back, on its new host end" wait_fast q
ifx_d=$(node ip -o link show "$(hostend q)" | cut -d: -f1)
check "q's entry names its new host end (ifindex ${ifx_d:-none})" test "$(fast_entry "$MAC_D" | cut -d' ' -f1)" = "$ifx_d"

# --net-rate 10mbit, both directions: a bulk TCP transfer between a (capped)
# and b (not), measured on a's veth from the host (slicectl stats: the
# frames' bytes, which is what the cap counts) over 8 s after a 1.5 s start.
# Accepted: 9.0 to 11.0 mbit/s (within 10%). One retry, for a box so loaded
# that the sender could not keep the link busy once.
# "BYTES TIME_NS": a's counter (rx_bytes|tx_bytes) and the middle of the
# time the stats call took (its JSON is parsed after the clock is read).
net_sample() { # slice counter
	local t0 t1 out
	t0=$(date +%s%N)
	out=$(vsn --json stats --window 10 "$1")
	t1=$(date +%s%N)
	echo "$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['net']['$2'])" "$out" 2>/dev/null || echo 0) $(((t0 + t1) / 2))"
}
rate_kbit() { # from to to_ip counter-on-a
	local s1 s2
	(vsn exec "$2" -- sh -c 'sleep 30 | nc -l -p 5003 > /dev/null' >/dev/null 2>&1 &)
	wait_listen 5003 tcp vsn exec "$2" --
	(vsn exec "$1" -- sh -c "timeout 12 sh -c 'cat /dev/zero | nc $3 5003'" >/dev/null 2>&1 &)
	sleep 1.5
	s1=$(net_sample a "$4")
	sleep 8
	s2=$(net_sample a "$4")
	set -- ${s1% *} ${s1#* } ${s2% *} ${s2#* } "$1" "$2"
	echo $((($3 - $1) * 8 * 1000000 / ($4 - $2 + 1)))
	vsn exec "$5" -- sh -c 'pkill nc; true' >/dev/null 2>&1
	vsn exec "$6" -- sh -c "pkill nc; pkill -f 'sleep 30'; true" >/dev/null 2>&1
}
in_range() { [ "$1" -ge 9000 ] && [ "$1" -le 11000 ]; }
for dir in "a b $B tx_bytes out-of" "b a $A rx_bytes into"; do
	set -- $dir
	k=$(rate_kbit "$1" "$2" "$3" "$4")
	in_range "$k" || k=$(rate_kbit "$1" "$2" "$3" "$4")
	check "--net-rate 10mbit caps traffic $5 the slice: $k kbit/s" in_range "$k"
done
uncapped_kbit() { # b -> c, on c's veth
	local s1 s2
	(vsn exec c -- sh -c 'sleep 30 | nc -l -p 5004 > /dev/null' >/dev/null 2>&1 &)
	wait_listen 5004 tcp vsn exec c --
	(vsn exec b -- sh -c "timeout 5 sh -c 'cat /dev/zero | nc $C 5004'" >/dev/null 2>&1 &)
	sleep 1
	s1=$(net_sample c rx_bytes)
	sleep 2
	s2=$(net_sample c rx_bytes)
	echo $(((${s2% *} - ${s1% *}) * 8 * 1000000 / (${s2#* } - ${s1#* } + 1)))
	vsn exec b -- sh -c 'pkill nc; true' >/dev/null 2>&1
	vsn exec c -- sh -c "pkill nc; pkill -f 'sleep 30'; true" >/dev/null 2>&1
}
k=$(uncapped_kbit)
check "an uncapped slice goes well past 10mbit ($k kbit/s)" test "$k" -gt 20000

stats=$(vsn stats a)
check "slicectl stats shows the cap and the traffic" \
	test -n "$(grep -E 'net.*10mbit' <<<"$stats")" -a -n "$(grep -E 'net (in|out)' <<<"$stats")"
vsn exec a -- ip link set eth0 down >/dev/null 2>&1
check "a slice cannot touch its link (no CAP_NET_ADMIN)" quiet vsn exec a -- ping -c1 -W2 "$B"
check "a slice sees none of the host side (veth, ifb)" \
	test -z "$(vsn exec a -- ip -o link | grep -E 'vsh|vsi|ifb')"

# Per-slice changes are set and map elements only (issue 13's start cost):
# another slice's start and destroy leave both tables in place (the
# kernel's table handles unchanged), and its elements go with it.
tables_h() { node nft -a list ruleset | grep '^table .* vslice'; }
elements_now() { node nft list set bridge vslice ports; node nft list map inet vslice pub_tcp; }
th=$(tables_h)
el=$(elements_now)
check "a bridged run --rm works beside running slices" quiet vsn run --rm --net bridge --publish 9090:90 d -- true
expect_eq "a slice's start and destroy change elements only: the tables stay (same handles)" "$th" "$(tables_h)"
expect_eq "its elements are gone after its destroy" "$el" "$(elements_now)"
# The bridge knows a slice's port from the start (a static entry for its
# MAC): nothing sent to it is flooded to the other ports before it speaks,
# and a slice that moved to this node is reached at once.
vsn run -d --net bridge d -- sleep 100000 >/dev/null
mac_d=$(vsn exec d -- cat /sys/class/net/eth0/address)
fdb_d=$(node bridge fdb show br $VSLICE_BRIDGE | grep "^$mac_d dev vsh")
check "the bridge has a static entry for a new slice's MAC on its port ($fdb_d)" \
	test -n "$(grep ' static' <<<"$fdb_d")"
veth_d=$(awk '{print $3}' <<<"$fdb_d")
vsn destroy --force d >/dev/null
gone=no
for i in $(seq 100); do
	node ip -br link | grep -q "^${veth_d:-vshnone}[@ ]" || { gone=yes; break; }
	sleep 0.1
done
check "a destroyed slice's veth is gone (removed in the background) while others run" test $gone = yes
# Tables changed behind vslice's back are made whole at the next change.
node nft delete table bridge vslice
vsn run -d --net bridge e -- sleep 100000 >/dev/null
mac_e=$(vsn exec e -- cat /sys/class/net/eth0/address)
check "a table deleted behind vslice's back is back after the next start, with every slice" \
	test -n "$(node nft list set bridge vslice ports | grep "$mac_e")" -a \
	-n "$(node nft list set bridge vslice ports | grep "02:76:$(printf '%02x:%02x:%02x:%02x' ${B//./ })")"
check "and slice b still reaches slice c through it" quiet vsn exec b -- ping -c1 -W2 "$C"
vsn destroy --force e >/dev/null

# The host's first steps of the set-up (lease, bridge, elements; then the
# veth, address and route) run while the launcher mounts the slice's root.
# A launcher that fails before the last step (here: its upper layer is a
# file, so the overlay mount fails) leaves no lease and no element of that
# slice, and the error said is the launcher's.
leases() { cat "$VSLICE_ROOT/net/leases.json" 2>/dev/null; }
lease_names() { leases | python3 -c 'import json,sys; print(" ".join(sorted(json.load(sys.stdin)["leases"])))' 2>/dev/null; }
th=$(tables_h)
el=$(elements_now)
names=$(lease_names)
# Three times: the launcher dies while the host sets up its network (a
# veth into a namespace that is going away; the answer to a launcher that
# is gone must not kill slicectl before it undoes its half).
fails=0
for i in 1 2 3; do
	vsn create --net bridge --publish 9191:91 f$i -- sleep 100000 >/dev/null
	rm -rf "$VSLICE_ROOT/slices/f$i/upper" && touch "$VSLICE_ROOT/slices/f$i/upper"
	out=$(vsn start f$i 2>&1)
	[ $? -ne 0 ] && grep -q "overlay" <<<"$out" && fails=$((fails + 1))
done
expect_eq "3 starts whose launcher fails before the network's last step fail, saying why" 3 $fails
expect_eq "they leave no lease" "$names" "$(lease_names)"
expect_eq "they leave no set or map element" "$el" "$(elements_now)"
expect_eq "and the tables as they were" "$th" "$(tables_h)"
check "its published port is free again" quiet vsn run --rm --net bridge --publish 9191:91 fp -- true
for i in 1 2 3; do vsn destroy --force f$i >/dev/null 2>&1; done
# A lease whose slice is gone (a crash in the middle of a destroy, the
# slice's files already removed) is released by the next bridged start,
# under the start's own lease lock: its elements and ifb go with it.
vsn run -d --net bridge --net-rate 5mbit --publish 9292:92 g -- sleep 100000 >/dev/null
mac_g=$(vsn exec g -- cat /sys/class/net/eth0/address)
ifb_g=$(leases | python3 -c 'import json,sys; print(json.load(sys.stdin)["leases"]["g"]["ifb"])')
kill -9 "$(vsn show --json g | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')"
mkdir -p "$VSLICE_ROOT/gone"
mv "$VSLICE_ROOT/slices/g" "$VSLICE_ROOT/gone/g"
check "the stale lease of g is there before the next start ($ifb_g)" test -n "$(lease_names | grep -w g)" -a -n "$ifb_g"
check "a bridged start beside a stale lease works" quiet vsn run --rm --net bridge h -- true
check "the stale lease is released by that start" test -z "$(lease_names | grep -w g)"
check "its elements are gone" test -z "$(elements_now | grep -i "${mac_g:-none}")" -a \
	-z "$(node nft list map inet vslice pub_tcp | grep -w 9292)"
check "its ifb is gone" test -z "$(node ip -br link | grep "^${ifb_g:-none} ")"
mv "$VSLICE_ROOT/gone/g" "$VSLICE_ROOT/slices/g"
vsn destroy --force g >/dev/null 2>&1
rmdir "$VSLICE_ROOT/gone"
# A fresh lease skips the lookups for devices left under its names: a
# stray device that holds its veth's name (a lost lease file) makes the
# veth's creation fail with EEXIST, and the start removes it and creates
# the veth again.
vsn run -d --net bridge k -- sleep 100000 >/dev/null
veth_k=$(leases | python3 -c 'import json,sys; print(json.load(sys.stdin)["leases"]["k"]["veth"])')
vsn destroy --force k >/dev/null 2>&1
# (its own veth goes with its namespace, in the background: wait for the name)
for _ in $(seq 100); do node ip link add "${veth_k:-vshnone}" type ifb 2>/dev/null && break; sleep 0.05; done
check "the stray device holds the name" test -n "$(node ip -br link | grep "^${veth_k:-none} ")"
check "a fresh start whose veth name a stray device holds works (${veth_k:-none})" \
	quiet vsn run --rm --net bridge k -- sh -c 'ip -o -4 addr show eth0 | grep -q inet'
# (what may still hold the name a moment is the slice's own veth, going
# with its namespace in the background: not the stray ifb)
check "the stray device is gone" test -z "$(node ip -d -o link show "${veth_k:-none}" 2>/dev/null | grep -w ifb)"
node ip link del "${veth_k:-vshnone}" 2>/dev/null

# Each start gets its /etc files and address: the host writes the files
# through the root the launcher holds open for it while the launcher goes
# on (a path through /proc/<launcher>/root would race the launcher's next
# mount namespace and could miss the slice's root); cold and from the
# warm pool (its network namespace is the pool's).
hosts_ok='ip=$(ip -4 -o addr show dev eth0 | awk "{print \$4}" | cut -d/ -f1); grep -q "^$ip[[:space:]]$(hostname)\$" /etc/hosts && grep -q "written by vslice" /etc/resolv.conf && ip route | grep -q "^default via 10.213.0.1 dev eth0"'
good=0
for i in 1 2 3 4 5 6 7 8; do
	vsn run --rm --net bridge e$i -- sh -c "$hosts_ok" >/dev/null 2>&1 && good=$((good + 1))
done
expect_eq "8 bridged starts in a row: each has its address, /etc/hosts, resolv.conf, the default route" 8 $good
POOLD=$VSLICE_ROOT/pool
settle() {
	[ ! -e "$POOLD/fill.lock" ] || flock "$POOLD/fill.lock" true
	[ ! -e "$VSLICE_ROOT/slices/.rm.lock" ] || flock "$VSLICE_ROOT/slices/.rm.lock" true
}
VSLICE_POOL=2 vsn run --rm --image busybox --net none pfill -- true >/dev/null
settle
# A filler runs after each start: wait (at most ~10 s) until one is ready.
pool_ready() {
	local i
	for i in $(seq 100); do
		settle
		ls "$POOLD"/e*/ready >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}
good=0 pooled=0
for i in 1 2 3; do
	pool_ready
	out=$(VSLICE_POOL=2 VSLICE_TRACE=1 vsn run --rm --image busybox --net bridge pe$i -- sh -c "$hosts_ok" 2>&1)
	[ $? = 0 ] && good=$((good + 1))
	grep -q ' start.kept_ns$' <<<"$out" && pooled=$((pooled + 1))
done
expect_eq "3 bridged starts from the warm pool: each has its address and files" "3 3" "$pooled $good"
settle
VSLICE_POOL=0 vsn run --rm --image busybox --net none pdrain -- true >/dev/null
settle
check "the pool is drained" test -z "$(ls "$POOLD" 2>/dev/null | grep -v lock)"

# A slice killed behind vslice's back leaves its ifb; destroy removes it all.
kill -9 "$(vsn show --json a | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')"
sleep 0.5
for n in a b c q; do vsn destroy --force $n >/dev/null; done
expect_eq "after destroy: links, routes, nft ruleset, qdiscs, ip_forward as before" "$before" "$(snapshot)"
check "no lease file left" test ! -e "$VSLICE_ROOT/net/leases.json"
expect_eq "the host's own links were never touched" "$host_links_before" \
	"$(ip -br link | awk '{print $1}' | sort | tr '\n' ' ')"
expect_eq "the host has no vslice nft table from this test" "$host_vslice_tables_before" \
	"$(nft list tables 2>/dev/null | grep -c ' vslice$')"
check "no fast path state file left" test ! -e "$VSLICE_ROOT/net/fast.json"
prog_gone() {
	local i
	for i in $(seq 100); do
		bpftool prog show id "$1" >/dev/null 2>&1 || return 0
		sleep 0.1
	done
	return 1
}
check "the fast path's program (id ${PROG:-none}) is gone with the last veth" prog_gone "${PROG:-0}"
finish
