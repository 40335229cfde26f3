"""Return and advantage estimators: GAE, V-trace, n-step returns (numpy, flat batches)."""

from distcore.rllib._internal.postprocessing import compute_gae, compute_n_step, compute_vtrace

__all__ = ["compute_gae", "compute_n_step", "compute_vtrace"]
