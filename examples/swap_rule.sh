#!/usr/bin/env bash
# One-line edits of a spec, and what `nlc check` / `nlc graph` say about them.
#
#     bash examples/swap_rule.sh            # from the repository root; a few seconds, nothing is trained
#
# A level's rule, objective, clock or a spec parameter is one line of a .nl file. This script
# makes each edit on a copy in a temporary folder (the built-in specs are never modified)
# and shows the level table that changes. Imports such as "optim/adamw.nl" still resolve:
# next to the file first, then in the built-in specs/ folder.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { echo; echo "\$ $*"; "$@"; }
# edit IN OUT SED-ARGS...: sed IN into OUT, and fail loudly when the edit changed nothing
# (a pattern gone stale after a spec changed must not pass silently)
edit() {
  local in=$1 out=$2; shift 2
  sed "$@" "$in" > "$out.new"
  if cmp -s "$in" "$out.new"; then echo "swap_rule.sh: the edit of $in matched nothing: $*" >&2; exit 1; fi
  mv "$out.new" "$out"
}

# --- 0. the model as shipped
run nlc check specs/titans.nl --model TitansLMM

# --- 1. a spec parameter: --set, no edit at all (a wider model, longer chunks)
run nlc check specs/titans.nl --model TitansLMM --set dim=128 --set chunk=64

# --- 2. swap the update rule: Titans' momentum -> delta gradient descent (NL eq. 88)
edit specs/titans.nl "$tmp/titans_dgd.nl" \
  's/rule momentum(lr = lr_max \/ chunk \* (1 - eta) \* \(sigmoid(linear(h, out = heads))\), momentum = eta, decay = \(.*\))  # eqs. 13-14/rule dgd(lr = \1, decay = \2)  # NL eq. 88/' 
run diff specs/titans.nl "$tmp/titans_dgd.nl" || true
run nlc check "$tmp/titans_dgd.nl" --model TitansLMM

# --- 3. swap the objective (attentional bias): l2 -> Huber (Miras' Yaad) in the same file
edit "$tmp/titans_dgd.nl" "$tmp/titans_dgd.nl" 's/learn l2  # eq. 12/learn huber(delta = 0.5)/' 
run nlc check "$tmp/titans_dgd.nl" --model TitansLMM

# --- 4. Hope's open choices as one-line edits: DGD on every layer (ambiguity 1), inner
#        momentum (ambiguity 3), the CMS variant
edit specs/hope.nl "$tmp/hope_variants.nl" \
    -e 's/rule dgd(lr = eta, decay = alpha, layers = all)  # eq. 88/rule dgd(lr = eta, decay = alpha, momentum = 0.9, layers = all)  # eq. 88/' \
    -e 's/variant = sequential/variant = independent/' 
run diff specs/hope.nl "$tmp/hope_variants.nl" || true
run nlc check "$tmp/hope_variants.nl"

# --- 5. an adaptive q (ambiguity 2): q becomes a read of a new self-modifying memory mq
edit specs/hope.nl "$tmp/hope_adaptive_q.nl" \
    -e 's/q = l2norm(conv(linear(h)), groups = heads)  # eq. 83.*/q = l2norm(conv(mq(h)), groups = heads)  # adaptive q: q_t = M_q(x_t)/' \
    -e 's/level mk, mv, meta, malpha : Fast per head/level mk, mv, mq, meta, malpha : Fast per head/' 
run diff specs/hope.nl "$tmp/hope_adaptive_q.nl" || true
run nlc check "$tmp/hope_adaptive_q.nl"

# --- 6. swap the outer optimizer: AdamW -> M3 (NL-arXiv §7.2, Algorithm 1)
edit specs/cms.nl "$tmp/cms_m3.nl" \
  -e 's#import "optim/adamw.nl"#import "optim/m3.nl"#' -e 's/rule AdamW(lr = 3e-3, weight_decay = 0.01)/rule M3(lr = 2e-2, f = 4)/' 
run nlc check "$tmp/cms_m3.nl"
run nlc check specs/optim/m3.nl --set f=4

# --- 7. a mistake is a compiler error, not a traceback (exit status 2)
edit specs/titans.nl "$tmp/bad.nl" 's/clock tokens(chunk)  # eqs. 16-18/clock tokens(2.5)/' 
run nlc check "$tmp/bad.nl" --model TitansLMM || echo "(exit status $?)"

# --- 8. the level graph: bands by update frequency, fastest at the bottom
run nlc graph "$tmp/hope_adaptive_q.nl" -o "$tmp/hope_adaptive_q.mmd"
head -20 "$tmp/hope_adaptive_q.mmd"
run nlc graph specs/hope.nl -o "$tmp/hope.svg"   # .svg .png .pdf .dot .mmd (write it where you like and open it)
ls -l "$tmp/hope.svg" | awk '{print $5, "bytes of SVG"}'
