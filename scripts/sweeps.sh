#!/usr/bin/env bash
# The sweeps of docs/results.md ("Trained on the task: nlc sweep"), one `nlc sweep` each.
#
#   bash scripts/sweeps.sh mqar     # Transformer, Titans LMM, Hope on MQAR: 4 learning rates
#   bash scripts/sweeps.sh niah     # the same models on passkey retrieval: train at 256, score 256..4096
#   bash scripts/sweeps.sh ablations  # Titans Table 5 (LMM, linear memory, w/o momentum, w/o decay, w/o conv), 3 seeds
#   bash scripts/sweeps.sh mqar_d64   # d_model 64: Transformer, DeltaNet, GatedDeltaNet, Titans LMM (lr_max 2), 4 lrs
#   bash scripts/sweeps.sh mqar_d64_seeds  # 3 seeds at each model's best lr, then the report of the whole grid
#   bash scripts/sweeps.sh mqar_d64_long   # the Transformer with 4x the steps
#   bash scripts/sweeps.sh niah_d64        # passkey: Transformer vs Titans LMM (lr_max 2), d_model 64, 1000 steps
#   bash scripts/sweeps.sh niah_d64_titans # the same, Titans LMM at lr 1e-3 (it diverged at 3e-3)
#   bash scripts/sweeps.sh niah_d64_transformer_1e3  # the Transformer at lr 1e-3 as well
#   bash scripts/sweeps.sh mqar_d64_hope   # Hope at the same size, one lr
#   bash scripts/sweeps.sh mqar_d64_more   # the Transformer with 4 heads; Hope at lr 1e-2 too
#   bash scripts/sweeps.sh lm_equal_params  # LM at ~1M parameters: 6 models, 3 seeds, equal tokens (LM_STEPS, LM_SEEDS="0 1 2", LM_DIR)
#   bash scripts/sweeps.sh all
#
# OUT (default /tmp/sweeps) holds one folder per sweep: results.md, results.csv, results.jsonl, the
# plots, and cells/ (one folder per run). Run a sweep again with the same OUT to resume it.
# JOBS cells run at once, one torch thread each (docs/results.md ran mqar with 2, niah with 1:
# each cell is seeded on its own, so the results do not depend on it). Sizes are the ones a shared 2-core box allowed
# (d_model 32, 200 steps); docs/results.md says what a larger budget would run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/sweeps}
JOBS=${JOBS:-2}
MODELS=(transformer titans:TitansLMM hope)

mqar() {
  # chunk 8 for the memories (a chunk-parallel memory is read at its chunk's start: the 4 pairs fill
  # the first 8 tokens); Hope's slow memory every 16 tokens instead of 64 (a 64-token sequence)
  nlc sweep "${MODELS[@]}" --task mqar --grid lr=1e-3,3e-3,1e-2,3e-2 \
    --set dim=32 --set heads=1 --set steps=200 --set batch=16 \
    --set titans.chunk=8 --set hope.chunk=8 --set hope.mem_chunk=16 --jobs "$JOBS" --out "$OUT/mqar"
}

niah() {
  nlc sweep "${MODELS[@]}" --task niah --set dim=32 --set heads=1 --set steps=200 --jobs "$JOBS" --out "$OUT/niah"
}

# d_model 64, 2 layers, one head (issue 13 part 2, the size where the models learn MQAR): 8 pairs over 64 tokens,
# 800 steps x 32 sequences; Titans LMM at lr_max 2 (issue 16), chunk 16 for the memories (a chunk-parallel memory
# is read at its chunk's start: the 8 pairs fill exactly the first chunk). Scored at 64/128/256 tokens and with 16
# pairs at 128 tokens (acc_2xpairs).
ZOO_MODELS=(transformer deltanet:DeltaNet deltanet:GatedDeltaNet titans:TitansLMM)
ZOO_SET=(--set dim=64 --set heads=1 --set layers=2 --set pairs=8 --set seq_len=64 --set steps=800 --set batch=32
         --set titans.lr_max=2 --set titans.chunk=16 --set deltanet.chunk=16)

mqar_d64() {
  nlc sweep "${ZOO_MODELS[@]}" --task mqar --grid lr=1e-3,3e-3,1e-2,3e-2 "${ZOO_SET[@]}" \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-d64"
}

