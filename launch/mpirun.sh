#!/usr/bin/env bash
# Starts chai with Open MPI's mpirun: one rank per GPU on this node (or --np ranks), one
# tensor-parallel group over all ranks. See launch/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/mpirun.sh [launcher options] [--] COMMAND [chai flags]

Runs `chai COMMAND [chai flags]` under mpirun as one tensor-parallel group (every rank holds
1/N of each layer). COMMAND is a chai subcommand: generate, bench, ...

  launch/mpirun.sh generate --model M --device cuda --dtype bf16 --prompt-ids 1,2,3
  launch/mpirun.sh --np 2 generate --model tests/fixtures/opt-postln --device cpu --prompt-ids 1,2,3
  launch/mpirun.sh --hostfile hosts --npernode 8 bench --model M --device cuda ...

Launcher options:
  --np N            ranks in all. Default: the GPUs visible on this node (CUDA_VISIBLE_DEVICES,
                    else nvidia-smi), times the hosts of --hostfile. Required with --device cpu
                    when no GPU is visible.
  --npernode N      ranks per node (maps with ppr:N:node); default with --hostfile: the GPUs
                    visible on this node (every node is assumed to look like this one)
  --hostfile FILE   Open MPI hostfile for a multi-node run ("host slots=8" per line); the
                    chai binary, the model and the output paths must exist on every host.
                    Ranks of all hosts form ONE tensor-parallel group (all-reduces cross the
                    network after every layer: slow unless the nodes share a fast fabric).
  --host LIST       Open MPI --host list (host1:8,host2:8)
  --bind none|socket|core   process binding (default none: chai sizes its own CPU thread
                    pool per rank; binding to a core would leave it one core)
  --chai-bin PATH   chai executable (default $CHAI_BIN, else build/chai of this checkout,
                    else chai on PATH)
  --mpirun PATH     mpirun to use (default $MPIRUN, else mpirun)
  --mpi-arg ARG     one extra argument for mpirun (repeatable)
  --no-check        do not check the rank count against the model before launching
  --check-only      only check that the model splits over --np ranks (exit 0 or 3; 2 when the
                    --model path is not there)
  --dry-run         print the mpirun command line and exit
  -h, --help        this text

Environment: NCCL_*, CHAI_*, CUDA_*, UCX_*, OMP_*, PMIX_MCA_*, PATH and LD_LIBRARY_PATH are
passed to every rank (-x). NCCL_NVLS_ENABLE defaults to 0 (NVLink multicast off: the GPU
machines are shared). Run as root, OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM)=1 are set for mpirun.
Exit status: chai's; 2 for a bad launcher invocation; 3 when the model cannot be split over
the rank count (one line says why and which rank counts work).
EOF
}

prog="${CHAI_LAUNCH_PROG:-mpirun.sh}"  # chai.sbatch borrows the checks below under its own name
die() { echo "$prog: error: $*" >&2; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"

np="" npernode="" hostfile="" hostlist="" bind="none" chai_bin="${CHAI_BIN:-}" mpirun="${MPIRUN:-mpirun}"
check=1 dry_run=0 check_only=0
mpi_extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --np|-np|-n) np="${2:?--np needs a value}"; shift 2 ;;
    --np=*) np="${1#*=}"; shift ;;
    --npernode) npernode="${2:?--npernode needs a value}"; shift 2 ;;
    --npernode=*) npernode="${1#*=}"; shift ;;
    --hostfile) hostfile="${2:?--hostfile needs a value}"; shift 2 ;;
    --hostfile=*) hostfile="${1#*=}"; shift ;;
    --host) hostlist="${2:?--host needs a value}"; shift 2 ;;
    --host=*) hostlist="${1#*=}"; shift ;;
    --bind) bind="${2:?--bind needs a value}"; shift 2 ;;
    --bind=*) bind="${1#*=}"; shift ;;
    --chai-bin) chai_bin="${2:?--chai-bin needs a value}"; shift 2 ;;
    --chai-bin=*) chai_bin="${1#*=}"; shift ;;
    --mpirun) mpirun="${2:?--mpirun needs a value}"; shift 2 ;;
    --mpirun=*) mpirun="${1#*=}"; shift ;;
    --mpi-arg) mpi_extra+=("${2?--mpi-arg needs a value}"); shift 2 ;;
    --mpi-arg=*) mpi_extra+=("${1#*=}"); shift ;;
    --no-check) check=0; shift ;;
    --check-only) check_only=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; break ;;
    -*) die "unknown launcher option '$1' (chai flags go after the chai command; see --help)" ;;
    *) break ;;
  esac
done
[[ $# -gt 0 ]] || { usage >&2; exit 2; }
chai_args=("$@")

is_count() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }
[[ -z "$np" ]] || is_count "$np" || die "--np must be a positive integer (got '$np')"
[[ -z "$npernode" ]] || is_count "$npernode" || die "--npernode must be a positive integer (got '$npernode')"
case "$bind" in none|socket|core) ;; *) die "--bind must be none, socket or core (got '$bind')" ;; esac
[[ -z "$hostfile" || -r "$hostfile" ]] || die "--hostfile: cannot read '$hostfile'"
[[ -z "$hostfile" || -z "$hostlist" ]] || die "give --hostfile or --host, not both"

