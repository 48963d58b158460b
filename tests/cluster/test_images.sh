#!/usr/bin/env bash
# Images across the cluster (issue 14), as root: a registry and three node
# managers (tests/cluster/lib.sh). An OCI archive made here (busybox's
# rootfs as one layer, a marker file only this image has as another) is
# imported once at the registry; a slice on all three nodes starts from it,
# each node fetching and checking it on first use. Then: a re-import with
# new content gets a new digest that the next slice uses; a blob corrupted
# at the registry is refused by the node with both digests named; another
# user's rm and replace are refused; an upload over the cap is refused with
# 413 and leaves nothing; rm; and the API's edges (node tokens, names,
# digests, uploads in flight).
. "$(dirname "$0")/lib.sh"

W=$VC_TMP/images
mkdir -p "$W"
not() { ! "$@" 2>/dev/null; }
has() { echo "$1" | grep -q -- "$2"; }
sha() { sha256sum "$1" | cut -c1-64; }
blobs() { ls "$REG_DB.d/images/sha256" 2>/dev/null | sort | tr '\n' ' '; }
code() { vc_api "$@" -o /dev/null -w '%{http_code}'; }

# --- the OCI archives: layer 1 busybox's rootfs, layer 2 /etc/marker -------
BB=$VC_TMP/bbroot
VSLICE_ROOT=$BB "$SLICECTL" image build busybox >/dev/null
# make_oci OUT MARKER: an OCI image layout tar (oci-layout, index.json,
# blobs/sha256/...), as `skopeo copy ... oci-archive:` writes one.
make_oci() {
	python3 - "$1" "$BB/images/busybox/rootfs" "$2" <<'PY'
import hashlib, io, json, sys, tarfile
out, rootfs, marker = sys.argv[1:4]
def tar_bytes(fill):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.PAX_FORMAT) as t:
        fill(t)
    return b.getvalue()
def add_file(t, name, data, mode=0o644):
    i = tarfile.TarInfo(name); i.size = len(data); i.mode = mode; i.mtime = 1700000000
    t.addfile(i, io.BytesIO(data))
l1 = tar_bytes(lambda t: t.add(rootfs, arcname=".", recursive=True))
l2 = tar_bytes(lambda t: add_file(t, "etc/marker", (marker + "\n").encode()))
blobs = {}
def blob(data):
    d = hashlib.sha256(data).hexdigest(); blobs[d] = data
    return {"digest": "sha256:" + d, "size": len(data)}
