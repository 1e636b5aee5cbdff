#!/usr/bin/env bash
# Tests of launch/mpirun.sh and launch/slurm/chai.sbatch that need neither root nor Slurm:
# the split check, the mpirun command lines (through a stub mpirun), the job's srun/mpirun
# calls for one and several nodes (through stub srun/scontrol), and, where mpirun and a
# built chai exist, a real 2-rank run that must print what one process prints.
#
#   bash tests/slurm/launch_scripts_test.sh [path/to/chai]   (default: $CHAI_BIN, else build/chai)
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
chai="${1:-${CHAI_BIN:-$repo/build/chai}}"
mpirun_sh="$repo/launch/mpirun.sh"
sbatch_sh="$repo/launch/slurm/chai.sbatch"
tmp="$(mktemp -d /tmp/chai-launch-test.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
# Run inside a Slurm job (CI on a cluster), the scripts would take that job for theirs.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^SLURM_')

ok() { passed=$((passed + 1)); echo "ok: $*"; }
bad() { failed=$((failed + 1)); echo "FAILED: $*"; }
# expect NAME WANT_RC CMD...: runs CMD, output in $out; checks the exit code.
expect() {
  local name="$1" want="$2"
  shift 2
  out="$("$@" 2>&1)"
  local rc=$?
  if [[ "$rc" -eq "$want" ]]; then ok "$name"; else bad "$name: exit $rc, wanted $want; output: $out"; fi
}
contains() {  # contains NAME NEEDLE: $out has NEEDLE
  if grep -qF -- "$2" <<<"$out"; then ok "$1"; else bad "$1: no '$2' in: $out"; fi
}
lacks() {
  if grep -qF -- "$2" <<<"$out"; then bad "$1: unexpected '$2' in: $out"; else ok "$1"; fi
}

# Stubs: mpirun prints its arguments and the NCCL_NVLS_ENABLE it sees; srun and scontrol
# play a two-node allocation.
mkdir -p "$tmp/bin"
cat >"$tmp/bin/mpirun" <<'EOF'
#!/usr/bin/env bash
echo "MPIRUN NVLS=${NCCL_NVLS_ENABLE:-unset} $*" | tee -a "${STUB_LOG:-/dev/null}"
EOF
cat >"$tmp/bin/srun" <<'EOF'
#!/usr/bin/env bash
if [[ "$*" == "--mpi=list" ]]; then printf 'MPI plugin types are...\n\t%s\n' ${STUB_MPI_PLUGINS:-pmix none}; exit 0; fi
echo "SRUN NVLS=${NCCL_NVLS_ENABLE:-unset} $*" >>"$STUB_LOG"
[[ -z "${STUB_FAIL_NODE:-}" || "$*" != *"--nodelist=$STUB_FAIL_NODE "* ]]
EOF
cat >"$tmp/bin/scontrol" <<'EOF'
#!/usr/bin/env bash
[[ "$1 $2" == "show hostnames" ]] && tr ',' '\n' <<<"$STUB_NODES"
exit 0
EOF
chmod +x "$tmp/bin/"*
fake_chai="$tmp/bin/chai"
printf '#!/bin/sh\nexit 0\n' >"$fake_chai"
chmod +x "$fake_chai"
gqa="$repo/tests/fixtures/llama-gqa"

# ---- mpirun.sh: the split check --------------------------------------------------------------
expect "check: llama-gqa splits over 2" 0 bash "$mpirun_sh" --check-only --np 2 -- generate --model "$gqa"
expect "check: llama-gqa does not split over 4" 3 bash "$mpirun_sh" --check-only --np 4 -- generate --model "$gqa"
contains "check: one line naming the KV heads" "num_key_value_heads (2) is not divisible by 4; rank counts that work: 1, 2"
[[ "$(wc -l <<<"$out")" -eq 1 ]] && ok "check: one line" || bad "check: more than one line: $out"
expect "check: more ranks than heads" 3 bash "$mpirun_sh" --check-only --np 16 -- generate --model="$gqa"
contains "check: more ranks than heads message" "more ranks than attention heads (8)"
expect "check: a model path that is not there" 2 bash "$mpirun_sh" --check-only --np 2 -- generate --model /nonexistent/model
contains "check: names the path" "--model: no such file or directory: /nonexistent/model"
expect "check: config file with --random-weights" 3 bash "$mpirun_sh" --check-only --np 5 -- \
  generate --model "$repo/configs/models/llama-7b.json" --random-weights
contains "check: llama-7b over 5" "num_attention_heads (32) is not divisible by 5"
expect "check: CHAI schedule file" 3 bash "$mpirun_sh" --check-only --np 8 -- \
  generate --model "$repo/configs/models/llama-7b.json" --random-weights --chai "$repo/configs/chai/llama-7b.json"
