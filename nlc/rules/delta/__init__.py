from nlc.rules import Momentum, Rule, register

register(Rule(
    name="delta",
    gates={"lr": 0.1, "decay": 0.0},
    # the gate multiplies the whole state before the delta step (Gated DeltaNet), unlike dgd's
    # W (a I - theta k k^T), where it does not multiply the k k^T term
    doc="W_t = a_t W_{t-1} (I - theta_t k k^T) - theta_t grad, a_t = 1 - alpha_t  (gated delta rule; learn dot: Gated DeltaNet)",
    momentum=Momentum.NEVER,
))
