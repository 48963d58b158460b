# Sourced by the cluster tests (bash, root): a registry and N node managers on
# this one machine, each host in its own network namespace, all joined by a
# bridge that lives in a namespace of its own ("lan"), so no traffic and no
# interface ever touches the machine's own network:
#
#   lan netns:  bridge vsbr, veths to every host below
#   reg netns:  10.231.X.1   vslice-registry :7480, and where slicectl runs
#   nodeK:      10.231.X.(10+K)  vslice-nodemgr --name nodeK, its own
#               VSLICE_ROOT and VSLICE_CGROUP_PARENT
#
# X is derived from the pid, so two runs at once do not collide. Everything
# (daemons, slivers, cgroups, namespaces, files) is removed on exit, also
# when a test fails or is interrupted.
set -u
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../integration/lib.sh"
trap - EXIT

VC_REPO=$VS_REPO
VC_TMP=$(mktemp -d /tmp/vslice-cluster.XXXXXX)
chmod 0755 "$VC_TMP" # slivers (their own ids) must reach their node roots
# The lan namespace is the claim on an id: `ip netns add` fails when another
# run holds it, so two runs at once never share a network (a pid-derived id
# alone collided).
VC_ID=$(($$ % 200 + 20))
for _ in $(seq 200); do
	ip netns add "vc$VC_ID-lan" 2>/dev/null && break
	VC_ID=$(((VC_ID - 20 + 1) % 200 + 20))
done
VC_NET=10.231.$VC_ID
VC_PFX=vc$VC_ID
VC_NS_LAN=$VC_PFX-lan
VC_NS_REG=$VC_PFX-reg
VC_NODES=()
VC_PIDS=()
REGISTRY_URL=http://$VC_NET.1:7480
REG_DB=$VC_TMP/registry/registry.db
REGISTRY=${VSLICE_TEST_REGISTRY:-$VC_REPO/build/vslice-registry}
NODEMGR=${VSLICE_TEST_NODEMGR:-$VC_REPO/build/vslice-nodemgr}

vc_log() { echo "# $*"; }

# Run a command in the registry's namespace (slicectl, curl).
in_reg() { nsenter --net=/run/netns/$VC_NS_REG "$@"; }
# slicectl against the registry, as the user whose token is in $TOKEN.
vsc() { in_reg "$SLICECTL" --registry "$REGISTRY_URL" --token "${TOKEN:-}" "$@"; }

