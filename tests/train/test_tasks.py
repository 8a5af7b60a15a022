import torch
import torch.nn.functional as F

from nlc.train import tasks as T


def onehot(pred: torch.Tensor) -> torch.Tensor:
    return F.one_hot(pred, 256).float()


def mqar_oracle(tokens):
    """Reads the key-value pairs from the input alone and answers every query."""
    pred = torch.zeros_like(tokens)
    for b, row in enumerate(tokens.tolist()):
        table = {}
        for t, tok in enumerate(row):
            if tok < T.MQAR_VAL_BASE and tok in table:
                pred[b, t] = table[tok]
            elif tok < T.MQAR_VAL_BASE and t + 1 < len(row):
                table.setdefault(tok, row[t + 1])
    return pred


def test_mqar_shapes_and_oracle():
    tb = T.mqar(batch=5, num_pairs=6, num_queries=4, seed=1)
    assert tb.tokens.shape == tb.targets.shape == tb.mask.shape == (5, 2 * 6 + 2 * 4)
    assert tb.mask.sum() == 5 * 4
    assert T.accuracy(onehot(mqar_oracle(tb.tokens)), tb) == 1.0
    assert T.accuracy(torch.zeros(5, 20, 256), tb) < 0.2
    assert torch.equal(T.mqar(5, 6, 4, seed=1).tokens, tb.tokens)


def niah_oracle(tokens, n_digits=5):
    pred = torch.zeros_like(tokens)
    for b, row in enumerate(tokens.tolist()):
        s = bytes(row).decode()
        i = s.index("pass key is ") + len("pass key is ")
        key = s[i:i + n_digits]
        start = len(row) - n_digits - 1  # the first digit is predicted here
        for j, ch in enumerate(key):
            pred[b, start + j] = ord(ch)
    return pred


def test_niah_shapes_depths_and_oracle():
    for depth in (0.0, 0.5, 1.0):
        tb = T.niah(batch=3, length=300, depth=depth, seed=2)
        assert tb.tokens.shape == (3, 300) and tb.mask.sum() == 3 * 5
        assert T.accuracy(onehot(niah_oracle(tb.tokens)), tb) == 1.0
        text = bytes(tb.tokens[0].tolist()).decode()
        pos = text.index("The pass key is") / 300
        assert abs(pos - depth * (300 - 120) / 300) < 0.3
    assert bytes(T.niah(1, 300, 0.5, seed=2).targets[0][T.niah(1, 300, 0.5, seed=2).mask[0]].tolist()).isdigit()


def test_niah_too_short():
    import pytest

    with pytest.raises(ValueError, match="too short"):
        T.niah(1, 50, 0.5)


def test_continual_tasks_and_oracle():
    for name, fn in T.CONTINUAL_TASKS.items():
        tb = T.continual_task(name, batch=4, n=6, seed=0)
        assert tb.tokens.shape == (4, 14) and tb.mask.sum() == 4 * 6
        pred = torch.zeros_like(tb.tokens)
        for b, row in enumerate(tb.tokens.tolist()):
            x = bytes(row[1:7]).decode()
            pred[b, 7:13] = torch.tensor(list(fn(x).encode()))
        assert T.accuracy(onehot(pred), tb) == 1.0, name
    # different tasks carry different markers, so all can be solved at once
    markers = {T.continual_task(n, 1).tokens[0, 0].item() for n in T.CONTINUAL_TASKS}
    assert len(markers) == len(T.CONTINUAL_TASKS)


def test_forgetting():
    acc = [[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.25, 0.5, 1.0]]
    assert T.forgetting(acc) == ((1.0 - 0.25) + (1.0 - 0.5)) / 2
    assert T.forgetting([[0.7]]) == 0.0


HAYSTACK = __import__("numpy").frombuffer(
    b"".join(f"line {i}: x = {i * 7919 % 1000} is a value.\n".encode() for i in range(400)), dtype="uint8")


def needle_oracle(tokens, n_digits=T.NEEDLE_DIGITS):
    """Finds the queried word at the end, then its number in the needle: a key lookup, not a copy of the
    last number seen (the haystack is full of numbers and 'is' sentences)."""
    pred = torch.zeros_like(tokens)
    for b, row in enumerate(tokens.tolist()):
        s = bytes(row).decode()
        word = s[s.rindex("magic number for ") + len("magic number for "):].split(" ")[0]
        at = s.index(f"The magic number for {word} is ") + len(f"The magic number for {word} is ")
        start = len(row) - n_digits - 1
        for j, ch in enumerate(s[at:at + n_digits]):
            pred[b, start + j] = ord(ch)
    return pred


def test_needle_shapes_depths_oracle_and_haystack():
    for depth in (0.0, 0.5, 1.0):
        tb = T.needle(batch=3, length=300, depth=depth, haystack=HAYSTACK, seed=2)
        assert tb.tokens.shape == (3, 300) and tb.mask.sum() == 3 * T.NEEDLE_DIGITS
        assert T.accuracy(onehot(needle_oracle(tb.tokens)), tb) == 1.0
        text = bytes(tb.tokens[0].tolist()).decode()
        assert text.count("magic number for") == 2  # the needle and the query, nothing else
        assert "line " in text  # the haystack is the given text
        pos = text.index("\nThe magic number for") / 300
        assert abs(pos - depth * (300 - 80) / 300) < 0.3
    a = T.needle(4, 300, 0.5, HAYSTACK, seed=3)
    assert torch.equal(a.tokens, T.needle(4, 300, 0.5, HAYSTACK, seed=3).tokens)
    assert not torch.equal(a.tokens, T.needle(4, 300, 0.5, HAYSTACK, seed=4).tokens)
    assert len({bytes(r.tolist()) for r in a.tokens}) == 4  # each row its own window, key and number


def test_needle_mixed_rows_differ_in_depth_and_key():
    tb = T.needle_mixed(6, 256, HAYSTACK, seed=0)
    assert tb.tokens.shape == (6, 256) and tb.mask.sum() == 6 * T.NEEDLE_DIGITS
    rows = [bytes(r.tolist()).decode() for r in tb.tokens]
    assert len({r.index("\nThe magic number") for r in rows}) > 3
    assert T.accuracy(onehot(needle_oracle(tb.tokens)), tb) == 1.0


def test_needle_bad_input():
    import pytest

    with pytest.raises(ValueError, match="too short"):
        T.needle(1, 60, 0.5, HAYSTACK)
    with pytest.raises(ValueError, match="haystack has"):
        T.needle(1, 4096, 0.5, HAYSTACK[:100])
    with pytest.raises(ValueError, match="depth"):
        T.needle(1, 256, 1.5, HAYSTACK)
