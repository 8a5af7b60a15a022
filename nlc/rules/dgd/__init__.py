from nlc.rules import Momentum, Rule, register

register(Rule(
    name="dgd",
    gates={"lr": 0.1, "decay": 0.0, "momentum": 0.0},
    # `layers`: which layers get the (a I - eta k k^T) term (ambiguity 1 of Hope §8);
    # `normalize`: the Sherman-Morrison step eta' = eta / (1 + eta ||k||^2) (NL eqs. 56-57)
    options={"layers": ("first", "all"), "normalize": (True, False)},
    doc="W_t = W_{t-1}((1 - alpha_t) I - theta_t k k^T) + S_t  (Hope eq. 88, NL eqs. 56-57)",
    kernels=("linear_memory",),
    momentum=Momentum.GATE,
    key_projection=True,
))
