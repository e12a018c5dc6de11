"""Training: the configuration, the loop and what it needs (schedule, sampler, checkpoints, budget)."""
