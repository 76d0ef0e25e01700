#!/usr/bin/env bash
# Device calls 1..N-1: keep the data part carried by this call in a folder OUTSIDE the checkout, so that it
# survives the next call (the machine stays warm 30 s between calls; the checkout is replaced each call).
#
#   bash scripts/device/stash.sh K        # carry build/device/cifar10.partKofN and build/device/manifest.json
#
# Env: STASH_DIR (default /root/cifar-stash), PARTS_DIR (default <repo>/build/device).
# Copies the part and the manifest into STASH_DIR, checks the part's size and SHA-256 against the manifest,
# lists what the stash holds, and exits within seconds. A mismatch exits non-zero.
set -euo pipefail

K=${1:?usage: stash.sh K  (the index of the part this call carries)}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PARTS_DIR=${PARTS_DIR:-$ROOT/build/device}
STASH_DIR=${STASH_DIR:-/root/cifar-stash}
PY=${PYTHON:-python3}

mkdir -p "$STASH_DIR"
[[ -f "$PARTS_DIR/manifest.json" ]] || { echo "stash: $PARTS_DIR/manifest.json not carried" >&2; exit 2; }
cp "$PARTS_DIR/manifest.json" "$STASH_DIR/manifest.json.tmp" && mv "$STASH_DIR/manifest.json.tmp" "$STASH_DIR/manifest.json"

"$PY" - "$K" "$PARTS_DIR" "$STASH_DIR" <<'EOF'
import hashlib, json, os, shutil, sys, time
k, parts_dir, stash = int(sys.argv[1]), sys.argv[2], sys.argv[3]
started = time.time()
manifest = json.load(open(os.path.join(stash, "manifest.json")))
parts = {p["index"]: p for p in manifest["parts"]}
if k not in parts:
    sys.exit(f"stash: part {k} is not in the manifest (parts 1..{len(parts)})")
part = parts[k]
src, dst = os.path.join(parts_dir, part["name"]), os.path.join(stash, part["name"])
if not os.path.isfile(src):
    sys.exit(f"stash: {src} was not carried; name it in the call's carry")
tmp = dst + ".tmp"
shutil.copyfile(src, tmp)
digest = hashlib.sha256()
with open(tmp, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
        digest.update(chunk)
size = os.path.getsize(tmp)
if size != part["size"] or digest.hexdigest() != part["sha256"]:
    os.remove(tmp)
    sys.exit(f"stash: {part['name']} is damaged: {size} bytes sha256 {digest.hexdigest()}, "
             f"manifest says {part['size']} bytes sha256 {part['sha256']}")
os.replace(tmp, dst)
print(f"stash: {part['name']} ({size:,} bytes) verified and kept in {stash} in {time.time() - started:.1f} s")
for p in manifest["parts"]:
    path = os.path.join(stash, p["name"])
    state = f"{os.path.getsize(path):,} bytes" if os.path.isfile(path) else "not stashed yet"
    print(f"  {p['name']}: {state}")
EOF
df -h "$STASH_DIR" | tail -1
