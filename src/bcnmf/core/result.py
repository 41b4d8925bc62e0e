"""Frozen result of :func:`bcnmf.factorize`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, repr=False)
class FactorizationResult:
    """What a bcNMF fit returns (sample-major, like the estimator).

    Attributes
    ----------
    components : ndarray of shape (n_components, n_features)
        The contrastive topics, the basis of both datasets' codes (the paper's W
        transposed).
    codes : ndarray of shape (n_target, n_components)
        Target codes (H_X transposed).
    background_codes : ndarray of shape (n_background, n_components) or None
        Background codes (H_Y transposed).
    history : dict of ndarray
        ``"target"`` D(X | codes components), ``"background"`` D(Y | ...),
        ``"objective"`` = target - alpha_raw * background, one entry per
        sweep (the state entering it) plus the final state.
    n_iter : int
        Number of sweeps of the selected run.
    alpha_raw : float
        The contrast weight as applied to the sums (the paper's alpha).
    converged : bool
        Whether the stopping rule fired (always False in reference mode,
        which runs a fixed number of sweeps).
    restart_objectives, restart_agreement : ndarray of shape (n_init,)
        Final objective of every restart and its mean matched cosine
        similarity with the other restarts.
    best_restart : int
        Index of the selected restart (the reference of the consensus).
    topic_stability : ndarray of shape (n_components,) or None
        With ``n_init > 1``: per topic, the mean cosine similarity of its
        Hungarian-matched topics in the other restarts (1 = found by every
        restart); None for a single run.
    """

    components: np.ndarray
    codes: np.ndarray
    background_codes: np.ndarray | None
    history: dict
    n_iter: int
    alpha_raw: float
    converged: bool
    restart_objectives: np.ndarray
    restart_agreement: np.ndarray
    best_restart: int
    topic_stability: np.ndarray | None = None
    alpha: float | None = None
    alpha_path: dict | None = None

    @property
    def objective(self) -> float:
        """Final value of the optimised objective."""
        return float(self.history["objective"][-1])

    def __repr__(self) -> str:
        k, f = self.components.shape
        nb = None if self.background_codes is None else self.background_codes.shape[0]
        return (f"FactorizationResult(n_components={k}, n_features={f}, "
                f"n_target={self.codes.shape[0]}, n_background={nb}, n_iter={self.n_iter}, "
                f"objective={self.objective:.6g}, converged={self.converged})")
