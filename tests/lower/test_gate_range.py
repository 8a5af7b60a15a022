"""Every built-in memory spec is finite at initialisation and for a few training steps across the
whole documented range of its in-context learning rate (docs/specs.md, "Gates and scales"), and with
its gates pushed to the ends of their ranges (sigmoid gates saturated at 0 or 1)."""
import math

import pytest
import torch

import nlc

# (spec, model, the top of its documented lr_max range)
SPECS = [("specs/titans.nl", "TitansLMM", 2.0), ("specs/titans.nl", "TitansMAC", 2.0),
         ("specs/titans.nl", "TitansMAG", 2.0), ("specs/titans.nl", "TitansMAL", 2.0),
         ("specs/titans_anchored.nl", "TitansAnchored", 2.0), ("specs/hope.nl", None, 5.0)]
# the peer specs: no lr_max range documented; their gates are sigmoids, checked at the defaults and
# saturated at both ends
PEERS = [("specs/deltanet.nl", "DeltaNet"), ("specs/deltanet.nl", "GatedDeltaNet"), ("specs/ttt.nl", "TTTLinear"),
         ("specs/ttt.nl", "TTTMLP"), ("specs/miras.nl", "Yaad"), ("specs/miras.nl", "Moneta")]
SMALL = dict(dim=32, layers=1)


def _batch(T, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (B, T + 1), generator=g)
    return x[:, :-1], x[:, 1:]


def _saturate_gates(m, seed=0):
    """Push every gate projection (the linears feeding sigmoid gates: out = heads) to +-30: each
    head's gate is then ~0 or ~1, the ends of its range."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in m.blocks.values():
            for inst in layer:
                for mod in inst.mods.values():
                    if isinstance(mod, torch.nn.Linear) and mod.out_features == 4:
                        mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * 30)


def _check(spec, model, lrs, T, steps):
    x, y = _batch(T)
    for lr_max in lrs:
        for saturate in (False, True):
            torch.manual_seed(0)
            m = nlc.compile(spec, model=model, **SMALL, **({} if lr_max is None else {"lr_max": lr_max}))
            if saturate:
                _saturate_gates(m)
            opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
            for step in range(steps):
                out = m(x, targets=y)
                assert math.isfinite(float(out.loss.detach())), (model, lr_max, saturate, step)
                opt.zero_grad()
                out.loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
                assert torch.isfinite(gn), (model, lr_max, saturate, step)
                opt.step()


@pytest.mark.parametrize("spec,model,top", SPECS, ids=[s[1] or "Hope" for s in SPECS])
def test_finite_at_the_top_of_the_documented_lr_range(spec, model, top):
    _check(spec, model, (top,), T=128, steps=2)


@pytest.mark.slow
@pytest.mark.parametrize("spec,model,top", SPECS, ids=[s[1] or "Hope" for s in SPECS])
def test_finite_across_the_documented_lr_range(spec, model, top):
    _check(spec, model, (0.0, 0.25 * top, 0.5 * top, top), T=512, steps=3)


@pytest.mark.parametrize("spec,model", [pytest.param(*p, id=p[1], marks=() if p[1] == "GatedDeltaNet" else pytest.mark.slow)
                                        for p in PEERS])  # one in the default run (its budget), all under -m slow
def test_peer_specs_finite_with_gates_at_their_ends(spec, model):
    _check(spec, model, (None,), T=64, steps=2)
