"""Training: the run (`loop.train_and_evaluate`), its jitted steps (`steps`),
evaluation during training (`evaluation`), the log (`progress`), the state
and its layout (`state`), the optimizer (`optim`), the loss's gradient whole
or in micro-batches (`gradients`), checkpoints (`checkpoint`, the only module
that imports Orbax), a finished run (`runs`) and several runs side by side
(`comparison`)."""
