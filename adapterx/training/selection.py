"""Best-checkpoint selection and early stopping on the English dev set of the training task.

jiant's XTREME recipe (Phang et al. 2020): evaluate every 1,000 steps on the first 500 dev examples, stop after
30 evaluations without a gain, and load the best weights; XTREME's own scripts likewise keep the checkpoint with
the best dev score. The training loop calls `Selection.update` after each evaluation; the selection keeps a copy
of the trainable tensors at the best score (so a resumed run keeps its best-so-far: checkpoints carry that
copy under ``best.`` and the selection's state in their JSON) and says when to stop.

Scores compare on the evaluator's primary metric, its first key (accuracy, F1, ...); a score must be strictly
higher to count as a gain, so ties keep the earlier step.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import torch

log = logging.getLogger(__name__)

SELECT_RULES = ("best", "last")
BEST_PREFIX = "best."


@dataclass
class Selection:
    """Best-so-far on dev: its step, score and tensors, and evaluations since the last gain."""

    rule: str = "best"  # "best": load the best evaluated weights at the end; "last": keep the last
    patience: int | None = None  # stop after this many evaluations without a gain (None: never)
    metric: str | None = None
    best_step: int | None = None
    best_score: float | None = None
    best_scores: dict = field(default_factory=dict)
    evals_since_best: int = 0
    stopped_at: int | None = None
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def update(self, step: int, scores: dict[str, float], state: dict[str, torch.Tensor]) -> bool:
        """Record an evaluation at `step` (`state`: the trainable tensors now); True when training should stop."""
        metric = self.metric or next(iter(scores))
        self.metric = metric
        score = float(scores[metric])
        if self.best_score is None or score > self.best_score:
            self.best_step, self.best_score, self.evals_since_best = step, score, 0
            self.best_scores = {k: float(v) for k, v in scores.items() if k != "step"}
            self.best_state = {k: v.detach().clone().cpu() for k, v in state.items()}
        else:
            self.evals_since_best += 1
        if self.patience is not None and self.evals_since_best >= self.patience:
            self.stopped_at = step
            log.info(
                "early stop at step %d: %d evaluations without a gain over step %d (%s %.4f)",
                step,
                self.evals_since_best,
                self.best_step,
                metric,
                self.best_score,
            )
            return True
        return False

    # ------------------------------------------------------------------------------------------- checkpoints
    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """The best-so-far tensors, to be saved beside the trainable ones in a checkpoint."""
        return {BEST_PREFIX + k: v for k, v in (self.best_state or {}).items()}

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("best_state")
        return data

    def restore(self, data: dict | None, tensors: dict[str, torch.Tensor]) -> None:
        """Continue from a checkpoint's selection state and its ``best.`` tensors (the rule and patience stay
        this run's)."""
        if not data:
            return
        for name in ("metric", "best_step", "best_score", "best_scores", "evals_since_best"):
            setattr(self, name, data.get(name, getattr(self, name)))
        best = {k[len(BEST_PREFIX) :]: v for k, v in tensors.items() if k.startswith(BEST_PREFIX)}
        self.best_state = best or None

    # ------------------------------------------------------------------------------------------- the end
    def chosen(self, last_step: int) -> dict:
        """What the saved adapter is: which step, on what score, by which rule."""
        use_best = self.rule == "best" and self.best_state is not None
        return {
            "rule": self.rule if self.best_step is not None else "last (no evaluation)",
            "step": self.best_step if use_best else last_step,
            "metric": self.metric,
            "score": self.best_score if use_best else None,
            "scores": self.best_scores if use_best else {},
            "patience": self.patience,
            "stopped_early_at": self.stopped_at,
            "last_step": last_step,
        }

    def wants_best(self) -> bool:
        return self.rule == "best" and self.best_state is not None
