"""The multiplicative step: the two losses, the numerical policy of a step,
the step itself, and the additive parts that a basis step is made of.

Every update of the engine, of codes or of the basis, is
``x <- max(x * num / (den + eps), floor)`` (:func:`mu_step`); the sweep
kernels (:mod:`bcnmf.core.updates`, :mod:`bcnmf.core.masked`,
:mod:`bcnmf.core._torch_sparse`) build ``num`` and ``den`` and the basis
step (:func:`bcnmf.core.updates.basis_step`) sums the blocks'
:class:`Parts`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from .backend import maximum_

FROBENIUS = "frobenius"
KL = "kullback-leibler"


@dataclass(frozen=True)
class StepPolicy:
    """Numerical policy of the multiplicative steps (one place for epsilons).

    ``eps`` is added to every denominator (and to KL predictions), ``gamma``
    is the damping exponent applied as ``max(r, eps) ** gamma``, and the
    floors are lower bounds applied after each step (0 means none).
    ``basis_eps``, when set, replaces ``eps`` in the basis step (stable mode
    scales the two differently with the data, see ``core.fit.step_policy``).
    """

    eps: float
    gamma: float = 1.0
    code_floor: float = 0.0
    basis_floor: float = 0.0
    basis_eps: float | None = None


def basis_policy(policy: StepPolicy) -> StepPolicy:
    """The policy of basis steps: ``basis_eps`` in place of ``eps`` when set."""
    return policy if policy.basis_eps is None else replace(policy, eps=policy.basis_eps)


def mu_step(x: np.ndarray, num: np.ndarray, den: np.ndarray, policy: StepPolicy,
            floor: float) -> None:
    """In place ``x <- max(x * r, floor)`` with ``r = num / (den + eps)``,
    damped to ``max(r, eps) ** gamma`` when ``gamma != 1``."""
    r = num / (den + policy.eps)
    if policy.gamma != 1.0:
        maximum_(r, policy.eps)
        r **= policy.gamma
    x *= r
    if floor > 0:
        maximum_(x, floor)


@dataclass
class Parts:
    """Additive sufficient statistics of a basis step (sum over blocks).

    Attributes
    ----------
    cross : array, K x F
    second : array, K x K (squared error) or K (KL)
    masked : bool, class attribute
        False: ``second`` has the unmasked shape.  The parts of blocks with
        missing values (:class:`bcnmf.core.masked.MaskedParts`) say True and
        hold ``second`` per feature (K x F).
    """

    cross: np.ndarray
    second: np.ndarray

    masked: ClassVar[bool] = False

    def __iadd__(self, other: "Parts") -> "Parts":
        self.cross += other.cross
        self.second += other.second
        return self

    def head(self, k: int) -> "Parts":
        """The parts of the first ``k`` basis rows (``second`` keeps its
        columns: squared error's ``C_head^T C`` is multiplied by the whole basis)."""
        return type(self)(self.cross[:k], self.second[:k])
