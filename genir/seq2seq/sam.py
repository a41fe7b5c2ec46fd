"""Sharpness-aware minimization (SAM, Foret et al. 2021) as a Lightning-compatible optimizer.

DSI++ found that flatter minima forget less: a model at a flat minimum of the old documents'
loss moves less on it when later updates pull it elsewhere. SAM minimizes the worst loss within
an L2 ball of radius ``rho`` around the weights, approximated by one ascent step:

1. gradient ``g`` at the weights ``w`` (first forward/backward);
2. move to ``w + e`` with ``e = rho * g / ||g||`` (the steepest ascent of radius ``rho``);
3. gradient at ``w + e`` (second forward/backward);
4. return to ``w`` and let the base optimizer (AdamW) step with the gradient of step 3.

Lightning hands ``optimizer.step`` a closure that runs ``training_step``, ``zero_grad`` and
``backward``; SAM calls it twice, so one optimizer step costs two forward/backward passes.
The base optimizer owns all state (Adam moments), so checkpoints and resumes go through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import PreTrainedModel

from genir.errors import GenirError
from genir.seq2seq.training import Seq2SeqModule

DEFAULT_RHO = 0.05


class SAM(torch.optim.Optimizer):
    """Wraps a built optimizer: its parameter groups, learning rates and state are shared.

    Args:
        base_optimizer: the optimizer that takes the actual step (e.g. ``torch.optim.AdamW``).
        rho: radius of the neighbourhood whose worst loss is minimized (> 0).
    """

    def __init__(self, base_optimizer: torch.optim.Optimizer, rho: float = DEFAULT_RHO) -> None:
        if not rho > 0:
            raise GenirError(f"SAM needs a positive rho, got {rho!r}")
        self.base_optimizer = base_optimizer
        self.rho = rho
        # The same group dicts as the base optimizer: an LR scheduler attached to SAM sets the
        # learning rate the base optimizer reads.
        super().__init__(base_optimizer.param_groups, {})
        self.param_groups = base_optimizer.param_groups

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One SAM step; ``closure`` re-evaluates the loss with gradients (Lightning's closure).

        Returns:
            The loss of the first evaluation (at the unperturbed weights).
        Raises:
            GenirError: no closure was given (e.g. ``16-mixed`` precision's gradient scaler).
        """
        if closure is None:
            raise GenirError("SAM evaluates the loss twice per step and needs the closure (use 32-true or bf16-mixed precision)")
        with torch.enable_grad():
            loss = closure()
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return loss
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        scale = self.rho / (grad_norm + 1e-12)
        ascent = [p.grad * scale for p in params]
        torch._foreach_add_(params, ascent)
        # Lightning's closure zeroes gradients itself on every batch that starts an accumulation;
        # zeroing here as well keeps SAM correct for any closure that does not.
        self.zero_grad()
        with torch.enable_grad():
            closure()
        torch._foreach_sub_(params, ascent)
        self.base_optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_optimizer.load_state_dict(state_dict)


class SAMSeq2SeqModule(Seq2SeqModule):
    """:class:`~genir.seq2seq.training.Seq2SeqModule` whose AdamW steps through SAM when ``rho > 0``.

    Args:
        model: the seq2seq model.
        rho: SAM's radius; 0 trains with plain AdamW (exactly :class:`Seq2SeqModule`).
        kwargs: :class:`Seq2SeqModule` arguments (``lr``, ``warmup_steps``, ``total_steps``...).
    """

    def __init__(self, model: PreTrainedModel, rho: float = 0.0, **kwargs: Any) -> None:
        if rho < 0:
            raise GenirError(f"SAM's rho must be 0 (off) or positive, got {rho!r}")
        super().__init__(model, **kwargs)
        self.rho = rho

    def configure_optimizers(self) -> dict[str, Any]:
        config = super().configure_optimizers()
        if not self.rho:
            return config
        sam = SAM(config["optimizer"], rho=self.rho)
        scheduler = torch.optim.lr_scheduler.LambdaLR(sam, self._lr_factor)
        return {"optimizer": sam, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
