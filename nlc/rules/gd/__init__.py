from nlc.rules import Momentum, Rule, register

register(Rule(
    name="gd",
    gates={"lr": 0.1, "decay": 0.0},
    doc="W_t = (1 - alpha_t) W_{t-1} - theta_t grad  (momentum with eta = 0)",
    kernels=("linear_memory", "mlp_memory"),
    momentum=Momentum.NEVER,
    module="nlc.rules.momentum.update",  # gd is the momentum rule without its buffer (eta = None)
))
