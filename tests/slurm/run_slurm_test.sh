#!/usr/bin/env bash
# End-to-end test of launch/slurm/chai.sbatch on a one-node Slurm cluster made on this machine.
#
#   bash tests/slurm/run_slurm_test.sh [path/to/chai]     (default: $CHAI_BIN, else build/chai)
#
# As root: installs Debian's slurm-wlm and munge when missing, starts munged, slurmctld and
# slurmd from a private slurm.conf (loopback only, free ports, state under a temp dir, no
# systemd, no cgroups), then submits chai.sbatch with 2 tasks on the CPU backend:
#   1. the default launcher (srun --mpi=pmix where Slurm has PMIx, else mpirun): its --json
#      must equal the single-process output of the same command;
#   2. the mpirun fallback forced (--launcher mpirun): same tokens, and --stats must report a
#      world of 2 ranks;
#   3. a CHAI schedule that cannot be split over 2 ranks: the job must fail with one line.
# Cleans up what it started. Exit 0 pass, 1 fail, 77 skip (not root, no packages, daemons
# would not start), with the reason printed.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
chai="${1:-${CHAI_BIN:-$repo/build/chai}}"
job_timeout="${CHAI_SLURM_JOB_TIMEOUT:-180}"
fixture="$repo/tests/fixtures/opt-postln"
started=$(date +%s)
# Run inside a Slurm job (CI on a cluster), the scripts would take that job for theirs.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^SLURM_')

say() { echo "slurm-test: $*"; }
skip() { say "SKIP: $*"; exit 77; }
fail() {
  say "FAIL: $*"
  for f in "$tmp"/job*.out "$tmp"/submit*.log "$tmp"/slurmctld.log "$tmp"/slurmd.log; do
    [[ -f "$f" ]] || continue
    echo "----- $f (last 30 lines)"
    tail -n 30 "$f"
  done
  exit 1
}

[[ "$(id -u)" -eq 0 ]] || skip "needs root (installs packages, runs slurmd and munged)"
[[ -x "$chai" ]] || skip "no chai executable at '$chai' (build the chai target or pass its path)"
chai="$(cd "$(dirname "$chai")" && pwd)/$(basename "$chai")"
[[ -f "$fixture/config.json" ]] || skip "no fixture model at $fixture"

# ---- packages --------------------------------------------------------------------------------
have_all() {
  local c
  for c in slurmctld slurmd sbatch srun sinfo squeue scancel scontrol munged munge unmunge; do
    command -v "$c" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$c" >/dev/null 2>&1 || return 1
  done
}
export PATH="$PATH:/usr/sbin:/sbin"
if ! have_all; then
  command -v apt-get >/dev/null 2>&1 || skip "slurm-wlm/munge missing and no apt-get to install them"
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >/tmp/chai-slurm-apt.log 2>&1; then
    tail -n 5 /tmp/chai-slurm-apt.log
    skip "could not install slurm-wlm and munge (log: /tmp/chai-slurm-apt.log)"
  fi
  rm -f /tmp/chai-slurm-apt.log  # kept only when the install failed
  have_all || skip "slurm-wlm and munge installed but their commands are missing"
fi
command -v mpirun >/dev/null 2>&1 || skip "no mpirun (Open MPI) for the fallback launcher"
command -v python3 >/dev/null 2>&1 || skip "no python3 to compare JSON"

# ---- a private cluster -----------------------------------------------------------------------
tmp="$(mktemp -d /tmp/chai-slurm-test.XXXXXX)" || skip "cannot make a temp dir"
chmod 755 "$tmp"  # munged wants every directory above its socket searchable by all
pids=()
cleanup() {
  local p i
  if [[ -n "${SLURM_CONF:-}" && -f "$SLURM_CONF" ]]; then
    local jobs
    jobs="$(squeue -h -o %i 2>/dev/null | paste -sd, -)"  # our private controller: our jobs only
    [[ -z "$jobs" ]] || scancel --quiet "$jobs" >/dev/null 2>&1 || true
    for ((i = 0; i < 20; i++)); do [[ -z "$(squeue -h -o %i 2>/dev/null)" ]] && break; sleep 0.5; done
  fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  [[ -n "${tmp:-}" ]] && rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# munge: own key, socket, pid and log under $tmp (munged daemonizes; its pid is in the pid file).
mkdir -p "$tmp/munge"
chmod 700 "$tmp/munge"
if command -v mungekey >/dev/null 2>&1; then
  mungekey --create --keyfile="$tmp/munge/munge.key" --force >/dev/null 2>&1
else
  dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
fi
chmod 600 "$tmp/munge/munge.key"
chmod 755 "$tmp/munge"
socket="$tmp/munge/munge.socket"
munged --key-file="$tmp/munge/munge.key" --socket="$socket" --pid-file="$tmp/munge/munged.pid" \
  --log-file="$tmp/munge/munged.log" --seed-file="$tmp/munge/munged.seed" >"$tmp/munge/start.log" 2>&1 ||
  skip "munged would not start: $(tail -n 1 "$tmp/munge/start.log")"
pids+=("$(cat "$tmp/munge/munged.pid")")
munge -S "$socket" -n 2>/dev/null | unmunge -S "$socket" >/dev/null 2>&1 || skip "munge credentials do not round-trip"

# Two free TCP ports on loopback.
free_port() {
  local p
  for ((i = 0; i < 100; i++)); do
    p=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo 0
}
ctld_port="$(free_port)"
slurmd_port="$(free_port)"
[[ "$slurmd_port" != "$ctld_port" ]] || slurmd_port=$((ctld_port + 1))
host="$(hostname -s)"
cpus="$(nproc)"
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/out"
# Daemons and srun bind to the address the host name resolves to when that is loopback;
# otherwise they listen on all addresses, but every connection still goes to 127.0.0.1.
comm_params=""
case "$(getent hosts "$host" | awk '{print $1; exit}')" in 127.*|::1) comm_params="CommunicationParameters=NoInAddrAny" ;; esac
cat >"$tmp/slurm.conf" <<EOF
ClusterName=chaitest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
$comm_params
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
ReturnToService=2
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=chaitest Nodes=$host Default=YES MaxTime=30 State=UP
EOF
export SLURM_CONF="$tmp/slurm.conf"
# Keep Open MPI (the fallback launcher) on loopback too.
export OMPI_MCA_oob_tcp_if_include=lo OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_btl_vader_single_copy_mechanism=none