# The chai flags the launcher looks at (both --flag value and --flag=value forms).
flag_value() {
  local name="$1" i
  for ((i = 0; i < ${#chai_args[@]}; i++)); do
    case "${chai_args[i]}" in
      "--$name") echo "${chai_args[i + 1]:-}"; return ;;
      "--$name="*) echo "${chai_args[i]#*=}"; return ;;
    esac
  done
}
device="$(flag_value device)"
model="$(flag_value model)"
chai_schedule="$(flag_value chai)"

[[ "$check_only" -eq 0 || -n "$np" ]] || die "--check-only needs --np N"
if [[ "$check_only" -eq 1 ]]; then
  :
elif [[ -z "$chai_bin" ]]; then
  if [[ -x "$repo/build/chai" ]]; then chai_bin="$repo/build/chai"
  elif command -v chai >/dev/null 2>&1; then chai_bin="$(command -v chai)"
  else die "no chai executable: build it (cmake --build build) or pass --chai-bin PATH / set CHAI_BIN"
  fi
fi
if [[ "$check_only" -eq 0 ]]; then
  [[ -x "$chai_bin" ]] || die "--chai-bin: '$chai_bin' is not an executable file"
  command -v "$mpirun" >/dev/null 2>&1 || die "no '$mpirun' on PATH (install Open MPI, or pass --mpirun PATH)"
fi

# GPUs this node shows: CUDA_VISIBLE_DEVICES when set, else nvidia-smi.
count_gpus() {
  if [[ -n "${CUDA_VISIBLE_DEVICES+set}" ]]; then
    local cvd="${CUDA_VISIBLE_DEVICES// /}"
    if [[ -z "$cvd" || "$cvd" == NoDevFiles || "$cvd" == -1* ]]; then echo 0; return; fi
    awk -F, '{print NF}' <<<"$cvd"
  elif command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true
  else
    echo 0
  fi
}
count_hosts() {  # distinct hosts of an Open MPI hostfile
  sed -e 's/#.*//' "$1" | awk 'NF {print $1}' | sort -u | wc -l
}

gpus="$(count_gpus)"
nodes=1
if [[ -n "$hostfile" ]]; then
  nodes="$(count_hosts "$hostfile")"
  [[ "$nodes" -ge 1 ]] || die "--hostfile '$hostfile' names no host"
elif [[ -n "$hostlist" ]]; then
  nodes="$(tr ',' '\n' <<<"$hostlist" | sed 's/:.*//' | awk 'NF' | sort -u | wc -l)"
fi
if [[ -z "$npernode" && "$nodes" -gt 1 && -z "$np" ]]; then
  [[ "$gpus" -gt 0 ]] || die "multi-node run: give --npernode N or --np N (no GPU visible here to count)"
  npernode="$gpus"
fi
if [[ -z "$np" ]]; then
  if [[ -n "$npernode" ]]; then
    np=$((npernode * nodes))
  elif [[ "$gpus" -gt 0 ]]; then
    np="$gpus"
    if [[ "$device" != cuda ]]; then
      echo "$prog: note: $gpus ranks for the $gpus visible GPUs, but chai runs on the CPU without --device cuda" >&2
    fi
  elif [[ "$device" == cuda ]]; then
    die "--device cuda but no GPU is visible here (CUDA_VISIBLE_DEVICES / nvidia-smi); give --np N to launch anyway"
  else
    die "no GPU visible to count ranks by: give the rank count with --np N"
  fi
fi
if [[ "$check_only" -eq 0 && "$device" == cuda && "$nodes" -eq 1 && "$gpus" -gt 0 && "$np" -gt "$gpus" ]]; then
  die "--np $np ranks but only $gpus GPUs are visible on this node: chai puts one rank on each GPU"
fi

# Can the model be split over np ranks? Heads, KV heads and the feed-forward size must
# divide evenly, and a CHAI schedule needs at least one cluster per rank in every layer.
# Reads config.json with python3 (or jq); without either, chai's own error comes through.
config=""
if [[ -z "$model" ]]; then
  config="$repo/configs/models/opt-125m.json"  # chai's default model
elif [[ -d "$model" ]]; then
  config="$model/config.json"
elif [[ -f "$model" ]]; then
  config="$model"
elif [[ "$check_only" -eq 1 ]]; then
  # Only here: a real launch leaves it to chai, since the ranks' hosts may see paths this one does not.
  die "--model: no such file or directory: $model (--check-only reads its config here)"
fi
split_error() {
  local cfg="$1" n="$2" sched="$3"
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$cfg" "$n" "$sched" <<'PY'
import json, math, os, re, sys
cfg, n, sched = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    with open(cfg) as f:
        c = json.load(f)
    heads = int(c["num_attention_heads"])
    kv = int(c.get("num_key_value_heads") or heads)
    ffn = int(c.get("ffn_dim") or c.get("intermediate_size"))
except Exception:
    sys.exit(0)  # not a config this check understands: chai will say what is wrong
ok = [w for w in range(1, heads + 1) if heads % w == 0 and kv % w == 0 and ffn % w == 0]
works = "rank counts that work: " + ", ".join(map(str, ok))
if n > heads:
    print(f"more ranks than attention heads ({heads}); {works}")
elif heads % n:
    print(f"num_attention_heads ({heads}) is not divisible by {n}; {works}")
elif kv % n:
    print(f"num_key_value_heads ({kv}) is not divisible by {n}; {works}")
elif ffn % n:
    print(f"the feed-forward size ({ffn}) is not divisible by {n}; {works}")
elif sched and sched != "off":
    ks = []
    try:
        if os.path.isfile(sched):
            with open(sched) as f:
                s = json.load(f)
            if isinstance(s.get("layer_clusters"), list) and all(isinstance(k, int) for k in s["layer_clusters"]):
                ks = s["layer_clusters"]
        elif re.fullmatch(r"\s*\d+(x\d+)?(\s*,\s*\d+(x\d+)?)*\s*", sched):
            for part in sched.split(","):
                k, _, times = part.strip().partition("x")
                ks += [int(k)] * int(times or 1)
    except Exception:
        ks = []
    for layer, k in enumerate(ks):
        if k < n:
            print(f"CHAI schedule {sched}: layer {layer} has {k} clusters, fewer than the {n} ranks "
                  "(each rank clusters its own heads into at least one cluster)")
            break
PY
  elif command -v jq >/dev/null 2>&1; then
    local heads kv ffn
    read -r heads kv ffn < <(jq -r '[.num_attention_heads, (.num_key_value_heads // .num_attention_heads),
                                     (.ffn_dim // .intermediate_size)] | map(tostring) | join(" ")' "$cfg" 2>/dev/null) || return 0
    [[ "$heads" =~ ^[0-9]+$ && "$kv" =~ ^[0-9]+$ && "$ffn" =~ ^[0-9]+$ ]] || return 0
    if ((n > heads)); then echo "more ranks than attention heads ($heads)"
    elif ((heads % n)); then echo "num_attention_heads ($heads) is not divisible by $n"
    elif ((kv % n)); then echo "num_key_value_heads ($kv) is not divisible by $n"
    elif ((ffn % n)); then echo "the feed-forward size ($ffn) is not divisible by $n"
    fi
  fi
}
if [[ "$check" -eq 1 && -n "$config" && -r "$config" ]]; then
  why="$(split_error "$config" "$np" "$chai_schedule")"
  if [[ -n "$why" ]]; then
    echo "$prog: error: cannot split ${model:-the default model} over $np ranks: $why" >&2
    exit 3
  fi
fi
[[ "$check_only" -eq 0 ]] || exit 0

# Environment for the ranks. mpirun forwards OMPI_MCA_* by itself; -x takes the rest to
# remote hosts too (local ranks inherit mpirun's environment anyway).
export NCCL_NVLS_ENABLE="${NCCL_NVLS_ENABLE:-0}"
if [[ "$(id -u)" -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT="${OMPI_ALLOW_RUN_AS_ROOT:-1}"
  export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}"
fi
env_args=()
while IFS= read -r name; do
  env_args+=(-x "$name")
done < <(compgen -e | grep -E '^(NCCL_|CHAI_|CUDA_|UCX_|OMP_|PMIX_MCA_|OMPI_ALLOW_RUN_AS_ROOT)|^(PATH|LD_LIBRARY_PATH)$' | sort)

cmd=("$mpirun" -np "$np" --bind-to "$bind")
if [[ -n "$npernode" ]]; then
  cmd+=(--map-by "ppr:$npernode:node")
else
  cmd+=(--map-by slot)
fi
[[ -z "$hostfile" ]] || cmd+=(--hostfile "$hostfile")
[[ -z "$hostlist" ]] || cmd+=(--host "$hostlist")
# One node without a hostfile: Open MPI offers one slot per physical core; CPU-backend runs
# may want more ranks than that (each rank then gets a smaller thread pool).
if [[ "$nodes" -eq 1 && -z "$hostfile" && -z "$hostlist" && -z "${SLURM_JOB_ID:-}" ]]; then
  cores="$( (lscpu -p=core,socket 2>/dev/null || true) | grep -v '^#' | sort -u | wc -l)"
  [[ "$cores" -ge 1 ]] || cores="$(nproc)"
  if [[ "$np" -gt "$cores" ]]; then cmd+=(--oversubscribe); fi
fi
cmd+=("${env_args[@]}" ${mpi_extra[@]+"${mpi_extra[@]}"} "$chai_bin" "${chai_args[@]}")

if [[ "$dry_run" -eq 1 ]]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"
