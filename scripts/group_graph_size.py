"""Hope's compiled segment program, grouped and ungrouped: torch.compile with aot_autograd and a
compiler that only counts call_function nodes (no Inductor), so the forward and backward graphs are
counted without generating code. The times printed are one after the other: not a comparison.

    python scripts/group_graph_size.py
"""
import time

import torch
import torch._dynamo
from torch._dynamo.backends.common import aot_autograd

import nlc

torch.set_num_threads(1)
sizes = []


def counter(kind):
    def count(gm, example_inputs):
        sizes.append((kind, sum(1 for n in gm.graph.nodes if n.op == "call_function")))
        return gm.forward
    return count


for grouped in (True, False):
    torch._dynamo.reset()
    sizes.clear()
    torch.manual_seed(0)
    m = nlc.compile("hope", group_levels=grouped)
    m._compile_program(backend=aot_autograd(fw_compiler=counter("fw"), bw_compiler=counter("bw")))
    x = torch.randint(0, 256, (8, 129))
    t = time.time()
    out = m(x[:, :-1], targets=x[:, 1:])
    out.loss.backward()
    print("grouped" if grouped else "ungrouped", "graphs (kind, call_function nodes):", sizes,
          f"first step without Inductor {time.time() - t:.1f} s", "loss", round(out.loss.item(), 4), flush=True)