slurmctld -D -f "$SLURM_CONF" >"$tmp/slurmctld.stderr" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$tmp/slurmd.stderr" 2>&1 &
pids+=($!)
state=""
for ((i = 0; i < 60; i++)); do
  state="$(sinfo -h -n "$host" -o %T 2>/dev/null | head -1)"
  [[ "$state" == idle ]] && break
  for p in "${pids[@]:1}"; do kill -0 "$p" 2>/dev/null || break 2; done
  sleep 0.5
done
if [[ "$state" != idle ]]; then
  tail -n 5 "$tmp"/slurmctld.stderr "$tmp"/slurmd.stderr "$tmp"/slurmctld.log "$tmp"/slurmd.log 2>/dev/null
  skip "slurmctld/slurmd did not bring node $host to idle (state '${state:-none}')"
fi
say "cluster up: node $host ($cpus CPUs) idle after $(($(date +%s) - started)) s; srun MPI plugins: $(srun --mpi=list 2>&1 | sed -n 's/^[[:space:]]\+//p' | grep -v '^specific' | paste -sd' ' -)"

# ---- the runs --------------------------------------------------------------------------------
# shellcheck disable=SC2054  # the commas are chai's
gen=(generate --prompt-ids 1,2,3 --max-new-tokens 8)
"$chai" "${gen[@]}" --model "$fixture" --device cpu --json "$tmp/out/single.json" >"$tmp/single.log" 2>&1 ||
  fail "single-process chai failed: $(tail -n 1 "$tmp/single.log")"

# submit NAME [job options...] -- chai args: runs chai.sbatch --wait; sets rc.
submit() {
  local name="$1"
  shift
  local t0
  t0=$(date +%s)
  (cd "$tmp/out" && timeout "$job_timeout" bash "$repo/launch/slurm/chai.sbatch" --wait --partition chaitest \
    --gpus-per-node 0 --tasks-per-node 2 --time 5 --output "$tmp/job$name.out" --chai-bin "$chai" \
    --model "$fixture" --sbatch-arg "--job-name=chai-test-$name" "$@") >"$tmp/submit$name.log" 2>&1
  rc=$?
  say "job $name: exit $rc after $(($(date +%s) - t0)) s"
  [[ "$rc" -ne 124 ]] || fail "job $name did not finish within $job_timeout s"
}
same_json() {  # same_json A B [keys]: A and B hold equal JSON (only the keys given, if any)
  python3 - "$@" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
keys = sys.argv[3:]
if keys:
    a, b = ({k: d.get(k) for k in keys} for d in (a, b))
sys.exit(0 if a == b else 1)
PY
}

submit A -- "${gen[@]}" --json "$tmp/out/a.json"
[[ "$rc" -eq 0 ]] || fail "job A (default launcher) failed"
[[ -f "$tmp/out/a.json" ]] || fail "job A wrote no --json"
same_json "$tmp/out/single.json" "$tmp/out/a.json" ||
  fail "job A output $(cat "$tmp/out/a.json") differs from one process: $(cat "$tmp/out/single.json")"
launcher="$(grep -o 'launcher [a-z]*' "$tmp/jobA.out" | head -1)"
say "job A ($launcher): output equals the single-process run: $(cat "$tmp/out/a.json")"

submit B --launcher mpirun -- "${gen[@]}" --stats --json "$tmp/out/b.json"
[[ "$rc" -eq 0 ]] || fail "job B (mpirun fallback) failed"
same_json "$tmp/out/single.json" "$tmp/out/b.json" prompt_ids output_ids || fail "job B tokens differ from one process"
world="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["placement"]["world_size"])' "$tmp/out/b.json" 2>/dev/null)"
[[ "$world" == 2 ]] || fail "job B ran on '$world' ranks, not 2"
grep -q 'launcher mpirun' "$tmp/jobB.out" || fail "job B did not use the mpirun fallback"
say "job B (launcher mpirun): same tokens on a world of $world ranks"

submit C --chai-schedule 1x2 -- "${gen[@]}"
[[ "$rc" -ne 0 ]] || fail "job C (CHAI schedule 1x2 over 2 ranks) succeeded"
errors="$(grep -c 'error' "$tmp/jobC.out")"
grep -q 'cannot split .* over 2 ranks: CHAI schedule 1x2' "$tmp/jobC.out" && [[ "$errors" -eq 1 ]] ||
  fail "job C should fail with one 'cannot split' line"
say "job C: $(grep error "$tmp/jobC.out")"

say "PASS in $(($(date +%s) - started)) s"
