#!/usr/bin/env bash
# One prepared run on a lent GPU machine (16 cores, one H200; nothing outside it reachable), for the
# two things this 2-core, GPU-less workplace cannot show (issue 15 and the agent's NVML path):
#   1. the agent's NVML path on the real GPU, read only (no clock, power limit or mode is set):
#      the sampling bench against the real libnvidia-ml, idle and under a known bf16 load, then the
#      agent process itself (power-only) publishing POWER to a real nats-server;
#   2. the analyzer at fleet scale with 16 cores: 1/2/4/8 pinned replicas, the 10,000-GPU backlog,
#      real time at 10,000 GPUs, the drain ratio.
# It expects the toolchain under .dev/ (node, nats-server, influxd as .xz, node_modules as .tar.xz,
# made by bench/device/pack.sh) and writes five logs to $OUT (or ./device-out): steps.log,
# nvml-sampling.txt, agent.log, power.jsonl, fleet.txt.
set -u
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT" /tmp/jsbin
t0=$SECONDS
say() { echo "[$((SECONDS - t0)) s] $*" | tee -a "$OUT/steps.log"; }
for b in node nats-server influxd; do [ -x /tmp/jsbin/$b ] || xz -dc .dev/$b.xz > /tmp/jsbin/$b; chmod +x /tmp/jsbin/$b; done
[ -d node_modules ] || tar -xJf .dev/node_modules.tar.xz
export PATH=/tmp/jsbin:$PATH
say "toolchain: node $(node -v), $(nats-server --version), $(influxd version 2>&1 | head -1); $(nproc) cores"
nvidia-smi --query-gpu=name,driver_version,power.draw,clocks.sm,clocks.max.sm --format=csv >> "$OUT/steps.log" 2>&1
LIB=$(ldconfig -p | awk '/libnvidia-ml.so.1 /{print $NF; exit}')
LIB=${LIB:-/usr/local/nvidia/lib64/libnvidia-ml.so.1}
say "NVML library: $LIB"

# 1a. sampling through koffi, 20 s at 10 Hz; a 7-s bf16 load from 6 s in.
(sleep 6; timeout 20 python3 bench/device/gpu-load.py 7 >> "$OUT/steps.log" 2>&1) &
timeout 60 node --import=tsx bench/run.ts agent-sampling --library "$LIB" --seconds 20 > "$OUT/nvml-sampling.txt" 2>&1
say "agent-sampling (real NVML): exit $?"
timeout 60 node --import=tsx bench/run.ts agent-sampling --library "$LIB" --seconds 5 --calls async >> "$OUT/nvml-sampling.txt" 2>&1
say "agent-sampling (real NVML, async calls): exit $?"
wait

# 1b. the agent process, power-only, NVML source, to a real nats-server; POWER read back by `tail`.
rm -rf /tmp/js && nats-server -a 127.0.0.1 -p 14222 -js -sd /tmp/js >> "$OUT/agent.log" 2>&1 &
NATS=$!
sleep 1
node bin/joulestream.mjs agent --nats nats://127.0.0.1:14222 --source nvml --nvml-library "$LIB" --node-id h200 >> "$OUT/agent.log" 2>&1 &
AGENT=$!
(sleep 3; timeout 20 python3 bench/device/gpu-load.py 4 >> "$OUT/steps.log" 2>&1) &
timeout 20 node bin/joulestream.mjs tail 'power.v1.>' --nats nats://127.0.0.1:14222 --count 8 --timeout 10 > "$OUT/power.jsonl" 2>&1
say "agent (nvml) → POWER: $(wc -l < "$OUT/power.jsonl") messages read back"
ps -o rss=,time= -p $AGENT >> "$OUT/agent.log"
kill -TERM $AGENT; wait $AGENT; say "agent stopped: exit $?"
kill $NATS; wait

# 2. the analyzer at fleet scale (each phase bounded; a later one runs even if an earlier failed).
fleet() { local name=$1 limit=$2; shift 2; timeout "$limit" node --import=tsx bench/run.ts analyzer-fleet "$@" >> "$OUT/fleet.txt" 2>&1; say "analyzer-fleet $name: exit $?"; }
fleet replicas 200 --only replicas --replicas 1,2,4,8 --partitions 8 --drain-nodes 1250 --drain-seconds 20
fleet backlog 240 --only backlog
fleet realtime 90 --only realtime --realtime 1250 --seconds 20
fleet drain 60 --only drain
say "done"
