"""Adam as TensorFlow 1's ``tf.train.AdamOptimizer`` updates, the original trainer's optimiser.

TF1 (``AnimeGANv2.py`` ``build_model``: ``tf.train.AdamOptimizer(lr, beta1=0.5,
beta2=0.999)``, epsilon left at its 1e-8) folds the bias corrections into the step size
and adds epsilon to sqrt(v) itself:

    lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t);   w -= lr_t * m / (sqrt(v) + eps)

``torch.optim.Adam`` adds epsilon to sqrt(v / (1 - beta2^t)) instead, i.e. an epsilon
1/sqrt(1 - beta2^t) times smaller (31.6x at step 1). The two agree while |g| >> 3e-7 and
differ for small gradients in the first steps: with |g| = 1e-7 at step 1, TF moves a weight
by 0.24 lr and torch by 0.91 lr.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


class TFAdam(torch.optim.Optimizer):
    """Adam with TF1's update rule (see the module docstring); state as ``torch.optim.Adam``'s
    (``step``, ``exp_avg``, ``exp_avg_sq``), so checkpoints of either load into it."""

    def __init__(self, params: Iterable[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102 - torch.optim.Optimizer's contract
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            params, grads, ms, vs = [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                params.append(p)
                grads.append(p.grad)
                ms.append(state["exp_avg"])
                vs.append(state["exp_avg_sq"])
            if not params:
                continue
            t = float(self.state[params[0]]["step"])  # one step count per group: all its params step together
            lr_t = group["lr"] * math.sqrt(1 - beta2**t) / (1 - beta1**t)
            torch._foreach_lerp_(ms, grads, 1 - beta1)  # m += (g - m) (1 - beta1), as TF's ApplyAdam
            torch._foreach_mul_(vs, beta2)
            torch._foreach_addcmul_(vs, grads, grads, 1 - beta2)
            denom = torch._foreach_sqrt(vs)
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_addcdiv_(params, ms, denom, -lr_t)
        return loss
