"""The anchored rule: momentum on D = W - M_0, see README.md."""
from __future__ import annotations

from nlc.rules.momentum import update as momentum


def token(lv, li, W, S, grad, x, theta, alpha, eta, W0=None):
    D, S = momentum.token(lv, li, W - W0, S, grad, x, theta, alpha, eta)
    return W0 + D, S


def chunk(lv, Ws, Ss, u, theta, alpha, eta, W0s=None):
    Ds, Ss = momentum.chunk(lv, [W - W0 for W, W0 in zip(Ws, W0s)], Ss, u, theta, alpha, eta)
    return [W0 + D for W0, D in zip(W0s, Ds)], Ss