contains "check: schedule layer named" "layer 18 has 4 clusters, fewer than the 8 ranks"
expect "check: --no-check skips it" 0 env PATH="$tmp/bin:$PATH" bash "$mpirun_sh" --no-check --np 4 --chai-bin "$fake_chai" -- generate --model "$gqa"

# ---- mpirun.sh: command lines ----------------------------------------------------------------
export PATH="$tmp/bin:$PATH" CHAI_BIN="$fake_chai"
unset NCCL_NVLS_ENABLE
expect "mpirun: 4 GPUs, llama-gqa refused" 3 env CUDA_VISIBLE_DEVICES=0,1,2,3 bash "$mpirun_sh" generate --device cuda --model "$gqa"
expect "mpirun: 4 GPUs" 0 env CUDA_VISIBLE_DEVICES=0,1,2,3 NCCL_DEBUG=WARN bash "$mpirun_sh" generate --device cuda
contains "mpirun: -np 4" "-np 4 --bind-to none --map-by slot"
contains "mpirun: NVLS off by default" "NVLS=0"
contains "mpirun: forwards NCCL_*" "-x NCCL_DEBUG"
contains "mpirun: forwards CUDA_VISIBLE_DEVICES" "-x CUDA_VISIBLE_DEVICES"
contains "mpirun: forwards NCCL_NVLS_ENABLE" "-x NCCL_NVLS_ENABLE"
expect "mpirun: NVLS left as the user set it" 0 env CUDA_VISIBLE_DEVICES=0,1 NCCL_NVLS_ENABLE=1 bash "$mpirun_sh" generate --device cuda
contains "mpirun: NVLS=1 kept" "NVLS=1"
expect "mpirun: too many ranks for the GPUs" 2 env CUDA_VISIBLE_DEVICES=0,1 bash "$mpirun_sh" --np 4 generate --device cuda
contains "mpirun: says why" "only 2 GPUs are visible"
expect "mpirun: cpu needs --np" 2 env CUDA_VISIBLE_DEVICES= bash "$mpirun_sh" generate --device cpu
expect "mpirun: cpu --np 3" 0 env CUDA_VISIBLE_DEVICES= bash "$mpirun_sh" --np 3 --bind socket generate --device cpu
contains "mpirun: --np 3 socket" "-np 3 --bind-to socket"
printf 'node1 slots=2\nnode2 slots=2 # comment\n\n# node3\n' >"$tmp/hosts"
expect "mpirun: hostfile" 0 env CUDA_VISIBLE_DEVICES=0,1 bash "$mpirun_sh" --hostfile "$tmp/hosts" generate --device cuda
contains "mpirun: 2 hosts x 2 GPUs" "-np 4 --bind-to none --map-by ppr:2:node --hostfile $tmp/hosts"
lacks "mpirun: no oversubscribe across hosts" "--oversubscribe"
expect "mpirun: bad option" 2 bash "$mpirun_sh" --bogus generate
expect "mpirun: --help" 0 bash "$mpirun_sh" --help
contains "mpirun: usage" "usage: launch/mpirun.sh"

# ---- chai.sbatch: submitting -----------------------------------------------------------------
unset CHAI_BIN
expect "sbatch: submit line" 0 env -u SLURM_JOB_ID bash "$sbatch_sh" --dry-run --partition gpu --nodes 2 \
  --gpus-per-node 8 --time 10:00 -- generate --prompt-ids 1
contains "sbatch: options" "sbatch --nodes=2 --ntasks-per-node=8 --time=10:00 --output=chai-%j.out --gpus-per-node=8 --partition=gpu"
expect "sbatch: cpu submit line" 0 env -u SLURM_JOB_ID bash "$sbatch_sh" --dry-run --gpus-per-node 0 --tasks-per-node 2
lacks "sbatch: no GPUs asked for the CPU backend" "--gpus-per-node"

# ---- chai.sbatch: inside a (stub) two-node job -----------------------------------------------
# shellcheck disable=SC2054  # the commas are Slurm's
job_env=(env SLURM_JOB_ID=42 SLURM_JOB_NODELIST="n[1-2]" STUB_NODES=n1,n2 SLURM_TASKS_PER_NODE="2(x2)"
         SLURM_NTASKS=4 CHAI_LAUNCH_REPO="$repo" CHAI_BIN="$fake_chai" GPUS_PER_NODE=0 STUB_LOG="$tmp/calls")
