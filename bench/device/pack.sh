#!/usr/bin/env bash
# Packs what bench/device/h200.sh needs on a machine that can fetch nothing: this machine's node,
# nats-server and influxd (xz), and node_modules without what the benches never load (tar.xz),
# into .dev/ (ignored by git). About 40 MB.
set -eu
cd "$(dirname "$0")/../.."
mkdir -p .dev
for b in node nats-server influxd; do
  p=$(PATH=$PATH:/usr/sbin command -v "$b") || { echo "pack: $b not found" >&2; exit 1; }
  xz -T0 -6 -c "$p" > ".dev/$b.xz"
done
tar -cf - --exclude=node_modules/typescript --exclude=node_modules/openai --exclude=node_modules/@types \
  --exclude=node_modules/vega --exclude=node_modules/vega-lite node_modules | xz -T0 -6 > .dev/node_modules.tar.xz
du -sh .dev