# 3 seeds at each model's best lr of mqar_d64 (ties on acc broken by acc_2xpairs), into the same folder: seed 0 is
# that sweep's cell (skipped), seeds 1 and 2 run; then the report of the whole grid (the lrs not seeded show 1/3).
ZOO_COMMON=(--set dim=64 --set heads=1 --set layers=2 --set pairs=8 --set seq_len=64 --set steps=800 --set batch=32)
mqar_d64_seeds() {
  local j=(--jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-d64")
  nlc sweep transformer --task mqar --grid lr=3e-3 "${ZOO_COMMON[@]}" --seeds 3 "${j[@]}"
  nlc sweep deltanet:DeltaNet --task mqar --grid lr=3e-2 "${ZOO_COMMON[@]}" --set deltanet.chunk=16 --seeds 3 "${j[@]}"
  nlc sweep deltanet:GatedDeltaNet --task mqar --grid lr=3e-2 "${ZOO_COMMON[@]}" --set deltanet.chunk=16 --seeds 3 "${j[@]}"
  nlc sweep titans:TitansLMM --task mqar --grid lr=3e-3 "${ZOO_COMMON[@]}" --set titans.lr_max=2 --set titans.chunk=16 \
    --seeds 3 "${j[@]}"
  nlc sweep "${ZOO_MODELS[@]}" --task mqar --grid lr=1e-3,3e-3,1e-2,3e-2 "${ZOO_SET[@]}" --seeds 3 "${j[@]}" --report-only
}

# the Transformer, which mqar_d64 left at 0.31: the same cell with 4x the steps
mqar_d64_long() {
  nlc sweep transformer --task mqar --grid lr=3e-3 "${ZOO_COMMON[@]}" --set steps=3200 \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-d64-long"
}

# passkey retrieval at d_model 64 with the issue-16 settings for Titans LMM (lr_max 2, 1000 steps), vs the Transformer:
# trained at 256 bytes, scored at 256..4096 bytes, 8 rows per depth (120 digits per length)
niah_d64() {
  nlc sweep transformer titans:TitansLMM --task niah --set lr=3e-3 --set dim=64 --set heads=1 --set layers=2 \
    --set steps=1000 --set eval_samples=8 --set titans.lr_max=2 --set titans.chunk=16 \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/niah-d64"
}

# niah_d64's Titans LMM cell diverged (NaN at step 98, lr 3e-3): the same sweep with Titans at lr 1e-3 (the
# Transformer's cell, lr 3e-3, is the one niah_d64 ran: skipped as done), then the report of both
niah_d64_titans() {
  nlc sweep transformer titans:TitansLMM --task niah --set transformer.lr=3e-3 --set titans.lr=1e-3 --set dim=64 \
    --set heads=1 --set layers=2 --set steps=1000 --set eval_samples=8 --set titans.lr_max=2 --set titans.chunk=16 \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/niah-d64"
}

# the Transformer at Titans' lr (1e-3) too, so that the two curves of niah_d64_titans share one lr as well
niah_d64_transformer_1e3() {
  nlc sweep transformer --task niah --set lr=1e-3 --set dim=64 --set heads=1 --set layers=2 --set steps=1000 \
    --set eval_samples=8 --jobs "${JOBS_ZOO:-1}" --out "$OUT/niah-d64-transformer-1e3"
}

# Hope at the same size, one lr (the one Titans LMM did best at; a Hope cell costs ~2x a Titans one): chunk and
# mem_chunk 16, so the slow memory holds the 8 pairs from the first chunk boundary on
mqar_d64_hope() {
  nlc sweep hope --task mqar --grid lr=3e-3 "${ZOO_COMMON[@]}" --set hope.chunk=16 --set hope.mem_chunk=16 \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-d64-hope"
}

# two follow-ups: the Transformer with 4 heads (mqar_d64 had one), and Hope at a second lr (1e-2; 3e-3 is reused)
mqar_d64_more() {
  nlc sweep transformer --task mqar --grid lr=3e-3 "${ZOO_COMMON[@]}" --set transformer.heads=4 \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-d64-heads4"
  nlc sweep hope --task mqar --grid lr=3e-3,1e-2 "${ZOO_COMMON[@]}" --set hope.chunk=16 --set hope.mem_chunk=16 \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-d64-hope"
}

ABLATIONS=(specs/titans.nl:TitansLMM specs/titans_ablations.nl:TitansLinear specs/titans_ablations.nl:TitansNoMomentum
           specs/titans_ablations.nl:TitansNoDecay specs/titans_ablations.nl:TitansNoConv)

ablations() {
  # docs/results.md "Titans ablations (Table 5) at small scale": LM at the task's defaults (300 steps x 8 x 128
  # bytes, the spec's dim 64, 4 heads, 2 layers) and at 1000 steps; NIAH at the niah sweep's size, 200 and 600 steps
  nlc sweep "${ABLATIONS[@]}" --task lm --seeds 3 --jobs "$JOBS" --out "$OUT/ablations-lm"
  nlc sweep "${ABLATIONS[@]}" --task lm --set steps=1000 --seeds 3 --jobs "$JOBS" --out "$OUT/ablations-lm1000"
  for steps in 200 600; do
    nlc sweep "${ABLATIONS[@]}" --task niah --set dim=32 --set heads=1 --set steps=$steps --seeds 3 --jobs "$JOBS" \
      --out "$OUT/ablations-niah$steps"
  done
}

# MAD (in-context recall, noisy recall, selective copy, memorize) at d_model 64, one lr (3e-3: the
# Transformer's and Titans LMM's best on mqar_d64; DeltaNet solves MQAR at every lr), seed 0, the
# tasks' default 300 steps x 32 sequences; docs/results.md "MAD at d_model 64"
mad_d64() {
  for task in mad_recall mad_noisy_recall mad_selective_copy mad_memorize; do
    nlc sweep transformer deltanet:DeltaNet titans:TitansLMM --task "$task" --grid lr=3e-3 \
      --set dim=64 --set heads=1 --set layers=2 --set titans.lr_max=2 --set titans.chunk=16 --set deltanet.chunk=16 \
      --jobs "${JOBS_ZOO:-2}" --out "$OUT/$task-d64"
  done
}

# issue 13 part 5: language modelling at ~1M parameters (0.98-1.02M: dim per model, 2 layers, 4 heads), equal tokens
# (LM_STEPS x 8 x 128 bytes, default 150 = 153,600 bytes), each spec's own lr (AdamW 3e-3, warmup 20, cosine), bpb
# at 128 and 512 bytes on 8 validation batches (the same windows for every run). The seeds in LM_SEEDS (default
# "0 1 2") one at a time over all models (--first-seed S into the same folder: the done cells are skipped), so an
# interrupted run still holds whole seeds. docs/results.md, "Language
# modelling at ~1M parameters"; the equal-wall-time view: python scripts/lm_wall.py "$OUT/lm-1m"
LM_MODELS=(transformer titans:TitansLMM titans:TitansMAG hope cms deltanet:GatedDeltaNet)
LM_SET=(--set layers=2 --set heads=4 --set batch=8 --set seq_len=128 --set eval_batches=8
        --set transformer.dim=192 --set TitansLMM.dim=264 --set TitansMAG.dim=208 --set hope.dim=168
        --set cms.dim=168 --set GatedDeltaNet.dim=288)
lm_equal_params() {
  local s top=0
  for s in ${LM_SEEDS:-0 1 2}; do
    nlc sweep "${LM_MODELS[@]}" --task lm --set steps="${LM_STEPS:-150}" "${LM_SET[@]}" --seeds 1 --first-seed "$s" \
      --jobs "${JOBS_LM:-1}" --out "$OUT/${LM_DIR:-lm-1m}"
    (( s + 1 > top )) && top=$((s + 1))
  done
  # one report over seeds 0..top-1 (a seed that ran elsewhere shows as "not run")
  nlc sweep "${LM_MODELS[@]}" --task lm --set steps="${LM_STEPS:-150}" "${LM_SET[@]}" --seeds "$top" --report-only \
    --out "$OUT/${LM_DIR:-lm-1m}"
}

# the lr check of lm_equal_params: every model at lr 1e-2 as well (3e-3 above), seed 0, the same 150 steps
lm_equal_params_lr() {
  nlc sweep "${LM_MODELS[@]}" --task lm --set steps="${LM_STEPS:-150}" "${LM_SET[@]}" --grid lr=1e-2 --seeds 1 \
    --jobs "${JOBS_LM:-1}" --out "$OUT/lm-1m-lr"
}

# Titans MAG with half the inner step (lr_max 0.5, the spec's default 1): lm_budget's MAG cell, three seeds. Its
# seed 1 blew up at step 1180 at lr_max 1, where scripts/inner_margin.py finds the memory within 2x of its edge
lm_budget_mag_half() {
  nlc sweep titans:TitansMAG --task lm --set steps="${LM_STEPS:-2000}" --set layers=2 --set heads=4 --set batch=8 \
    --set seq_len=128 --set eval_batches=8 --set dim=208 --set lr_max=0.5 \
    --seeds "${MAG_SEEDS:-3}" --jobs "${JOBS_LM:-1}" --out "$OUT/lm-1m-2000-mag-half"
}

# ---- session 8 (docs/results.md, "Session 8: ..."): seeds, equal parameters, d_model 128, Zoology's mix -------------

# passkey at d_model 64, 1000 steps (niah_d64's task), six models in one folder: each at the lr of its d64 runs
# (Titans LMM 1e-3: it diverged at 3e-3; Gated DeltaNet 1e-2: it learned MQAR only from 1e-2; Hope 1e-3), seeds
# one at a time over all six (a stopped run holds whole seeds); docs/results.md ran seeds 0-2 of five and Hope's seed 0
NIAH64_MODELS=(transformer transformer_conv titans:TitansLMM deltanet:DeltaNet deltanet:GatedDeltaNet hope)
NIAH64=(--task niah --set dim=64 --set heads=1 --set layers=2 --set steps=1000 --set eval_samples=8
        --set titans.lr_max=2 --set titans.chunk=16 --set deltanet.chunk=16 --set hope.chunk=16 --set hope.mem_chunk=16
        --set transformer.lr=3e-3 --set transformer_conv.lr=3e-3 --set titans.lr=1e-3 --set DeltaNet.lr=3e-3
        --set GatedDeltaNet.lr=1e-2 --set hope.lr=1e-3)
niah_d64_all() {
  local s
  for s in ${NIAH_SEEDS:-1 2 3}; do
    nlc sweep "${NIAH64_MODELS[@]}" "${NIAH64[@]}" --seeds "$s" --jobs "${JOBS_ZOO:-1}" --out "$OUT/niah-d64-all"
  done
}

# MQAR at equal parameters: DeltaNet at dim 100 (122k) and Gated DeltaNet at dim 92 (123k), like the Transformer's
# 123k and Titans LMM's 125k at dim 64; each at its d64-best lr, 3 seeds
mqar_d64_eqparams() {
  nlc sweep deltanet:DeltaNet deltanet:GatedDeltaNet --task mqar --grid lr=3e-2 "${ZOO_COMMON[@]}" \
    --set DeltaNet.dim=100 --set GatedDeltaNet.dim=92 --set deltanet.chunk=16 --seeds 3 --jobs "${JOBS_ZOO:-1}" \
    --out "$OUT/mqar-d64-eqparams"
}

# Hope's MQAR lr sweep completed to four values: 3e-4 and 1e-3 here, 3e-3 and 1e-2 in mqar_d64_hope/_more
mqar_d64_hope_lrs() {
  nlc sweep hope --task mqar --grid lr=3e-4,1e-3 "${ZOO_COMMON[@]}" --set hope.chunk=16 \
    --set hope.mem_chunk=16 --jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-d64-hope"
}

# d_model 128 (the same MQAR as mqar_d64; the later --set dim wins), each model at its d64-best lr; D128_N seeds from
# D128_FIRST (default: seed 0 alone)
mqar_d128() {
  nlc sweep "${ZOO_MODELS[@]}" --task mqar "${ZOO_COMMON[@]}" --set dim=128 \
    --set transformer.lr=3e-3 --set DeltaNet.lr=3e-2 --set GatedDeltaNet.lr=3e-2 --set titans.lr=3e-3 \
    --set titans.lr_max=2 --set titans.chunk=16 --set deltanet.chunk=16 --seeds "${D128_N:-1}" \
    --first-seed "${D128_FIRST:-0}" --jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-d128"
}

# Zoology's protocol (task mqar_mix): trained on 64x4 (5 of every 9 steps), 128x8, 256x16, 256x32, 256x64 (length x
# pairs), scored on 64x4, 64x8, 64x16, 128x32, 256x64, 512x64; d_model 64, 800 steps x 32, each model's d64-best lr;
# MIX_SEEDS seeds from MIX_FIRST (default seed 0 alone)
# the mix's task and training at d_model 64 (every mqar_mix sweep below)
MIX64=(--task mqar_mix --set dim=64 --set heads=1 --set layers=2 --set steps=800 --set batch=32)
mqar_mix_d64() {
  nlc sweep "${ZOO_MODELS[@]}" transformer_conv "${MIX64[@]}" \
    --set transformer.lr=3e-3 --set transformer_conv.lr=3e-3 --set DeltaNet.lr=3e-2 --set GatedDeltaNet.lr=3e-2 --set titans.lr=3e-3 \
    --set titans.lr_max=2 --set titans.chunk=16 --set deltanet.chunk=16 --seeds "${MIX_SEEDS:-1}" \
    --first-seed "${MIX_FIRST:-0}" --jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-mix-d64"
}

# Titans LMM diverged on the mix at 3e-3 (NaN at step 525): again at 1e-3, into the same folder
mqar_mix_d64_titans() {
  nlc sweep titans:TitansLMM "${MIX64[@]}" \
    --set lr=1e-3 --set lr_max=2 --set chunk=16 --seeds "${MIX_SEEDS:-1}" --first-seed "${MIX_FIRST:-0}" \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-mix-d64"
}

# MAD at d_model 64 with an lr sweep: recall, noisy recall, selective copy (memorize: all three models of mad_d64 at
# 1.00 at lr 3e-3), Transformer, TransformerConv, DeltaNet, Gated DeltaNet, Titans LMM at 3 lrs; Hope at 3e-3 on recall only (it
# scored 0.095 there; its cells cost ~9x a Transformer's); seed 0
MAD_MODELS=(transformer transformer_conv deltanet:DeltaNet deltanet:GatedDeltaNet titans:TitansLMM)
MAD_SET=(--set dim=64 --set heads=1 --set layers=2)
mad_d64_lrs() {
  local task
  for task in mad_recall mad_noisy_recall mad_selective_copy; do
    nlc sweep "${MAD_MODELS[@]}" --task "$task" --grid lr=1e-3,3e-3,1e-2 "${MAD_SET[@]}" --set titans.lr_max=2 \
      --set titans.chunk=16 --set deltanet.chunk=16 --jobs "${JOBS_ZOO:-1}" --out "$OUT/$task-d64-lrs"
  done
  nlc sweep hope --task mad_recall --grid lr=3e-3 "${MAD_SET[@]}" --set hope.chunk=16 --set hope.mem_chunk=16 \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/mad_recall-d64-lrs"
}

# seeds for mad_d64_lrs: each model at its best lr of seed 0 (ties: the higher lr), seeds 1..MAD_SEEDS, into
# mad_d64_lrs' folders (the cells are seeds of its grid cells); recall, noisy recall, then selective copy
mad_d64_seeds() {
  local c=(--seeds "${MAD_SEEDS:-1}" --first-seed 1 "${MAD_SET[@]}" --jobs "${JOBS_ZOO:-1}")
  local t=(--set titans.lr_max=2 --set titans.chunk=16) d=(--set deltanet.chunk=16)
  nlc sweep "${MAD_MODELS[@]}" --task mad_recall --grid lr=1e-2 "${c[@]}" "${t[@]}" "${d[@]}" --out "$OUT/mad_recall-d64-lrs"
  nlc sweep transformer_conv deltanet:DeltaNet deltanet:GatedDeltaNet titans:TitansLMM --task mad_noisy_recall \
    --grid lr=1e-2 "${c[@]}" "${t[@]}" "${d[@]}" --out "$OUT/mad_noisy_recall-d64-lrs"
  nlc sweep transformer --task mad_noisy_recall --grid lr=3e-3 "${c[@]}" --out "$OUT/mad_noisy_recall-d64-lrs"
  nlc sweep transformer transformer_conv deltanet:GatedDeltaNet --task mad_selective_copy --grid lr=3e-3 "${c[@]}" \
    "${d[@]}" --out "$OUT/mad_selective_copy-d64-lrs"
  nlc sweep deltanet:DeltaNet titans:TitansLMM --task mad_selective_copy --grid lr=1e-2 "${c[@]}" "${t[@]}" "${d[@]}" \
    --out "$OUT/mad_selective_copy-d64-lrs"
}

# the Transformer with a short causal convolution before attention (specs/transformer_conv.nl), the cell the d64 MQAR
# section named next, at 3 lrs; the plain Transformer at 3e-3 in the same sweep
mqar_d64_transformer_conv() {
  nlc sweep transformer_conv --task mqar --grid lr=1e-3,3e-3,1e-2 "${ZOO_COMMON[@]}" --jobs "${JOBS_ZOO:-1}" \
    --out "$OUT/mqar-d64-tconv"
  nlc sweep transformer --task mqar --grid lr=3e-3 "${ZOO_COMMON[@]}" --jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-d64-tconv"
}
# 3 seeds at lr 3e-3 and 1e-2 (seed 0 solved MQAR at both), into the same folder
mqar_d64_transformer_conv_seeds() {
  nlc sweep transformer_conv --task mqar --grid lr=3e-3,1e-2 "${ZOO_COMMON[@]}" --seeds 3 --jobs "${JOBS_ZOO:-1}" \
    --out "$OUT/mqar-d64-tconv"
}

# ---- session 9: why Hope learns no recall at d_model 64; the single needle in real text ----------------------------

# Hope on the d64 MQAR of mqar_d64_hope (lr 3e-3, its best of four, chunk = mem_chunk = 16): one setting changed per
# cell — the in-context step lr_max (0.5 in hope.nl; Titans LMM solves this MQAR at 2), one layer, the per-token decay
# decay_max (0.1 in hope.nl; Titans' is 0.01); seed 0, one folder. Then 3 seeds at decay_max 0.01 and 0, and the three
# ablations of specs/hope_ablations.nl (no self-modification, plain values, no CMS) at decay_max 0.01
HOPE_ISO=(--task mqar --set dim=64 --set heads=1 --set pairs=8 --set seq_len=64 --set steps=800 --set batch=32
          --grid lr=3e-3 --set chunk=16 --set mem_chunk=16)
hope_iso() {
  local j=(--jobs "${JOBS_ZOO:-1}" --out "$OUT/hope-iso")
  nlc sweep hope "${HOPE_ISO[@]}" --set layers=2 --grid lr_max=2,5 "${j[@]}"
  nlc sweep hope "${HOPE_ISO[@]}" --set layers=1 --grid lr_max=0.5,2 "${j[@]}"
  nlc sweep hope "${HOPE_ISO[@]}" --set layers=2 --grid decay_max=0,0.01 "${j[@]}"
}
hope_iso_seeds() {
  nlc sweep hope "${HOPE_ISO[@]}" --set layers=2 --grid decay_max="${HOPE_DECAYS:-0.01,0}" --seeds 3 --jobs "${JOBS_ZOO:-1}" \
    --out "$OUT/hope-iso"
}
hope_iso_ablations() {
  nlc sweep specs/hope_ablations.nl --model HopeStatic,HopePlainValues,HopeNoCMS "${HOPE_ISO[@]}" --set layers=2 \
    --grid decay_max=0.01 --jobs "${JOBS_ZOO:-1}" --out "$OUT/hope-iso"
}

# Hope's LM cell of lm_equal_params (≈1M parameters, 150 steps, lr 3e-3) at decay_max 0.1 (the spec's), 0.01 and 0
lm_hope_decay() {
  nlc sweep hope --task lm --grid decay_max=0.1,0.01,0 --set steps="${LM_STEPS:-150}" --set layers=2 --set heads=4 \
    --set batch=8 --set seq_len=128 --set eval_batches=8 --set dim=168 --seeds "${HOPE_SEEDS:-1}" \
    --jobs "${JOBS_LM:-1}" --out "$OUT/lm-hope-decay"
}

# Hope on MAD recall (mad_d64_lrs' cell, lr 3e-3) at decay_max 0 (hope.nl's default since session 9; it was 0.1)
mad_recall_hope_decay() {
  nlc sweep hope --task mad_recall --grid lr=3e-3 "${MAD_SET[@]}" --set chunk=16 --set mem_chunk=16 \
    --grid decay_max=0 --jobs "${JOBS_ZOO:-1}" --out "$OUT/mad_recall-hope-decay"
}

# mad_recall_hope_decay's cell (Hope at decay 0 on MAD recall: 0.227) for HopeStatic and HopeStaticKeys: do fixed
# keys help recall as they help the passkey?
mad_recall_hope_static() {
  nlc sweep hope_ablations --model HopeStatic,HopeStaticKeys --task mad_recall --grid lr=3e-3 "${MAD_SET[@]}" \
    --set chunk=16 --set mem_chunk=16 --jobs "${JOBS_ZOO:-1}" --out "$OUT/mad_recall-hope-static"
}

# the single keyed needle in real text (task needle, RULER's S-NIAH-2 at byte level) with the passkey's models,
# settings and lrs (NIAH64 above), Hope aside (a cell of it took an hour on the passkey); seeds one at a time
NEEDLE64=()  # NIAH64 less its task and Hope's settings (a setting for a model not in the sweep is an error)
for ((i = 2; i < ${#NIAH64[@]}; i += 2)); do
  [[ ${NIAH64[i + 1]} == hope.* ]] || NEEDLE64+=("${NIAH64[i]}" "${NIAH64[i + 1]}")
done
# NIAH64's settings common to every model, alone: the base of the needle cells below
D64_NEEDLE=(--set dim=64 --set heads=1 --set layers=2 --set steps=1000 --set eval_samples=8 --set chunk=16)
needle_d64() {
  local s
  for s in ${NEEDLE_SEEDS:-1}; do
    nlc sweep transformer transformer_conv titans:TitansLMM deltanet:DeltaNet deltanet:GatedDeltaNet \
      --task needle "${NEEDLE64[@]}" --seeds "$s" --jobs "${JOBS_ZOO:-1}" --out "$OUT/needle-d64"
    # Gated DeltaNet also at 3e-3: at 1e-2 it did not learn the passkey
    nlc sweep deltanet:GatedDeltaNet --task needle "${D64_NEEDLE[@]}" --set lr=3e-3 --seeds "$s" --jobs "${JOBS_ZOO:-1}" \
      --out "$OUT/needle-d64"
  done
}

# Gated DeltaNet on the passkey (niah_d64_all's cells) at 3e-3 and 1e-3: at its one lr there, 1e-2, it was at chance
niah_d64_gdn_lrs() {
  nlc sweep deltanet:GatedDeltaNet --task niah "${D64_NEEDLE[@]}" --grid lr=1e-3,3e-3 --jobs "${JOBS_ZOO:-1}" --out "$OUT/niah-d64-gdn"
}

# ---- session 10 -----------------------------------------------------------------------------------------------------

# lm_equal_params at 2000 steps (about an hour of Hope on an idle core: the issue's budget), into its own folder; the
# seeds in LM_SEEDS (default "0 1 2"), each a whole seed over the six models before the next (resumes cell by cell)
lm_budget() {
  LM_STEPS=2000 LM_DIR=lm-1m-2000 JOBS_LM=${JOBS_LM:-2} lm_equal_params
}

# Hope at its default decay (0) on the passkey and the single needle: niah_d64_all's Hope cell otherwise (it ran at 0.1)
HOPE64=("${D64_NEEDLE[@]}" --set mem_chunk=16 --set lr=1e-3)
hope_needles() {
  nlc sweep hope --task niah "${HOPE64[@]}" --seeds "${NEEDLE_SEEDS:-1}" --jobs "${JOBS_ZOO:-1}" --out "$OUT/niah-d64-hope"
  nlc sweep hope --task needle "${HOPE64[@]}" --seeds "${NEEDLE_SEEDS:-1}" --jobs "${JOBS_ZOO:-1}" --out "$OUT/needle-d64-hope"
}

# why Hope learns neither needle task: hope_needles' passkey cell for each of Hope's three ablations (a static
# memory, plain values, no CMS; HopeStaticKeys: specs/hope_ablations.nl), to see which part keeps it at chance
hope_needles_ablations() {
  nlc sweep hope_ablations --model HopeNoCMS,HopeStatic,HopePlainValues,HopeStaticKeys --task niah "${HOPE64[@]}" \
    --seeds "${NEEDLE_SEEDS:-1}" --jobs "${JOBS_ZOO:-1}" --out "$OUT/niah-d64-hope-ablations"
}

# one ablation of specs/hope_ablations.nl that learned the passkey where Hope did not: seeds 1, 2 of
# hope_needles_ablations' passkey cell (same folder), and the single needle in real text
hope_ablation_needles() {
  nlc sweep hope_ablations --model "$1" --task niah "${HOPE64[@]}" --seeds 2 --first-seed 1 \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/niah-d64-hope-ablations"
  hope_ablation_needle "$1" "${NEEDLE_SEEDS:-1}" 0
}
# MODEL SEEDS FIRST: an ablation on the single needle, seeds FIRST..FIRST+SEEDS-1, JOBS_ZOO at a time
hope_ablation_needle() {
  nlc sweep hope_ablations --model "$1" --task needle "${HOPE64[@]}" --seeds "$2" --first-seed "$3" \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/needle-d64-hope-ablations"
}
hope_static_needles() { hope_ablation_needles HopeStatic; }          # Hope without self-modification
hope_static_keys_needles() { hope_ablation_needles HopeStaticKeys; } # Hope with a fixed key projection only

# Hope's passkey cell at a larger inner step: Titans LMM, which learns the passkey, runs at lr_max 2 there;
# Hope's default is 0.5
hope_needles_lr_max() {
  nlc sweep hope --task niah "${HOPE64[@]}" --grid lr_max=1,2 --seeds "${NEEDLE_SEEDS:-1}" --jobs "${JOBS_ZOO:-1}" \
    --out "$OUT/niah-d64-hope-lr-max"
}

# why Titans LMM's passkey falls with length: niah_d64_all's Titans cell with its forget gate off (decay_max 0), and
# with the gate anchored to M_0 (titans_anchored at TitansLMM's default 0.01)
titans_needle_decay() {
  nlc sweep titans:TitansLMM titans_anchored --task niah "${D64_NEEDLE[@]}" --set lr_max=2 --set lr=1e-3 \
    --set TitansLMM.decay_max=0 \
    --set titans_anchored.decay_max=0.01 --seeds "${NEEDLE_SEEDS:-1}" --jobs "${JOBS_ZOO:-1}" --out "$OUT/niah-d64-titans-decay"
}

# Gated DeltaNet on both needle tasks with a slower forget gate at init: gate_scale 0.01 (alpha ~ 0.993 a token)
# against the default 0.1 (alpha ~ 0.93), where it stayed at chance at every lr
gdn_needles_gate() {
  local g=("${D64_NEEDLE[@]}" --set lr=3e-3 --set gate_scale=0.01)
  nlc sweep deltanet:GatedDeltaNet --task needle "${g[@]}" --seeds "${NEEDLE_SEEDS:-1}" --jobs "${JOBS_ZOO:-1}" \
    --out "$OUT/needle-d64-gdn-gate"
  nlc sweep deltanet:GatedDeltaNet --task niah "${g[@]}" --seeds "${NEEDLE_SEEDS:-1}" --jobs "${JOBS_ZOO:-1}" \
    --out "$OUT/niah-d64-gdn-gate"
}

# the needle over Gated DeltaNet's gate scale and lr (gate_scale 0.01 at 3e-3 again, beside 0.001 and lr 1e-2)
gdn_needle_gates() {
  nlc sweep deltanet:GatedDeltaNet --task needle "${D64_NEEDLE[@]}" --grid gate_scale=0.001,0.01 --grid lr=3e-3,1e-2 \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/needle-d64-gdn-gates"
}

# Hope's passkey at lr 3e-3 (its best MQAR lr): at 1e-3 (hope_needles) it stayed at chance with its decay at 0
hope_niah_lr() {
  nlc sweep hope --task niah "${HOPE64[@]}" --set lr=3e-3 --seeds "${NEEDLE_SEEDS:-1}" --jobs "${JOBS_ZOO:-1}" \
    --out "$OUT/niah-d64-hope-3e-3"
}

# ---- session 11 -----------------------------------------------------------------------------------------------------

# Gated DeltaNet with fla's learned per-head rate (GatedDeltaNetLadder: A_h from 1e-3 to 1 over the heads) against
# GatedDeltaNet (one gate_scale, 0.1) and DeltaNet (no gate), on both needle tasks at d_model 64 with 4 heads (the
# needle cells above have one head, where the ladder is its first rung alone), lr 3e-3
D64_NEEDLE4=(--set dim=64 --set heads=4 --set layers=2 --set steps=1000 --set eval_samples=8 --set chunk=16)
gdn_ladder_needles() {
  local task
  for task in needle niah; do
    nlc sweep deltanet:GatedDeltaNetLadder deltanet:GatedDeltaNet deltanet:DeltaNet --task "$task" "${D64_NEEDLE4[@]}" \
      --set lr=3e-3 --seeds "${NEEDLE_SEEDS:-1}" --jobs "${JOBS_ZOO:-1}" --out "$OUT/$task-d64-h4-gdn"
  done
}

# GatedDeltaNetLadder on lm_budget's cell (2000 steps, ≈1M parameters at dim 288 as GatedDeltaNet, 4 heads)
gdn_ladder_lm() {
  nlc sweep deltanet:GatedDeltaNetLadder --task lm --set steps="${LM_STEPS:-2000}" --set layers=2 --set heads=4 \
    --set batch=8 --set seq_len=128 --set eval_batches=8 --set dim=288 --seeds "${LADDER_SEEDS:-1}" \
    --jobs "${JOBS_LM:-1}" --out "$OUT/lm-1m-2000-ladder"
}

# ---- session 13 -----------------------------------------------------------------------------------------------------

# Hope with only its key projection fixed (HopeStaticKeys: the one change that let Hope learn the passkey) on
# lm_budget's cell: Hope's size, data and settings. Does fixing the keys cost it on language? (HSK_SEEDS seeds)
lm_budget_hope_static_keys() {
  nlc sweep hope_ablations:HopeStaticKeys --task lm --set steps="${LM_STEPS:-2000}" --set layers=2 --set heads=4 \
    --set batch=8 --set seq_len=128 --set eval_batches=8 --set dim=168 \
    --seeds "${HSK_SEEDS:-1}" --jobs "${JOBS_LM:-1}" --out "$OUT/lm-1m-2000-hope-static-keys"
}

# Titans MAG with the curvature-following inner step (`normalize = true`: theta / (1 + chunk theta c_t), c_t the
# Gauss-Newton curvature of each token's loss; nlc/rules/momentum/README.md) on lm_budget's MAG cell, MAG_SEEDS
# seeds at lr_max 1 (the spec's) and MAG_LR_MAX=2 for a larger step; its seed 1 blew up with the plain step
lm_budget_mag_normalized() {
  nlc sweep titans:TitansMAG --task lm --set steps="${LM_STEPS:-2000}" --set layers=2 --set heads=4 --set batch=8 \
    --set seq_len=128 --set eval_batches=8 --set dim=208 --set normalize=true --set lr_max="${MAG_LR_MAX:-1}" \
    --seeds "${MAG_SEEDS:-3}" --jobs "${JOBS_LM:-1}" --out "$OUT/lm-1m-2000-mag-normalized"
}

# HopeStaticKeys (only k fixed) on hope_iso's MQAR at decay_max 0 (Hope's default), 3 seeds, into hope-iso: does
# fixing the keys cost Hope the recall it has there (Hope at decay_max 0: 0.960 +- 0.015)?
hope_iso_static_keys() {
  nlc sweep specs/hope_ablations.nl --model HopeStaticKeys "${HOPE_ISO[@]}" --set layers=2 --grid decay_max=0 \
    --seeds "${HSK_SEEDS:-3}" --jobs "${JOBS_ZOO:-1}" --out "$OUT/hope-iso"
}

# Hope, HopeStatic and HopeStaticKeys on MAD recall (mad_recall_hope_static's cell, decay_max 0), three seeds each in
# one folder (seed 0 again: mad_recall_hope_decay and mad_recall_hope_static ran it once, in two folders)
mad_recall_hope_seeds() {
  nlc sweep hope hope_ablations:HopeStatic hope_ablations:HopeStaticKeys --task mad_recall --grid lr=3e-3 "${MAD_SET[@]}" \
    --set chunk=16 --set mem_chunk=16 --set decay_max=0 --seeds 3 --jobs "${JOBS_ZOO:-1}" --out "$OUT/mad_recall-hope-seeds"
}

# HopeStaticKeys on the single needle, seeds 1 and 2 (seed 0: hope_static_keys_needles, session 12), two at a time
hope_static_keys_needle_seeds() { JOBS_ZOO=${JOBS_ZOO:-2} hope_ablation_needle HopeStaticKeys 2 1; }

# Session 14. Hope and HopeStaticKeys on Zoology's mix (mqar_mix_d64's task and training), at Hope's d64 MQAR lr (3e-3)
# and chunk = mem_chunk = 16, decay_max 0 (Hope's default), 3 seeds
mqar_mix_hope() {
  nlc sweep hope hope_ablations:HopeStaticKeys "${MIX64[@]}" --grid lr=3e-3 --set chunk=16 --set mem_chunk=16 \
    --set decay_max=0 --seeds "${MIX_SEEDS:-3}" \
    --first-seed "${MIX_FIRST:-0}" --jobs "${JOBS_ZOO:-2}" --out "$OUT/mqar-mix-hope"
}
# d_model 128 (mqar_d128's cells) with seeds 1 and 2 (seed 0: the table of session 8), and Hope and HopeStaticKeys at
# d_model 128 over D128_SEEDS seeds from D128_FIRST (Hope's d64 settings)
mqar_d128_seeds() { D128_N=2 D128_FIRST=1 JOBS_ZOO=${JOBS_ZOO:-2} mqar_d128; }
mqar_d128_hope() {
  nlc sweep hope hope_ablations:HopeStaticKeys "${HOPE_ISO[@]}" --set layers=2 --set dim=128 --set decay_max=0 \
    --seeds "${D128_SEEDS:-3}" --first-seed "${D128_FIRST:-0}" --jobs "${JOBS_ZOO:-2}" --out "$OUT/mqar-d128-hope"
}

# MAD, the lr sweep continued: the memories did best at the top of mad_d64_lrs's grid (1e-2), so 3e-2 for them; memorize
# at the three lrs for the five models; Hope and HopeStaticKeys on recall at 1e-3 and 1e-2 (3e-3: mad_recall_hope_seeds).
# Seed 0, into mad_d64_lrs's folders.
mad_d64_lrs_more() {
  local t=(--set titans.lr_max=2 --set titans.chunk=16) d=(--set deltanet.chunk=16) j=(--jobs "${JOBS_ZOO:-2}")
  local task
  for task in mad_recall mad_noisy_recall mad_selective_copy; do
    nlc sweep deltanet:DeltaNet deltanet:GatedDeltaNet titans:TitansLMM --task "$task" --grid lr=3e-2 "${MAD_SET[@]}" \
      "${t[@]}" "${d[@]}" "${j[@]}" --out "$OUT/$task-d64-lrs"
  done
  nlc sweep "${MAD_MODELS[@]}" --task mad_memorize --grid lr=1e-3,3e-3,1e-2 "${MAD_SET[@]}" "${t[@]}" "${d[@]}" "${j[@]}" \
    --out "$OUT/mad_memorize-d64-lrs"
  nlc sweep hope hope_ablations:HopeStaticKeys --task mad_recall --grid lr=1e-3,1e-2 "${MAD_SET[@]}" --set chunk=16 \
    --set mem_chunk=16 --set decay_max=0 "${j[@]}" --out "$OUT/mad_recall-hope-seeds"
}

# the single needle with seeds 1 and 2 (seed 0: needle_d64, session 9) for the four models that learned it or the passkey
# at seed 0, at their passkey lrs (NIAH64's); Gated DeltaNet (chance at both lrs: "The needles and the forget gates") aside
needle_d64_seeds() {
  nlc sweep transformer transformer_conv titans:TitansLMM deltanet:DeltaNet --task needle --set dim=64 --set heads=1 \
    --set layers=2 --set steps=1000 --set eval_samples=8 --set titans.chunk=16 --set deltanet.chunk=16 \
    --set titans.lr_max=2 --set transformer.lr=3e-3 --set transformer_conv.lr=3e-3 --set titans.lr=1e-3 \
    --set DeltaNet.lr=3e-3 --seeds 2 --first-seed 1 --jobs "${JOBS_ZOO:-2}" --out "$OUT/needle-d64"
}

# Zoology's whole test set, up to 1024 tokens x 256 pairs: the mix trained as in mqar_mix_d64 (up to 64 pairs) but with
# the keys drawn from 256 tokens (task option keys; vocab 384), scored on the six configurations of mqar_mix_d64 and on
# 512x128 and 1024x256. TransformerConv and DeltaNet (the two that solved the 64-key mix) over 3 seeds, Titans LMM one
MIX_ZOO_EVAL=64x4/64x8/64x16/128x32/256x64/512x64/512x128/1024x256
mqar_mix_keys256() {
  local c=("${MIX64[@]}" --set keys=256 --set eval_mix="$MIX_ZOO_EVAL" --jobs "${JOBS_ZOO:-2}"
           --out "$OUT/mqar-mix-keys256")
  nlc sweep transformer_conv deltanet:DeltaNet "${c[@]}" --set transformer_conv.lr=3e-3 --set DeltaNet.lr=3e-2 \
    --set deltanet.chunk=16 --seeds 3
  nlc sweep titans:TitansLMM "${c[@]}" --set lr=3e-3 --set lr_max=2 --set chunk=16
}

# the lr sweep at d_model 128: each model at the three lrs of mqar_d64's grid it has not run at 128 (mqar_d128 ran each
# at its d64-best), seed 0, into mqar_d128's folder
mqar_d128_lrs() {
  local c=(--task mqar "${ZOO_COMMON[@]}" --set dim=128 --jobs "${JOBS_ZOO:-2}" --out "$OUT/mqar-d128")
  nlc sweep transformer "${c[@]}" --grid lr=1e-3,1e-2,3e-2
  nlc sweep deltanet:DeltaNet deltanet:GatedDeltaNet "${c[@]}" --set chunk=16 --grid lr=1e-3,3e-3,1e-2
}
mqar_d128_lrs_titans() {
  nlc sweep titans:TitansLMM --task mqar "${ZOO_COMMON[@]}" --set dim=128 --set lr_max=2 --set chunk=16 \
    --grid lr=1e-3,1e-2,3e-2 --jobs "${JOBS_ZOO:-2}" --out "$OUT/mqar-d128"
}

# Titans LMM diverged on the mix at its best lr (3e-3) in seed 0, with 64 keys (mqar_mix_d64, NaN at step 525) and with
# 256 (mqar_mix_keys256, step 164): the same cells with the curvature-following inner step (normalize = true,
# "The curvature-following inner step"), everything else as there; with 64 keys the paper's step again too (today's
# code); two sweeps at once, three cells in all
mqar_mix_titans_normalized() {
  local c=("${MIX64[@]}" --set lr=3e-3 --set lr_max=2 --set chunk=16)
  nlc sweep titans:TitansLMM "${c[@]}" --grid normalize=false,true --jobs 2 --out "$OUT/mqar-mix-titans-normalized" &
  nlc sweep titans:TitansLMM "${c[@]}" --set normalize=true --set keys=256 --set eval_mix="$MIX_ZOO_EVAL" \
    --out "$OUT/mqar-mix-keys256"
  wait
}

# Session 15. The lr sweep on the mix (mqar_mix_d64 ran each model at its 8-pair best): every model at the three other
# lrs of mqar_d64's grid, seed 0, into mqar_mix_d64's folder; Titans LMM (run at 1e-3 and 3e-3) at 3e-4 and 1e-2
mqar_mix_lrs() {
  local c=("${MIX64[@]}" --jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-mix-d64")
  nlc sweep transformer transformer_conv "${c[@]}" --grid lr=1e-3,1e-2,3e-2
  nlc sweep deltanet:DeltaNet deltanet:GatedDeltaNet "${c[@]}" --set chunk=16 --grid lr=1e-3,3e-3,1e-2
}
mqar_mix_lrs_titans() {
  nlc sweep titans:TitansLMM "${MIX64[@]}" --grid lr=3e-4,1e-2 --set lr_max=2 --set chunk=16 \
    --jobs "${JOBS_ZOO:-1}" --out "$OUT/mqar-mix-d64"
}

# MAD seeds 1 and 2 at the lrs mad_d64_seeds did not seed (it seeded each model's best): mad_d64_lrs' three lrs and
# mad_d64_lrs_more's 3e-2 for DeltaNet and Gated DeltaNet (Titans LMM learned nothing at 3e-2: not seeded), on recall,
# noisy recall, selective copy, into mad_d64_lrs' folders
mad_d64_lrs_seeds() {
  local c=(--seeds 2 --first-seed 1 "${MAD_SET[@]}" --jobs "${JOBS_ZOO:-2}")
  local t=(--set titans.lr_max=2 --set titans.chunk=16) d=(--set deltanet.chunk=16) task
  for task in mad_recall mad_noisy_recall mad_selective_copy; do
    nlc sweep deltanet:DeltaNet deltanet:GatedDeltaNet --task "$task" --grid lr=3e-2 "${c[@]}" "${d[@]}" \
      --out "$OUT/$task-d64-lrs"
  done
  nlc sweep "${MAD_MODELS[@]}" --task mad_recall --grid lr=1e-3,3e-3 "${c[@]}" "${t[@]}" "${d[@]}" \
    --out "$OUT/mad_recall-d64-lrs"
  nlc sweep transformer --task mad_noisy_recall --grid lr=1e-3,1e-2 "${c[@]}" --out "$OUT/mad_noisy_recall-d64-lrs"
  nlc sweep transformer_conv deltanet:DeltaNet deltanet:GatedDeltaNet titans:TitansLMM --task mad_noisy_recall \
    --grid lr=1e-3,3e-3 "${c[@]}" "${t[@]}" "${d[@]}" --out "$OUT/mad_noisy_recall-d64-lrs"
  nlc sweep transformer transformer_conv deltanet:GatedDeltaNet --task mad_selective_copy --grid lr=1e-3,1e-2 "${c[@]}" \
    "${d[@]}" --out "$OUT/mad_selective_copy-d64-lrs"
  nlc sweep deltanet:DeltaNet titans:TitansLMM --task mad_selective_copy --grid lr=1e-3,3e-3 "${c[@]}" "${t[@]}" "${d[@]}" \
    --out "$OUT/mad_selective_copy-d64-lrs"
}

# The lr check of lm_budget at its 2000 steps (lm_equal_params_lr ran it at 150): each model at the neighbour of 3e-3
# that the 150-step check pointed to (1e-2 where 1e-2 was better there: Titans LMM, Gated DeltaNet; 1e-3 where it was
# worse or diverged: the Transformer, Titans MAG, CMS, Hope), seed 0, lm_budget's sizes (LM_SET's dims), one sweep per
# model in LM_LR_MODELS's order (default all six, the slow first); LM_LR_AT=1e-3 runs them all at that lr instead,
# LM_LR_SEEDS seeds from LM_LR_FIRST (default seed 0 alone)
declare -A LM_DIM=([transformer]=192 [titans:TitansLMM]=264 [titans:TitansMAG]=208 [hope]=168 [cms]=168
                   [deltanet:GatedDeltaNet]=288)
declare -A LM_LR=([transformer]=1e-3 [titans:TitansLMM]=1e-2 [titans:TitansMAG]=1e-3 [hope]=1e-3 [cms]=1e-3
                  [deltanet:GatedDeltaNet]=1e-2)
lm_budget_lr() {
  local m
  for m in ${LM_LR_MODELS:-hope titans:TitansLMM titans:TitansMAG cms deltanet:GatedDeltaNet transformer}; do
    nlc sweep "$m" --task lm --set steps="${LM_STEPS:-2000}" --set layers=2 --set heads=4 --set batch=8 --set seq_len=128 \
      --set eval_batches=8 --set dim="${LM_DIM[$m]}" --set lr="${LM_LR_AT:-${LM_LR[$m]}}" \
      --seeds "${LM_LR_SEEDS:-1}" --first-seed "${LM_LR_FIRST:-0}" --jobs 1 --out "$OUT/lm-1m-2000-lr"
  done
}

# any function above by name; `all` the first three
cmd=${1:-all}
if [ "$cmd" = all ]; then
  mqar; niah; ablations
elif [[ "$cmd" =~ ^[a-z0-9_]+$ ]] && declare -F "$cmd" >/dev/null; then
  "$cmd"
else
  echo "usage: $0 NAME, one of: $(declare -F | awk '{print $3}' | tr '\n' ' ')all" >&2
  exit 2
fi