: >"$tmp/calls"
expect "job: replicas per node" 0 "${job_env[@]}" bash "$sbatch_sh" generate --model "$gqa" --json "out-{replica}-{node}.json"
out="$(cat "$tmp/calls")"
contains "job: srun on n1" "--mpi=pmix --ntasks=2 --nodelist=n1 --nodes=1 --kill-on-bad-exit=1 $fake_chai generate --model $gqa --json out-0-n1.json --device cpu"
contains "job: srun on n2" "--nodelist=n2 --nodes=1 --kill-on-bad-exit=1 $fake_chai generate --model $gqa --json out-1-n2.json"
contains "job: NVLS off in srun" "SRUN NVLS=0"
: >"$tmp/calls"
expect "job: cpus per task" 0 "${job_env[@]}" SLURM_CPUS_PER_TASK=4 bash "$sbatch_sh" generate
out="$(cat "$tmp/calls")"
contains "job: srun gets --cpus-per-task" "--nodes=1 --cpus-per-task=4 --kill-on-bad-exit=1"
: >"$tmp/calls"
expect "job: one group over the job" 0 "${job_env[@]}" TP_SCOPE=job bash "$sbatch_sh" generate --model "$repo/tests/fixtures/opt-postln"
out="$(cat "$tmp/calls")"
contains "job: srun over 4" "--ntasks=4 --nodelist=n1,n2 --nodes=2"
[[ "$(wc -l <"$tmp/calls")" -eq 1 ]] && ok "job: one srun" || bad "job: $(wc -l <"$tmp/calls") sruns for one group"
: >"$tmp/calls"
expect "job: llama-gqa over 4 refused before srun" 3 "${job_env[@]}" TP_SCOPE=job SLURM_TASKS_PER_NODE="2(x2)" \
  bash "$sbatch_sh" --model "$gqa" --device cuda
contains "job: check under its own name" "chai.sbatch: error: cannot split $gqa over 4 ranks"
[[ ! -s "$tmp/calls" ]] && ok "job: nothing launched" || bad "job: launched anyway: $(cat "$tmp/calls")"
: >"$tmp/calls"
expect "job: mpirun fallback without pmix" 0 "${job_env[@]}" STUB_MPI_PLUGINS="none pmi2" bash "$sbatch_sh" \
  generate --model "$gqa"
out="$(cat "$tmp/calls")"
contains "job: mpirun on n1" "-np 2 --bind-to none --map-by ppr:2:node --host n1:2"
contains "job: mpirun on n2" "--host n2:2"
lacks "job: no srun" "SRUN"
: >"$tmp/calls"
expect "job: uneven nodes" 0 "${job_env[@]}" SLURM_TASKS_PER_NODE="2,1" SLURM_NTASKS=3 bash "$sbatch_sh" generate
out="$(cat "$tmp/calls")"
contains "job: 1 rank on n2" "--ntasks=1 --nodelist=n2"
expect "job: replicas sharing one --json" 0 "${job_env[@]}" bash "$sbatch_sh" generate --json out.json
contains "job: warns about the shared --json" "replicas write the same --json file"
expect "job: a failed replica fails the job" 1 "${job_env[@]}" STUB_FAIL_NODE=n2 bash "$sbatch_sh" generate
contains "job: names the failed replica" "replica 1 on n2 failed"
expect "job: --tp-scope job needs even nodes" 2 "${job_env[@]}" SLURM_TASKS_PER_NODE="2,1" SLURM_NTASKS=3 TP_SCOPE=job \
  bash "$sbatch_sh" generate

# ---- a real run: 2 ranks print what one process prints ----------------------------------------
export PATH="${PATH#"$tmp/bin:"}"
if [[ -x "$chai" ]] && command -v mpirun >/dev/null 2>&1; then
  fixture="$repo/tests/fixtures/opt-postln"
  # shellcheck disable=SC2054
  gen=(generate --model "$fixture" --device cpu --prompt-ids 1,2,3 --max-new-tokens 8)
  "$chai" "${gen[@]}" --json "$tmp/one.json" >/dev/null 2>&1
  expect "real: mpirun.sh --np 2" 0 bash "$mpirun_sh" --chai-bin "$chai" --np 2 -- "${gen[@]}" --json "$tmp/two.json"
  if [[ -f "$tmp/two.json" ]] && cmp -s "$tmp/one.json" "$tmp/two.json"; then ok "real: same JSON as one process"
  else bad "real: JSON differs: $(cat "$tmp/one.json" "$tmp/two.json" 2>&1)"; fi
  expect "real: chai's own error comes through with --no-check" 1 bash "$mpirun_sh" --chai-bin "$chai" --np 4 --no-check -- \
    generate --model "$gqa" --device cpu --prompt-ids 1
  contains "real: chai's split error" "cannot split the model over 4 ranks"
else
  echo "note: no built chai at '$chai' or no mpirun: the real 2-rank run is left out"
fi

echo "$passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
