from nlc.rules import CURVATURE_OPTION, Momentum, Rule, register

register(Rule(
    name="momentum",
    gates={"lr": 0.1, "momentum": 0.9, "decay": 0.0},
    doc="S_t = eta_t S_{t-1} - theta_t grad ; W_t = (1 - alpha_t) W_{t-1} + S_t  (Titans eqs. 13-14)",
    kernels=("linear_memory", "mlp_memory"),
    # `normalize`: theta_t / (1 + C theta_t c_t), c_t the Gauss-Newton curvature of token t's loss along its
    # gradient, C the chunk (../momentum/README.md, "The curvature-following step")
    options={CURVATURE_OPTION: (False, True)},
    curvature=True,
    momentum=Momentum.ALWAYS,
))
