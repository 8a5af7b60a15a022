#!/usr/bin/env bash
# Reproduces docs/results.md: Transformer vs Titans (LMM, MAG) vs Hope at ~equal parameter
# count (~132k) and equal token budget (STEPS x 8 x 128 bytes), two seeds, on the default
# corpus (Python's stdlib source), then validation bpb, MQAR and NIAH for every run.
#
#   bash scripts/results.sh                 # STEPS=1000 SEEDS="0 1" OUT=/tmp/results (~25 min on 2 cores)
#   STEPS=200 SEEDS=0 CONTROL_STEPS=0 bash scripts/results.sh
#
# Then a control that does NOT share the token budget: the Transformer trained for
# CONTROL_STEPS (default 6000, about Titans-LMM's wall time) steps, same batch and length.
# The last step prints the results table (scripts/results.sh summary OUT re-prints it).
# scripts/results.sh speed: steady-state tok/s of each model (100-step runs, two at a time).
#
# One torch thread per process and at most two processes at once (one lane per seed):
# on a 2-core box more threads collapse under load.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-1000}
CONTROL_STEPS=${CONTROL_STEPS:-6000}
BATCH=${BATCH:-8}
SEQ=${SEQ:-128}
SEEDS=${SEEDS:-"0 1"}
OUT=${OUT:-/tmp/results}
export OMP_NUM_THREADS=1   # nlc eval has no --threads flag; this pins it to one thread too
mkdir -p "$OUT"

# name | spec | extra flags  (sizes chosen so that every model has 131-134k parameters)
MODELS=(
  "transformer|specs/transformer.nl|--set dim=64 --set layers=2"
  "titans_lmm|specs/titans.nl|--model TitansLMM --set dim=84 --set layers=2"
  "titans_mag|specs/titans.nl|--model TitansMAG --set dim=68 --set layers=2"
  "hope|specs/hope.nl|--set dim=56 --set layers=2"
)

summary() {  # the table of docs/results.md from the logs under $1
  python - "$1" "$BATCH" "$SEQ" <<'PY'
import json, re, sys, pathlib
import nlc
out, batch, seq = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def grab(path, pat):
    m = re.search(pat, path.read_text()) if path.exists() else None
    return m.group(1) if m else "?"
print("| run | model | --set | params | steps x batch x T = tokens | wall s | tok/s | val bpb T=128 | val bpb T=256 | MQAR | NIAH 128 | NIAH 256 |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for name in ("transformer", "titans_lmm", "titans_mag", "hope", "transformer_6k"):
    for run in sorted(p for p in out.glob(f"{name}-s*") if p.is_dir()):
        log = lambda kind: out / f"{run.name}.{kind}.log"
        if not log("niah").exists():
            continue
        rec = json.loads((run / "spec.json").read_text())
        steps, wall, toks = re.search(r"(\d+) steps in ([\d.]+) s, ([\d,]+) tok/s", log("train").read_text()).groups()
        rows = [l.split() for l in log("niah").read_text().splitlines() if re.fullmatch(r"\s*[\d.]+(\s+[\d.]+){2}\s*", l)]
        niah = [f"{sum(float(r[i]) for r in rows) / len(rows):.3f}" for i in (1, 2)]
        params = sum(p.numel() for p in nlc.load(str(run)).parameters())
        sets = " ".join(f"{k}={v}" for k, v in rec["overrides"].items())
        print(f"| {run.name} | {rec['model']} | {sets} | {params:,} | {steps} x {batch} x {seq} = {int(steps) * batch * seq:,} | {wall} | {toks}"
              f" | {grab(log('bpb128'), r'bpb: ([0-9.]+)')} | {grab(log('bpb'), r'bpb: ([0-9.]+)')}"
              f" | {grab(log('mqar'), r'accuracy: ([0-9.]+)')} | {niah[0]} | {niah[1]} |")
PY
}

speed() {  # steady-state throughput: 100-step runs, two at a time, s/step over steps 20..100
  local n spec flags
  probe() {
    n=$1; spec=$2; shift 2; rm -rf "$OUT/speed/$n"
    # shellcheck disable=SC2068
    nlc train "$spec" --steps 100 --batch "$BATCH" --seq-len "$SEQ" --out "$OUT/speed/$n" --threads 1 --no-progress \
      --eval-every 0 $@ >"$OUT/speed/$n.log" 2>&1
    python -c "import json, sys; r = {x['step']: x['time'] for x in map(json.loads, open(sys.argv[1])) if 'loss' in x}
dt = r[100] - r[20]; print(sys.argv[2], f'{dt / 80:.3f} s/step', f'{80 * $BATCH * $SEQ / dt:,.0f} tok/s')" \
      "$OUT/speed/$n/metrics.jsonl" "$n"
  }
  mkdir -p "$OUT/speed"
  probe hope specs/hope.nl --set dim=56 --set layers=2 & probe transformer specs/transformer.nl --set dim=64 --set layers=2 & wait
  probe titans_lmm specs/titans.nl --model TitansLMM --set dim=84 --set layers=2 &
  probe titans_mag specs/titans.nl --model TitansMAG --set dim=68 --set layers=2 & wait
}

if [[ "${1:-}" == summary ]]; then summary "${2:-$OUT}"; exit 0; fi
if [[ "${1:-}" == speed ]]; then speed; exit 0; fi

lane() {  # $1 seed, $2 steps, then model entries; one model after another
  local seed=$1 steps=$2 entry name spec flags run
  shift 2
  for entry in "$@"; do
    IFS='|' read -r name spec flags <<<"$entry"
    run="$OUT/$name-s$seed"
    rm -rf "$run"
    # shellcheck disable=SC2086
    nlc train "$spec" --steps "$steps" --batch "$BATCH" --seq-len "$SEQ" --seed "$seed" \
      --out "$run" --threads 1 --no-progress --eval-every 0 $flags >"$run.train.log" 2>&1
    nlc eval "$run" --task bpb >"$run.bpb.log" 2>&1                        # val bpb, windows of 256
    nlc eval "$run" --task bpb --seq-len "$SEQ" >"$run.bpb$SEQ.log" 2>&1   # val bpb, the training length
    nlc eval "$run" --task mqar >"$run.mqar.log" 2>&1
    nlc eval "$run" --task niah --lengths 128,256 >"$run.niah.log" 2>&1
    echo "done $name seed $seed: $(grep -h trained "$run.train.log")"
  done
}

# load average every 20 s while the runs go
( while true; do echo "$(date +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 20; done ) >"$OUT/loadavg.log" &
SAMPLER=$!
trap 'kill $SAMPLER 2>/dev/null || true' EXIT

{ echo "date: $(date -u +%FT%TZ)"; echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)";
  echo "cores: $(nproc --all)"; echo "torch: $(python -c 'import torch; print(torch.__version__)')";
  echo "nlc commit: $(git rev-parse --short HEAD)"; } >"$OUT/machine.txt"

pids=()
for seed in $SEEDS; do lane "$seed" "$STEPS" "${MODELS[@]}" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p"; done
if (( CONTROL_STEPS > 0 )); then  # NOT the shared token budget: see the header
  pids=()
  for seed in $SEEDS; do
    lane "$seed" "$CONTROL_STEPS" "transformer_6k|specs/transformer.nl|--set dim=64 --set layers=2" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
fi
echo "all runs in $OUT"
summary "$OUT"
