"""Training one adapter (or a multi-task mixture) for a task: the loop (accelerate, pickle-free checkpoints,
exact resume), the transfer strategies that build a target adapter on intermediate ones, and the end-to-end
`train_task` that loads data, trains, evaluates English dev and saves.

May import `core`, `methods`, `store`, `tasks` and `deploy` (merge-then-train trains on a merged base, which
`deploy` builds).
"""