# Add host NAME with address $VC_NET.HOST to the lan.
vc_add_host() {
	local ns=$1 host=$2 i=${#VC_NODES[@]}
	ip netns add "$ns"
	# Made in the lan namespace, never in the host's: test_net compares the
	# host's links before and after, and a suite runs next to it.
	ip -n "$VC_NS_LAN" link add "$VC_PFX-h$host" type veth peer name eth0 netns "$ns"
	ip -n "$VC_NS_LAN" link set "$VC_PFX-h$host" master vsbr up
	ip -n "$ns" addr add "$VC_NET.$host/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" link set lo up
}

vc_setup_net() {
	[ -e "/run/netns/$VC_NS_LAN" ] || ip netns add "$VC_NS_LAN"
	ip -n "$VC_NS_LAN" link add vsbr type bridge
	ip -n "$VC_NS_LAN" link set vsbr up
	vc_add_host "$VC_NS_REG" 1
}

# Start the registry (fresh database); sets ADMIN.
vc_start_registry() {
	mkdir -p "$VC_TMP/registry"
	if [ ! -f "$REG_DB" ]; then
		ADMIN=$("$REGISTRY" init --db "$REG_DB" | tail -1)
	fi
	# nsenter execs the registry: $! is the registry itself (not a subshell).
	nsenter --net=/run/netns/$VC_NS_REG "$REGISTRY" --listen "$VC_NET.1:7480" --db "$REG_DB" "$@" \
		>>"$VC_TMP/registry.log" 2>&1 &
	VC_REG_PID=$!
	VC_PIDS+=("$VC_REG_PID")
	local i
	for i in $(seq 100); do
		in_reg curl -sf "$REGISTRY_URL/v1/health" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "registry did not come up:"
	cat "$VC_TMP/registry.log"
	return 1
}

vc_stop_registry() {
	kill_child -TERM "$VC_REG_PID"
	wait "$VC_REG_PID" 2>/dev/null
}

# vc_add_node NAME K [nodemgr options...]: host nodeK at .(10+K), node manager on it.
vc_add_node() {
	local name=$1 k=$2
	shift 2
	vc_add_host "$VC_PFX-$name" $((10 + k))
	VC_NODES+=("$name")
	mkdir -p "$VC_TMP/$name"
	vc_start_node "$name" "$@"
}

vc_start_node() {
	local name=$1
	shift
	VSLICE_ROOT=$VC_TMP/$name/root VSLICE_CGROUP_PARENT=$VC_PFX-$name \
		nsenter --net=/run/netns/$VC_PFX-$name "$NODEMGR" --registry "$REGISTRY_URL" \
		--name "$name" --token "$NODE_TOKEN" "$@" >>"$VC_TMP/$name.log" 2>&1 &
	eval "VC_NODE_PID_$name=$!"
	VC_PIDS+=("$!")
}

vc_stop_node() {
	local pid
	eval "pid=\$VC_NODE_PID_$1"
	kill_child -TERM "$pid"
	wait "$pid" 2>/dev/null
}

# slicectl on one node's own state (what is really there).
vs_node() {
	local name=$1
	shift
	VSLICE_ROOT=$VC_TMP/$name/root VSLICE_CGROUP_PARENT=$VC_PFX-$name "$SLICECTL" "$@"
}

# wait_for SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
	local t=$1 i
	shift
	for i in $(seq $((t * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

vc_cleanup() {
	local p n s d
	# only the live ones: a node stopped and started again left its old pid
	kill_child -TERM "${VC_PIDS[@]}"
	for p in "${VC_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	for n in "${VC_NODES[@]}"; do
		if [ -d "$VC_TMP/$n/root/slices" ]; then
			for s in $(vs_node "$n" list -q 2>/dev/null); do
				vs_node "$n" destroy --force "$s" >/dev/null 2>&1
			done
		fi
		VSLICE_TEST_CGROUP_PARENT=$VC_PFX-$n VSLICE_TEST_ROOT=$VC_TMP/$n/root \
			bash -c ". '$VC_REPO/tests/integration/lib.sh'; trap - EXIT; vs_cleanup"
		ip netns del "$VC_PFX-$n" 2>/dev/null
	done
	ip netns del "$VC_NS_REG" 2>/dev/null
	ip netns del "$VC_NS_LAN" 2>/dev/null
	if [ "$VS_FAIL" -ne 0 ] || [ -n "${VC_KEEP_LOGS:-}" ]; then
		for f in "$VC_TMP"/*.log; do
			echo "----- $f (last 30 lines)"
			tail -30 "$f"
		done
	fi
	case "$VC_TMP" in /tmp/vslice-cluster.*) rm -rf --one-file-system "$VC_TMP" ;; esac
	# integration/lib.sh made a root of its own that we never used.
	case "$VSLICE_ROOT" in /tmp/vslice-test.*) rm -rf --one-file-system "$VSLICE_ROOT" ;; esac
}
trap vc_cleanup EXIT
trap 'exit 130' INT TERM

# --- HTTPS node APIs (test_remote*.sh, test_migrate.sh) --------------------
# vc_pki N: a throwaway cluster CA and, for node1..nodeN, a certificate for
# its test address ($VC_NET.1k), in $VC_TMP/pki (sets P).
vc_pki() {
	local k
	P=$VC_TMP/pki
	mkdir -p "$P"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$P/ca.key" \
		-out "$P/ca.pem" -days 2 -subj "/CN=vslice test CA" 2>/dev/null
	for k in $(seq "$1"); do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$P/n$k.key" \
			-out "$P/n$k.csr" -subj "/CN=node$k" 2>/dev/null
		printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$VC_NET.1$k" >"$P/n$k.ext"
		openssl x509 -req -in "$P/n$k.csr" -CA "$P/ca.pem" -CAkey "$P/ca.key" -CAcreateserial \
			-days 2 -extfile "$P/n$k.ext" -out "$P/n$k.pem" 2>/dev/null
	done
}
# vc_enroll_node K ARGS...: nodeK enrolled: busybox built before it
# registers (the registry checks a migration's target has the image), a
# node token of its own (also in NODEK_TOKEN), vslice-nodemgr given
# --heartbeat 1s --listen 10.231.X.(10+K):7481 and ARGS.
vc_enroll_node() {
	local k=$1
	shift
	mkdir -p "$VC_TMP/node$k"
	vs_node node$k image build busybox >/dev/null 2>&1
	NODE_TOKEN=$(TOKEN=$ADMIN vsc token create --role node)
	eval "NODE${k}_TOKEN=$NODE_TOKEN"
	vc_add_node node$k "$k" --heartbeat 1s --listen "$VC_NET.1$k:7481" "$@"
}
# vc_add_tls_nodes N: node1..nodeN enrolled, each with its --listen API
# over HTTPS from vc_pki's certificates.
vc_add_tls_nodes() {
	local k
	for k in $(seq "$1"); do
		vc_enroll_node "$k" --tls-cert "$P/n$k.pem" --tls-key "$P/n$k.key" --ca "$P/ca.pem"
	done
}

# --- migrations (test_migrate*.sh) ---------------------------------------
# The registry's API through curl, as the user whose token is in $TOKEN.
vc_api() {
	local method=$1 path=$2
	shift 2
	in_reg curl -s -X "$method" -H "Authorization: Bearer ${TOKEN:-}" "$@" "$REGISTRY_URL$path"
}
# vc_migration ID: the migration object (JSON).
vc_migration() { vc_api GET "/v1/migrations/$1"; }
vc_migration_field() { vc_migration "$1" | jq -r ".$2"; }
# vc_wait_finished ID SECS: until the migration is committed or aborted.
vc_wait_finished() {
	local id=$1 t=$2 i
	for i in $(seq $((t * 5))); do
		[ "$(vc_migration_field "$id" finished)" = true ] && return 0
		sleep 0.2
	done
	return 1
}
# vc_running_on SLICE: the nodes where slicectl status shows it running.
vc_running_on() { vsc status "$1" 2>/dev/null | awk '$2 == "running" {print $1}' | sort | tr '\n' ' ' | sed 's/ $//'; }
# vc_local_running NODE SLICE: 1 when the node's own state has it running.
vc_local_running() {
	vs_node "$1" list 2>/dev/null | awk -v n="$2" '$1 == n && $2 == "running"' | grep -q . && echo 1 || echo 0
}
