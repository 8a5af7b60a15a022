"""scripts/mqar_by_pair.py: MQAR accuracy by the written position of the queried pair."""

import torch
import torch.nn as nn

from nlc.train.tasks import MQAR_KEY_BASE, MQAR_VAL_BASE


class RecentOracle(nn.Module):
    """Answers a query only when its pair is among the `keep` most recently written: a memory that
    forgets all but the last writes (what docs/results.md once suspected of Gated DeltaNet)."""

    def __init__(self, keep: int):
        super().__init__()
        self.keep = keep
        self.w = nn.Parameter(torch.zeros(1))

    def init_state(self, b):
        return None

    def forward(self, tokens, state=None):
        logits = torch.zeros(*tokens.shape, 256)
        for b, row in enumerate(tokens.tolist()):
            written = []
            for t in range(len(row) - 1):
                k = row[t]
                if not MQAR_KEY_BASE <= k < MQAR_VAL_BASE:
                    continue
                known = dict(written[-self.keep:])
                if k in dict(written):
                    logits[b, t, known.get(k, 0)] = 1.0  # a forgotten pair: answer the filler byte
                else:
                    written.append((k, row[t + 1]))
        return type("Out", (), {"logits": logits})()


def test_accuracy_by_pair_finds_a_memory_of_the_last_writes(script):
    s = script("mqar_by_pair")
    accs = s.accuracy_by_pair(RecentOracle(keep=5), pairs=8, seq_len=64, batches=2, seed=3)
    assert accs == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert s.accuracy_by_pair(RecentOracle(keep=8), pairs=8, seq_len=64, batches=1, seed=0) == [1.0] * 8


def test_the_script_trains_and_prints_at_toy_size(script, monkeypatch, capsys):
    s = script("mqar_by_pair")
    monkeypatch.setattr("sys.argv", ["mqar_by_pair.py", "transformer", "--lr", "1e-3", "--steps", "2", "--pairs", "2",
                                     "--seq-len", "16", "--eval-pairs", "4", "--eval-len", "32", "--set", "dim=16"])
    s.main()
    out = capsys.readouterr().out
    assert "scored on 4 pairs / 32 tokens" in out and "first 2:" in out
