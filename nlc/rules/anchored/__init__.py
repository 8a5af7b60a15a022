from nlc.rules import Momentum, Rule, register

register(Rule(
    name="anchored",
    gates={"lr": 0.1, "momentum": 0.9, "decay": 0.0},
    doc="S_t = eta_t S_{t-1} - theta_t grad ; W_t = M_0 + (1 - alpha_t)(W_{t-1} - M_0) + S_t  (forget toward M_0)",
    momentum=Momentum.GATE,
    uses_init=True,
))
