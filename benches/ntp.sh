#!/usr/bin/env bash
# Offset accuracy and per-probe CPU cost of the exporter's NTP probe vs
# ntpdig (Debian ntpsec-ntpdig), both against the same chronyd in one run.
#
# chronyd serves at 169.254.169.123 inside a network namespace this script
# creates (nothing leaves the machine), shifted +30 s with libfaketime and run
# with -x (it never touches a clock). Both clients should measure 30 s.
#
# Usage: benches/ntp.sh [N]     (N queries per client, default 50)
# Needs: root (unshare -n), chrony, faketime, ntpsec-ntpdig, curl, a built
# release binary (cargo build --release).
set -euo pipefail
N="${1:-50}"
cd "$(dirname "$0")/.."
BIN="${BIN:-$PWD/target/release/aws-credentials-exporter}"
[ -x "$BIN" ] || cargo build --release --quiet
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export BIN N WORK

exec unshare -n bash -euo pipefail -c '
cd "$WORK"
ip link set lo up
ip addr add 169.254.169.123/32 dev lo
FAKETIME_LIB=$(ls /usr/lib/*/faketime/libfaketime.so.1 | head -n1)
cat > chrony.conf <<CONF
local stratum 8
allow
cmdport 0
bindcmdaddress /
pidfile $WORK/chronyd.pid
CONF
env LD_PRELOAD=$FAKETIME_LIB FAKETIME=+30s chronyd -d -x -u root -f $WORK/chrony.conf > chronyd.log 2>&1 &
CHRONYD=$!
sleep 0.5

# Exporter: every scrape runs one NTP probe (min interval 0); IMDS is turned off.
AWS_EC2_METADATA_DISABLED=true "$BIN" --web.listen-address 127.0.0.1:10169 --ntp.min-interval 0s --log.level warn > exporter.log 2>&1 &
EXP=$!
for i in $(seq 50); do curl -sf --noproxy "*" http://127.0.0.1:10169/metrics > /dev/null && break; sleep 0.1; done
cpu() { awk "{print \$14 + \$15}" /proc/$1/stat; }
before=$(cpu $EXP)
: > ours.txt
for i in $(seq "$N"); do
  curl -sf --noproxy "*" http://127.0.0.1:10169/metrics | awk -F" " "/^aws_clock_offset_seconds/ {print \$2}" >> ours.txt
done
after=$(cpu $EXP)
kill $EXP; wait $EXP || true
echo "$before $after" > ours_cpu.txt

# ntpdig: one process per query, as a cron job or a shell check would run it.
: > theirs.txt
start=$(python3 -c "import os; t=os.times(); print(t.children_user + t.children_system)")
python3 - "$N" <<PY
import json, os, subprocess, sys
n = int(sys.argv[1])
with open("theirs.txt", "w") as out:
    for _ in range(n):
        r = subprocess.run(["ntpdig", "-j", "-t", "1", "169.254.169.123"], capture_output=True, text=True)
        out.write(str(json.loads(r.stdout)["offset"]) + "\n")
t = os.times()
with open("theirs_cpu.txt", "w") as f:
    f.write(str(t.children_user + t.children_system))
PY
kill $CHRONYD; wait $CHRONYD || true

python3 - "$N" <<PY
import statistics, sys, os
n = int(sys.argv[1])
hz = os.sysconf("SC_CLK_TCK")
ours = [-float(x) for x in open("ours.txt") if x.strip()]     # ours is local-minus-server
theirs = [float(x) for x in open("theirs.txt") if x.strip()]  # ntpdig is server-minus-local
b, a = map(float, open("ours_cpu.txt").read().split())
ours_cpu = (a - b) / hz / n
theirs_cpu = float(open("theirs_cpu.txt").read()) / n
def err(xs): return statistics.mean(abs(x - 30.0) for x in xs)
print(f"queries per client: {n} (ours: {len(ours)}, ntpdig: {len(theirs)})")
print(f"| client | mean abs error vs +30 s | stdev | CPU per probe |")
print(f"|---|---|---|---|")
print(f"| aws-credentials-exporter (scrape incl. HTTP + render) | {err(ours)*1e6:.0f} us | {statistics.pstdev(ours)*1e6:.0f} us | {ours_cpu*1e3:.3f} ms |")
print(f"| ntpdig -j (one process per query) | {err(theirs)*1e6:.0f} us | {statistics.pstdev(theirs)*1e6:.0f} us | {theirs_cpu*1e3:.3f} ms |")
if ours_cpu > 0:
    cpu = f"{theirs_cpu / ours_cpu:.1f}x"
else:
    cpu = f"over {theirs_cpu * n * hz:.0f}x (the exporter used less than one {1000 / hz:.0f} ms clock tick in {n} probes)"
print(f"CPU ratio ntpdig/exporter: {cpu}; accuracy ratio (ntpdig error / exporter error): {err(theirs)/max(err(ours),1e-9):.2f}")
assert len(ours) == n and len(theirs) == n, "every query answered"
PY
'