layers = [dict(blob(l), mediaType="application/vnd.oci.image.layer.v1.tar") for l in (l1, l2)]
cfg = dict(blob(json.dumps({"architecture": "amd64", "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]}}).encode()),
    mediaType="application/vnd.oci.image.config.v1+json")
man = dict(blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": cfg, "layers": layers}).encode()), mediaType="application/vnd.oci.image.manifest.v1+json")
index = json.dumps({"schemaVersion": 2, "manifests": [man]}).encode()
with tarfile.open(out, "w") as t:
    add_file(t, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
    add_file(t, "index.json", index)
    for d, data in blobs.items():
        add_file(t, "blobs/sha256/" + d, data)
PY
}
make_oci "$W/v1.tar" "image v1"
make_oci "$W/v2.tar" "image v2"
make_oci "$W/v3.tar" "image v3"
check "three OCI archives made" test -s "$W/v1.tar" -a -s "$W/v2.tar" -a -s "$W/v3.tar"
D1=$(sha "$W/v1.tar")
D2=$(sha "$W/v2.tar")
D3=$(sha "$W/v3.tar")

# The registry takes images up to 16 MiB here (the cap is configurable).
vc_setup_net
VSLICE_REGISTRY_IMAGE_MAX=16M vc_start_registry --heartbeat 1s
check "registry starts" test -n "$ADMIN"
TOKEN=$ADMIN
NODE_TOKEN=$(vsc token create --role node)
ALICE=$(vsc user create alice)
BOB=$(vsc user create bob)
# node2's image cache holds at most 1 byte beyond what its slices use.
for k in 1 2 3; do
	cache=8G
	[ $k = 2 ] && cache=1
	VSLICE_NODE_IMAGE_CACHE=$cache vc_add_node node$k $k --heartbeat 1s
	[ $k -lt 3 ] && NODE_TOKEN=$(vsc token create --role node)
done
NODE3_TOKEN=$NODE_TOKEN
nodes_ready() { [ "$(vsc nodes | awk '$2 == "ready"' | wc -l)" -eq 3 ]; }
check "three nodes are ready" wait_for 30 nodes_ready

TOKEN=$ALICE
# --- before: no node has it, nor the registry ---------------------------------
out=$(vsc run --rm --nodes 3 --image web pre -- /bin/true 2>&1)
expect_eq "run --image of an image nobody has: 125" 125 "$?"
check "... naming .image and how to import it" has "$out" '\.image: 3 slivers wanted, 0 ready nodes have image "web".*slicectl image import web'

# --- import once, run on all three nodes --------------------------------------
out=$(vsc image import web "$W/v1.tar" 2>&1)
expect_eq "image import in cluster mode exits 0" 0 "$?"
expect_eq "... and prints the name and the archive's sha256" "web sha256:$D1" "$out"
expect_eq "the registry stores it by content" "$D1 " "$(blobs)"
check "... byte for byte" cmp -s "$W/v1.tar" "$REG_DB.d/images/sha256/$D1"
list=$(vsc image list)
echo "$list"
check "image list shows it with its owner" has "$list" "^web  *sha256:${D1:0:12}.* alice$"
check "bob lists it too (images are cluster-wide)" has "$(TOKEN=$BOB vsc image list -q)" '^web$'

out=$(vsc run --rm --nodes 3 --image web one -- cat /etc/marker 2>&1)
rc=$?
echo "$out"
expect_eq "a slice on all three nodes runs from it" 0 "$rc"
expect_eq "... every sliver sees the file only that image has" 3 "$(echo "$out" | grep -c '| image v1$')"
for k in 1 2 3; do
	check "node$k fetched it once, cached by digest" has "$(vs_node node$k image list -q)" "^sha256-${D1:0:52}$"
	check "node$k left no temp file" not ls "$VC_TMP/node$k/root/images/".tmp-fetch-*
done

# --- re-import: the name follows the new content ------------------------------
out=$(vsc image import web "$W/v2.tar" 2>&1)
expect_eq "a re-import without --replace: 125" 125 "$?"
check "... says it is there and how to replace it" has "$out" 'already at the registry.*--replace'
out=$(TOKEN=$BOB vsc image import --replace web "$W/v2.tar" 2>&1)
expect_eq "bob cannot replace alice's image" 125 "$?"
check "... owned by alice" has "$out" 'owned by alice'
vsc create --node node1 --image web holder -- sleep 600 >/dev/null
out=$(vsc image import --replace web "$W/v2.tar" 2>&1)
expect_eq "no replace while a slice names it: 125" 125 "$?"
check "... naming the slice" has "$out" 'in use by slice holder'
vsc destroy holder >/dev/null
out=$(vsc image import --replace web "$W/v2.tar" 2>&1)
expect_eq "alice replaces it" "web sha256:$D2" "$out"
expect_eq "the old blob is gone, the new one stored" "$D2 " "$(blobs)"
out=$(vsc run --rm --nodes 3 --image web two -- cat /etc/marker 2>&1)
expect_eq "a new slice gets the new content on every node" 3 "$(echo "$out" | grep -c '| image v2$')"
check "node2 fetched the new digest" has "$(vs_node node2 image list -q)" "^sha256-${D2:0:52}$"
check "... and, over its cache bound, removed the old one no slice uses" \
	not has "$(vs_node node2 image list -q)" "^sha256-${D1:0:52}$"
check "node1 (bound 8G) keeps both" has "$(vs_node node1 image list -q)" "^sha256-${D1:0:52}$"

# --- a corrupted blob is never run ---------------------------------------------
vsc image import bad "$W/v3.tar" >/dev/null
python3 - "$REG_DB.d/images/sha256/$D3" <<'PY'
import sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(1000); b = f.read(1); f.seek(1000); f.write(bytes([b[0] ^ 0xff]))
PY
check "a byte of bad's blob flipped at the registry" test -f "$REG_DB.d/images/sha256/$D3" -a "$(sha "$REG_DB.d/images/sha256/$D3")" != "$D3"
vsc create --node node1 --image bad bad1 -- cat /etc/marker >/dev/null
bad_failed() { vsc status bad1 2>&1 | grep -q 'checksum mismatch'; }
check "the sliver fails with the checksum message" wait_for 30 bad_failed
st=$(vsc status bad1 2>&1)
echo "$st"
check "... naming the image and the registry's digest" has "$st" "image bad: checksum mismatch: the registry names sha256:$D3"
check "... and the digest of the bytes fetched" has "$st" "the bytes fetched are sha256:$(sha "$REG_DB.d/images/sha256/$D3")"
check "no sliver of it exists on node1" not has "$(vs_node node1 list -q)" '^bad1$'
check "nothing of it stays on node1" not has "$(vs_node node1 image list -q)" "${D3:0:52}"
check "... no temp file either" not ls "$VC_TMP/node1/root/images/".tmp-fetch-*

# --- a slow fetch does not hold the node: heartbeats, other slivers go on ------
# The test hook delays node3's image fetches by 20 s (a slow link); before
# the fetch ran in the main loop, so node3's heartbeats stopped (lost after
# 3 s) and no other sliver of node3 was made until it was over.
vc_stop_node node3
NODE_TOKEN=$NODE3_TOKEN VSLICE_FAULT=nodemgr.fetch_delay:20000 vc_start_node node3 --heartbeat 1s
node3_ready() { vsc nodes | awk '$1 == "node3" && $2 == "ready"' | grep -q .; }
check "node3 is back, its fetches slowed by 20 s (a test hook)" wait_for 30 node3_ready
vsc image import slow "$W/v3.tar" >/dev/null # node3 never had this digest
vsc create --node node3 --image slow slowimg -- sh -c 'cat /etc/marker; sleep 600' >/dev/null
vsc create --node node3 quick -- sleep 600 >/dev/null
on3() { vs_node node3 list 2>/dev/null | awk -v n="$1" '$1 == n' | grep -q running; }
check "while node3 fetches slow's image, another sliver starts there" wait_for 10 on3 quick
check "... before that fetch is over" not has "$(vs_node node3 list -q)" '^slowimg$'
sleep 4 # past the registry's lost window: 3 heartbeats of 1 s
check "... and node3 stays ready meanwhile (its heartbeats go on)" node3_ready
check "the fetch ends and slowimg runs from it" wait_for 60 on3 slowimg
# running is not yet printed: PID 1 copies the workload's output to the log
# a moment later (one run in nine read the log before that)
printed3() { vs_node node3 logs "$1" 2>&1 | grep -q -- "$2"; }
check "... with that image's file" wait_for 20 printed3 slowimg 'image v3'
check "... fetched in the background, logged" grep -q "image slow: fetched sha256:$D3, imported as" "$VC_TMP/node3.log"
check "... no temp file left" not ls "$VC_TMP/node3/root/images/".tmp-fetch-*
vsc destroy slowimg quick >/dev/null
vsc image rm slow >/dev/null
vc_stop_node node3
NODE_TOKEN=$NODE3_TOKEN vc_start_node node3 --heartbeat 1s
check "node3 back without the hook" wait_for 30 node3_ready

# --- rm: owner or admin, never while a slice names it --------------------------
out=$(vsc image rm bad 2>&1)
expect_eq "rm of an image a slice names: 125" 125 "$?"
check "... naming the slice" has "$out" 'in use by slice bad1'
vsc destroy bad1 >/dev/null
out=$(TOKEN=$BOB vsc image rm web 2>&1)
expect_eq "bob cannot rm alice's image" 125 "$?"
check "... owned by alice" has "$out" 'owned by alice'
check "... and it stays" has "$(vsc image list -q)" '^web$'
check "alice removes hers" vsc image rm web bad
expect_eq "... their blobs go with them" "" "$(blobs)"
expect_eq "... and the list is empty" "" "$(vsc image list -q)"
out=$(vsc run --rm --nodes 3 --image web gone -- /bin/true 2>&1)
expect_eq "a removed image places nowhere again" 125 "$?"
TOKEN=$ADMIN vsc image import web "$W/v1.tar" >/dev/null
vsc image import mine "$W/v1.tar" >/dev/null
admin_rm() { TOKEN=$ADMIN vsc image rm "$@" >/dev/null; }
check "an admin may rm a user's image" admin_rm mine
check "... and its own" admin_rm web

# --- the cap: 413 and nothing stored ---------------------------------------------
mkdir -p "$W/big/etc"
head -c $((17 << 20)) /dev/urandom >"$W/big/etc/blob"
tar -C "$W/big" -cf "$W/big.tar" .
out=$(vsc image import big "$W/big.tar" 2>&1)
expect_eq "an upload over the cap: 125" 125 "$?"
check "... refused with 413, naming the cap" has "$out" 'larger than the registry.s 16777216'
expect_eq "... through the API too" 413 "$(code PUT /v1/images/big -H 'Content-Type: application/octet-stream' --data-binary @"$W/big.tar")"
expect_eq "a chunked body longer than it declared: 413" 413 \
	"$(head -c 4096 /dev/zero | code PUT /v1/images/liar -H 'X-Vslice-Size: 100' -H 'Transfer-Encoding: chunked' --data-binary @-)"
expect_eq "a size that Content-Length contradicts: 400" 400 \
	"$(code PUT /v1/images/two -H 'X-Vslice-Size: 5' --data-binary 1234)"
expect_eq "?check=1 answers the cap before any byte: 413" 413 \
	"$(code PUT '/v1/images/big?check=1' -H "X-Vslice-Size: $(stat -c %s "$W/big.tar")" --data-binary '')"
expect_eq "... and 204 for what would be taken" 204 \
	"$(code PUT '/v1/images/small?check=1' -H 'X-Vslice-Size: 100' --data-binary '')"
expect_eq "an upload that declares no size: 411" 411 \
	"$(head -c 100 /dev/zero | code PUT /v1/images/nosize -H 'Transfer-Encoding: chunked' --data-binary @-)"
expect_eq "nothing stored" "" "$(blobs)"
expect_eq "no temp file left" "" "$(ls "$REG_DB.d/tmp")"
expect_eq "no row" "" "$(vsc image list -q)"

# --- who may call what, and names that try to leave ---------------------------
vsc image import web "$W/v1.tar" >/dev/null
expect_eq "a node token cannot upload" 403 "$(TOKEN=$NODE3_TOKEN code PUT /v1/images/evil --data-binary @"$W/v1.tar")"
expect_eq "a user cannot download a blob" 403 "$(code GET /v1/images/sha256:$D1)"
expect_eq "a node token can" 200 "$(TOKEN=$NODE3_TOKEN code GET /v1/images/sha256:$D1)"
c=$(TOKEN=$NODE3_TOKEN code GET /v1/images/sha256:..%2F..%2F..%2Fregistry.db)
check "a digest with ../: refused (got $c)" test "$c" = 400 -o "$c" = 404
expect_eq "a digest that is not hex: 400" 400 "$(TOKEN=$NODE3_TOKEN code GET /v1/images/sha256:ABC)"
expect_eq "a blob no image has: 404" 404 "$(TOKEN=$NODE3_TOKEN code GET /v1/images/sha256:$(printf '%064d' 0))"
c=$(code PUT "/v1/images/..%2F..%2Fregistry.db" --data-binary @"$W/v1.tar")
check "an image name with ../: refused (got $c)" test "$c" = 400 -o "$c" = 404
expect_eq "names of the nodes' caches (sha256-...) are refused" 400 "$(code PUT /v1/images/sha256-${D1:0:52} --data-binary @"$W/v1.tar")"
expect_eq "busybox is built in, not uploaded" 400 "$(code PUT /v1/images/busybox --data-binary @"$W/v1.tar")"
expect_eq "the registry's files are untouched" "$D1 " "$(blobs)"
check "the database is still there" test -s "$REG_DB"

# --- uploads in flight: 2 per user, 4 in all, their room released when they end --
# slow_upload TOKEN NAME: a chunked PUT declaring 1 MiB that sends 2 bytes and
# waits (abuse_client.py trickle); SLOW: their pids. An admitted upload has
# its temp file in the registry's tmp dir: the probes wait for those, so
# they never race the slow uploads' own admission.
SLOW=()
slow_upload() {
	nsenter --net=/run/netns/$VC_NS_REG python3 "$VC_REPO/tests/cluster/abuse_client.py" trickle "$VC_NET.1" 7480 "$1" "/v1/images/$2" \
		1048576 120 >"$W/slow-$2.out" 2>&1 &
	SLOW+=($!)
}
uploads_running() { [ "$(ls "$REG_DB.d/tmp" | wc -l)" = "$1" ]; }
slow_report() {
	echo "# temp files: $(ls "$REG_DB.d/tmp" | tr '\n' ' ')"
	head -n3 "$W"/slow-*.out | sed 's/^/# /'
}
# A probe declares 5 bytes and sends 4: admitted, it is refused (400) and
# leaves nothing.
probe() { code PUT "/v1/images/$1" -H 'X-Vslice-Size: 5' -H 'Transfer-Encoding: chunked' --data-binary 1234; }
slow_upload "$ALICE" slow1
slow_upload "$ALICE" slow2
check "two slow uploads of alice's are admitted (their temp files)" wait_for 20 uploads_running 2 || slow_report
c=$(probe third)
expect_eq "a user's third upload while two of theirs run: 429" 429 "$c"
[ "$c" = 429 ] || slow_report
slow_upload "$BOB" slow3
slow_upload "$BOB" slow4
check "two of bob's too" wait_for 20 uploads_running 4 || slow_report
c=$(TOKEN=$ADMIN probe fifth)
expect_eq "a fifth upload while four run: 503" 503 "$c"
[ "$c" = 503 ] || slow_report
# Two clients die mid-upload, two end their bodies short of what they declared.
kill "${SLOW[0]}" "${SLOW[1]}" 2>/dev/null
kill -USR1 "${SLOW[2]}" "${SLOW[3]}" 2>/dev/null
wait "${SLOW[@]}" 2>/dev/null
expect_eq "... the short bodies are refused" "status 400 status 400" \
	"$(cat "$W/slow-slow3.out" "$W/slow-slow4.out" | grep status | tr '\n' ' ' | sed 's/ $//')"
import_ok() { vsc image import --replace web "$W/v2.tar" >/dev/null; }
check "once they are gone, uploads are taken again" wait_for 20 import_ok
expect_eq "... and the dropped ones left no temp file" "" "$(ls "$REG_DB.d/tmp")"
check "... nor a row" not has "$(vsc image list -q)" '^slow'

# --- what a crash leaves is swept when the registry opens the database ------------
head -c 10 /dev/zero >"$REG_DB.d/images/sha256/$(printf '%064d' 0)"
head -c 10 /dev/zero >"$REG_DB.d/tmp/image-crashed"
vc_stop_registry
vc_start_registry --heartbeat 1s
expect_eq "a restart removes blobs without a row, keeps the others" "$D2 " "$(blobs)"
expect_eq "... and image uploads' temp files" "" "$(ls "$REG_DB.d/tmp")"
check "... the image is still there" has "$(vsc image list -q)" '^web$'

finish
