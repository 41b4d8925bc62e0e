"""Simulated and bundled target/background datasets.

Everything here is sample-major (samples x features), like scikit-learn and AnnData:

- :func:`make_contrastive_counts` simulates Poisson counts for a target and a background
  population that share five cell programs, the target also carrying two subtype programs
  (the "beta series" of the bcNMF paper).
- :func:`make_cell_type_counts` simulates single-cell-like negative binomial counts: discrete
  cell types shared by target and background, and a cell-type-dependent response to a
  stimulus on a few genes in half of the target cells.
- :func:`make_sample_counts` simulates counts of several samples (donors) per condition,
  each sample with its own random deviation, with or without a condition effect: the null
  and the alternative of sample-level statistics.
- :func:`normalize_log1p` is the per-cell total-count normalisation followed by ``log1p`` used
  before squared-error fits, for dense and sparse inputs.
- :func:`load_mice_protein` loads the Mice Protein Expression data (CC BY 4.0) shipped inside the
  package.
- :func:`load_shared_dataset` loads a developer benchmark folder ``shared/data/<name>/`` (not
  shipped; used by benchmarks and tests).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = [
    "ContrastiveCounts",
    "TargetBackground",
    "make_contrastive_counts",
    "CellTypeCounts",
    "make_cell_type_counts",
    "SampleCounts",
    "make_sample_counts",
    "normalize_log1p",
    "load_mice_protein",
    "load_shared_dataset",
]

# Constants of the beta-series simulation, for the reference size of 3000 genes.
_REF_N_GENES = 3000
_REF_SHARED_BLOCK = 250
_REF_TARGET_BLOCK = 120
_N_SHARED_PROGRAMS = 5
_N_TARGET_PROGRAMS = 2

_SHARED_DATA_ENV = "BCNMF_SHARED_DATA"
_MICE_PROTEIN_FILE = "mice_protein.npz"


def _shape_repr(value):
    if value is None:
        return "None"
    if sp.issparse(value):
        return f"<{value.shape[0]}x{value.shape[1]} {type(value).__name__}, {value.dtype}>"
    arr = np.asarray(value)
    return f"<{'x'.join(map(str, arr.shape)) or 'scalar'} {arr.dtype}>"


@dataclass(frozen=True, eq=False)
class ContrastiveCounts:
    """Simulated target/background counts returned by :func:`make_contrastive_counts`.

    Attributes
    ----------
    X : ndarray or scipy.sparse.csr_matrix of shape (n_target, n_genes), float64
        Target counts (whole numbers).
    Y : ndarray or scipy.sparse.csr_matrix of shape (n_background, n_genes), float64
        Background counts (whole numbers).
    labels : ndarray of shape (n_target,), int64
        Target subtype (0 or 1) of each target cell: the target-specific signal. Use for
        evaluation only.
    target_class : ndarray of shape (n_target,), int64
        Shared class (0 to 4) of each target cell.
    background_class : ndarray of shape (n_background,), int64
        Shared class (0 to 4) of each background cell.
    shared_programs : ndarray of shape (5, n_genes), float64
        Loadings of the five shared programs (block loading plus noise on every gene).
    target_programs : ndarray of shape (2, n_genes), float64
        Loadings of the two target subtype programs (block loading plus noise on every gene).
    target_genes : ndarray of shape (2 * target_block,), int64
        Indices of the genes owned by the target programs (1250 to 1489 for 3000 genes).
    beta : float
        Strength of the shared programs.
    """

    X: np.ndarray | sp.csr_matrix
    Y: np.ndarray | sp.csr_matrix
    labels: np.ndarray
    target_class: np.ndarray
    background_class: np.ndarray
    shared_programs: np.ndarray
    target_programs: np.ndarray
    target_genes: np.ndarray
    beta: float

    def __repr__(self):
        return (
            f"ContrastiveCounts(X={_shape_repr(self.X)}, Y={_shape_repr(self.Y)}, "
            f"beta={self.beta!r}, n_target_genes={self.target_genes.size})"
        )


@dataclass(frozen=True, eq=False)
class CellTypeCounts:
    """Simulated single-cell-like counts returned by :func:`make_cell_type_counts`.

    Attributes
    ----------
    X : ndarray or scipy.sparse.csr_matrix of shape (n_target, n_genes), float64
        Target counts (whole numbers).
    Y : ndarray or scipy.sparse.csr_matrix of shape (n_background, n_genes), float64
        Background counts (whole numbers).
    labels : ndarray of shape (n_target,), int64
        1 for a stimulated target cell, 0 otherwise: the target-specific signal. Use for
        evaluation only.
    target_type : ndarray of shape (n_target,), int64
        Cell type (0 to n_types - 1) of each target cell.
    background_type : ndarray of shape (n_background,), int64
        Cell type of each background cell.
    type_profiles : ndarray of shape (n_types, n_genes), float64
        Expression profile of each cell type before any response; every row sums to 1.
    response_genes : ndarray of shape (n_response,), int64
        Sorted indices of the genes that respond to the stimulus.
    strength : float
        Strength of the response (0 means no response).
    """

    X: np.ndarray | sp.csr_matrix
    Y: np.ndarray | sp.csr_matrix
    labels: np.ndarray
    target_type: np.ndarray
    background_type: np.ndarray
    type_profiles: np.ndarray
    response_genes: np.ndarray
    strength: float

    def __repr__(self):
        return (
            f"CellTypeCounts(X={_shape_repr(self.X)}, Y={_shape_repr(self.Y)}, "
            f"strength={self.strength!r}, n_types={self.type_profiles.shape[0]}, "
            f"n_response_genes={self.response_genes.size})"
        )


@dataclass(frozen=True, eq=False)
class TargetBackground:
    """A real target/background dataset, sample-major.

    Attributes
    ----------
    X : ndarray of shape (n_target, n_features), float64
        Target samples (non-negative).
    Y : ndarray of shape (n_background, n_features), float64
        Background samples, same features in the same order.
    labels : ndarray of shape (n_target,), int64
        Target-specific label of each target sample; for evaluation only, never for fitting.
    label_names : ndarray of shape (n_labels,), str
        Name of each label value.
    feature_names : ndarray of shape (n_features,), str
        Name of each feature.
    target_samples : ndarray of shape (n_target,), str, or None
        The biological sample (for example the mouse) each target row was measured on; rows
        of one sample are not independent (the ``samples`` of :func:`bcnmf.select_model`).
        None when the dataset does not record it.
    background_samples : ndarray of shape (n_background,), str, or None
        The sample of each background row, or None.
    X_missing : ndarray of shape (n_target, n_features), bool, or None
        True where the original value was missing (stored as 0 in ``X``). Only set when masks
        were asked for and the dataset has them.
    Y_missing : ndarray of shape (n_background, n_features), bool, or None
        Same for ``Y``.
    """

    X: np.ndarray
    Y: np.ndarray
    labels: np.ndarray
    label_names: np.ndarray
    feature_names: np.ndarray
    target_samples: np.ndarray | None = None
    background_samples: np.ndarray | None = None
    X_missing: np.ndarray | None = None
    Y_missing: np.ndarray | None = None

    def __repr__(self):
        fields = ", ".join(
            f"{name}={_shape_repr(getattr(self, name))}"
            for name in ("X", "Y", "labels", "X_missing", "Y_missing")
        )
        return f"TargetBackground({fields})"


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def _check_rng(random_state):
    if random_state is None or isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state)
    if isinstance(random_state, bool) or not isinstance(random_state, Integral):
        raise TypeError(
            "random_state must be None, a non-negative int or a numpy.random.Generator, "
            f"got {type(random_state).__name__} ({random_state!r})."
        )
    if random_state < 0:
        raise ValueError(f"random_state must be a non-negative int, got {random_state}.")
    return np.random.default_rng(int(random_state))


def make_contrastive_counts(
    beta=8.0,
    *,
    n_genes=3000,
    n_target=1000,
    n_background=1000,
    random_state=0,
    sparse=False,
):
    r"""Simulate target and background Poisson counts (the bcNMF "beta series").

    Implements the simulation recipe of the bcNMF paper (Li, Yang & Li, 2026).

    Programs (rows of the loading matrices, genes as columns):

    - 5 shared programs :math:`S_k`, each owning a disjoint block of 250 genes (genes 0-1249),
      loading :math:`\mathrm{Gamma}(2, \mathrm{scale}=0.6)` on its block;
    - 2 target programs :math:`T_j` owning the next two blocks of 120 genes (genes 1250-1489),
      loading :math:`\mathrm{Gamma}(2, \mathrm{scale}=0.9)`;
    - noise :math:`\mathrm{Gamma}(0.5, \mathrm{scale}=0.01)` is added to every shared loading
      and :math:`\mathrm{Gamma}(0.5, \mathrm{scale}=0.005)` to every target loading (all genes).

    Cells: the target has exactly half of its cells in each subtype :math:`s_i \in \{0, 1\}`
    (shuffled); every cell :math:`i` of either population gets a shared class
    :math:`k_i` uniform over the 5 programs, a library factor
    :math:`\ell_i \sim \mathrm{LogNormal}(0, 0.35)` and a nuisance factor
    :math:`c_i \sim \mathrm{Gamma}(1, 1)`; every gene gets :math:`g_j \sim \mathrm{Gamma}(1, 1)`,
    shared by target and background. The counts are Poisson with means

    .. math::

        E[X_{ij}] = \ell_i \left(0.15\, T_{s_i j} + 10 \beta\, S_{k_i j} + 0.02
                    + 0.01\, g_j c_i\right), \qquad
        E[Y_{ij}] = \ell_i \left(10 \beta\, S_{k_i j} + 0.02 + 0.01\, g_j c_i\right).

    Parameters
    ----------
    beta : float, default=8.0
        Strength of the shared programs (>= 0). The paper's series uses 0, 1, 2, 4, 8, 16;
        at ``beta = 0`` only the target programs (and noise) remain.
    n_genes : int, default=3000
        Number of genes, at least 25. For other values than 3000 the block sizes are scaled
        proportionally and rounded down: shared blocks of ``250 * n_genes // 3000`` genes and
        target blocks of ``120 * n_genes // 3000`` genes, laid out in the same order; the
        remaining genes carry only noise.
    n_target : int, default=1000
        Number of target cells, at least 2. Subtype 0 gets ``n_target - n_target // 2`` cells
        and subtype 1 gets ``n_target // 2`` (exactly 500 each by default).
    n_background : int, default=1000
        Number of background cells, at least 1.
    random_state : int, numpy.random.Generator or None, default=0
        Seed for :func:`numpy.random.default_rng`, or a generator to draw from.
    sparse : bool, default=False
        Return ``X`` and ``Y`` as :class:`scipy.sparse.csr_matrix` (float64) instead of dense
        arrays. Both forms hold the same values for the same seed.

    Returns
    -------
    ContrastiveCounts
        Frozen result with ``X`` (n_target, n_genes), ``Y`` (n_background, n_genes), both
        float64 counts; ``labels`` (n_target,) the target subtypes; ``target_class`` and
        ``background_class`` the shared classes; ``shared_programs`` (5, n_genes);
        ``target_programs`` (2, n_genes); ``target_genes`` the indices of the target blocks;
        ``beta``.

    Notes
    -----
    Draw order (fixed, so results are reproducible for a seed): shared block loadings, shared
    noise, target block loadings, target noise, gene factors ``g``, target subtype permutation,
    target classes, background classes, target library factors, target ``c``, background library
    factors, background ``c``, target counts, background counts.

    Examples
    --------
    >>> import numpy as np
    >>> from bcnmf.datasets import make_contrastive_counts
    >>> data = make_contrastive_counts(beta=8.0, n_genes=300, n_target=100,
    ...                                n_background=80, random_state=0)
    >>> data.X.shape, data.Y.shape
    ((100, 300), (80, 300))
    >>> [int(n) for n in np.bincount(data.labels)]
    [50, 50]
    >>> int(data.target_genes[0]), int(data.target_genes[-1])
    (125, 148)
    >>> bool((data.X == np.round(data.X)).all())
    True
    """
    if isinstance(beta, bool) or not isinstance(beta, Real) or not np.isfinite(beta):
        raise ValueError(f"beta must be a finite real number >= 0, got {beta!r}.")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}.")
    beta = float(beta)
    n_genes = _check_int(n_genes, "n_genes", 25)
    n_target = _check_int(n_target, "n_target", 2)
    n_background = _check_int(n_background, "n_background", 1)
    rng = _check_rng(random_state)

    shared_block = _REF_SHARED_BLOCK * n_genes // _REF_N_GENES
    target_block = _REF_TARGET_BLOCK * n_genes // _REF_N_GENES
    target_start = _N_SHARED_PROGRAMS * shared_block

    # Loadings: block values, then noise on every gene.
    shared = np.zeros((_N_SHARED_PROGRAMS, n_genes))
    block = rng.gamma(2.0, 0.6, size=(_N_SHARED_PROGRAMS, shared_block))
    for k in range(_N_SHARED_PROGRAMS):
        shared[k, k * shared_block : (k + 1) * shared_block] = block[k]
    shared += rng.gamma(0.5, 0.01, size=shared.shape)

    target = np.zeros((_N_TARGET_PROGRAMS, n_genes))
    block = rng.gamma(2.0, 0.9, size=(_N_TARGET_PROGRAMS, target_block))
    for j in range(_N_TARGET_PROGRAMS):
        start = target_start + j * target_block
        target[j, start : start + target_block] = block[j]
    target += rng.gamma(0.5, 0.005, size=target.shape)
    target_genes = np.arange(
        target_start, target_start + _N_TARGET_PROGRAMS * target_block, dtype=np.int64
    )

    gene_factor = rng.gamma(1.0, 1.0, size=n_genes)

    n_second = n_target // 2
    labels = np.repeat(np.array([0, 1], dtype=np.int64), [n_target - n_second, n_second])
    labels = rng.permutation(labels)
    target_class = rng.integers(0, _N_SHARED_PROGRAMS, size=n_target, dtype=np.int64)
    background_class = rng.integers(0, _N_SHARED_PROGRAMS, size=n_background, dtype=np.int64)

    lib_x = rng.lognormal(0.0, 0.35, size=n_target)
    cell_x = rng.gamma(1.0, 1.0, size=n_target)
    lib_y = rng.lognormal(0.0, 0.35, size=n_background)
    cell_y = rng.gamma(1.0, 1.0, size=n_background)

    shared_scale = 10.0 * beta

    def rates(classes, lib, cell, extra=None):
        mean = shared_scale * shared[classes]
        if extra is not None:
            mean += extra
        mean += 0.02
        mean += 0.01 * np.outer(cell, gene_factor)
        mean *= lib[:, None]
        return mean

    X = rng.poisson(rates(target_class, lib_x, cell_x, 0.15 * target[labels])).astype(
        np.float64
    )
    Y = rng.poisson(rates(background_class, lib_y, cell_y)).astype(np.float64)
    if sparse:
        X = sp.csr_matrix(X)
        Y = sp.csr_matrix(Y)

    return ContrastiveCounts(
        X=X,
        Y=Y,
        labels=labels,
        target_class=target_class,
        background_class=background_class,
        shared_programs=shared,
        target_programs=target,
        target_genes=target_genes,
        beta=beta,
    )


def _check_real(value, name, *, positive):
    """A finite real number, > 0 when ``positive`` else >= 0; returned as float."""
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number {bound}, got {value!r}.")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {bound}, got {value!r}.")
    return float(value)


def make_cell_type_counts(
    strength=1.0,
    *,
    n_genes=2000,
    n_target=1000,
    n_background=500,
    n_types=6,
    n_response=60,
    dispersion=5.0,
    library_size=3000.0,
    random_state=0,
    sparse=False,
):
    r"""Simulate single-cell-like counts: shared cell types and a stimulus response in the target.

    A benchmark for contrastive methods on data that look like single-cell RNA counts. The
    dominant structure is a set of strong, discrete cell types that target and background share
    in the same proportions; the target-specific signal is weaker and of another kind: half of
    the target cells are "stimulated" and raise the expression of a few genes, by an amount that
    depends on the cell type and varies from cell to cell. A method that only looks at the
    target finds the cell types first; a contrastive method should find the response. The
    counts are overdispersed (negative binomial) and library sizes are uneven, as in real
    single-cell data, so the usual preprocessing (for example :func:`normalize_log1p`) matters.

    Genes and cell types:

    - a base profile :math:`p_0` with :math:`p_{0j} \sim \mathrm{Gamma}(0.3, 1)` per gene,
      normalised to sum 1 (a few highly expressed genes, many lowly expressed ones);
    - each of the ``n_types`` cell types multiplies its own marker genes, ``max(1,
      round(0.05 * n_genes))`` of them drawn without replacement, by factors
      :math:`\mathrm{U}(2, 20)`; the type profile :math:`p_t` is then renormalised to sum 1.

    Cells: the cell-type proportions :math:`\pi \sim \mathrm{Dirichlet}(3, \ldots, 3)` are drawn
    once and shared by target and background; each cell's type :math:`t_i` is drawn from
    :math:`\pi`. In the target exactly ``n_target // 2`` cells are stimulated (:math:`s_i = 1`,
    shuffled); no background cell is. The ``n_response`` response genes :math:`R` (drawn without
    replacement) get, in a stimulated cell :math:`i`, the factor

    .. math::

        r_{ij} = 1 + 10\, g_{t_i} u_i \quad (j \in R), \qquad
        g_t = \text{strength} \cdot \mathrm{U}(0.3, 1.5), \quad u_i \sim \mathrm{U}(0.5, 1.5),

    and :math:`r_{ij} = 1` otherwise. The response adds expression: the cell's profile
    :math:`p_{t_i j} r_{ij}` is not renormalised. With a library size
    :math:`L_i \sim \mathrm{LogNormal}(\log(\text{library\_size}), 0.5)` the counts are
    negative binomial, drawn as a Gamma-Poisson mixture with shape :math:`\phi` =
    ``dispersion``:

    .. math::

        X_{ij} \sim \mathrm{Poisson}\left(L_i\, p_{t_i j}\, r_{ij}\, \varepsilon_{ij}\right),
        \qquad \varepsilon_{ij} \sim \mathrm{Gamma}(\phi, \mathrm{scale}=1/\phi),

    so :math:`E[X_{ij}] = E[L_i]\, p_{t_i j}\, r_{ij}` and
    :math:`\mathrm{Var}[X_{ij} \mid L_i] = \mu + \mu^2 / \phi` with
    :math:`\mu = L_i p_{t_i j} r_{ij}`; background counts :math:`Y` are drawn the same way
    without response.

    Parameters
    ----------
    strength : float, default=1.0
        Strength of the response, a finite real number >= 0: 1 gives a clear response, 0.3 a
        subtle one, 0 none (stimulated and unstimulated cells then have the same distribution).
    n_genes : int, default=2000
        Number of genes, at least 1.
    n_target : int, default=1000
        Number of target cells, at least 2. ``n_target // 2`` are stimulated (label 1) and
        ``n_target - n_target // 2`` are not (label 0).
    n_background : int, default=500
        Number of background cells, at least 1; none is stimulated.
    n_types : int, default=6
        Number of cell types, at least 1.
    n_response : int, default=60
        Number of response genes, at least 1 and at most ``n_genes``.
    dispersion : float, default=5.0
        Shape :math:`\phi` of the Gamma mixing distribution, a finite real number > 0; smaller
        values give more overdispersed counts.
    library_size : float, default=3000.0
        Median library size (the mean is ``library_size * exp(0.125)``), a finite real number
        > 0.
    random_state : int, numpy.random.Generator or None, default=0
        Seed for :func:`numpy.random.default_rng`, or a generator to draw from.
    sparse : bool, default=False
        Return ``X`` and ``Y`` as :class:`scipy.sparse.csr_matrix` (float64) instead of dense
        arrays. Both forms hold the same values for the same seed.

    Returns
    -------
    CellTypeCounts
        Frozen result with ``X`` (n_target, n_genes), ``Y`` (n_background, n_genes), both
        float64 counts; ``labels`` (n_target,) 1 for stimulated target cells; ``target_type``
        and ``background_type`` the cell types; ``type_profiles`` (n_types, n_genes), rows
        summing to 1; ``response_genes`` (sorted); ``strength``.

    Raises
    ------
    TypeError
        If an integer argument is not an int, ``random_state`` is not None, an int or a
        :class:`numpy.random.Generator`, or ``sparse`` is not a bool.
    ValueError
        If a number is out of its range (the message names the argument and the accepted
        values), or ``n_response > n_genes``.

    Notes
    -----
    Draw order (fixed, so results are reproducible for a seed): base profile :math:`p_0`; then
    for each cell type in turn its marker genes and their factors; cell-type proportions
    :math:`\pi`; response genes; response gains :math:`g` (uniforms, scaled by ``strength``
    afterwards); the permutation of the target labels; target cell types; background cell
    types; per-cell factors :math:`u` (drawn for every target cell, used by the stimulated
    ones); target library sizes; background library sizes; target Gamma noise; background Gamma
    noise; background counts; target counts. Everything drawn before the counts does not
    depend on ``strength``, and the background counts are drawn before the target counts, so
    for one seed all fields but ``X`` and ``strength`` are the same at every strength.

    Examples
    --------
    >>> import numpy as np
    >>> from bcnmf.datasets import make_cell_type_counts
    >>> data = make_cell_type_counts(1.0, n_genes=200, n_target=60, n_background=40,
    ...                              n_types=3, n_response=10, random_state=0)
    >>> data.X.shape, data.Y.shape, data.type_profiles.shape
    ((60, 200), (40, 200), (3, 200))
    >>> [int(n) for n in np.bincount(data.labels)]
    [30, 30]
    >>> bool(np.allclose(data.type_profiles.sum(axis=1), 1.0))
    True
    >>> bool((data.X == np.round(data.X)).all())
    True
    """
    strength = _check_real(strength, "strength", positive=False)
    n_genes = _check_int(n_genes, "n_genes", 1)
    n_target = _check_int(n_target, "n_target", 2)
    n_background = _check_int(n_background, "n_background", 1)
    n_types = _check_int(n_types, "n_types", 1)
    n_response = _check_int(n_response, "n_response", 1)
    if n_response > n_genes:
        raise ValueError(
            f"n_response must be <= n_genes ({n_genes}), got {n_response}."
        )
    dispersion = _check_real(dispersion, "dispersion", positive=True)
    library_size = _check_real(library_size, "library_size", positive=True)
    if not isinstance(sparse, (bool, np.bool_)):
        raise TypeError(f"sparse must be a bool, got {type(sparse).__name__} ({sparse!r}).")
    rng = _check_rng(random_state)

    # Cell types: a base profile, then per type a few marker genes raised, renormalised.
    base = rng.gamma(0.3, 1.0, size=n_genes)
    base /= base.sum()
    n_markers = max(1, round(0.05 * n_genes))
    profiles = np.empty((n_types, n_genes))
    for t in range(n_types):
        markers = rng.choice(n_genes, size=n_markers, replace=False)
        factors = rng.uniform(2.0, 20.0, size=n_markers)
        profile = base.copy()
        profile[markers] *= factors
        profiles[t] = profile / profile.sum()
    proportions = rng.dirichlet(np.full(n_types, 3.0))

    response_genes = np.sort(rng.choice(n_genes, size=n_response, replace=False)).astype(
        np.int64
    )
    gain = rng.uniform(0.3, 1.5, size=n_types) * strength

    n_stimulated = n_target // 2
    labels = np.repeat(
        np.array([0, 1], dtype=np.int64), [n_target - n_stimulated, n_stimulated]
    )
    labels = rng.permutation(labels)
    target_type = rng.choice(n_types, size=n_target, p=proportions).astype(np.int64)
    background_type = rng.choice(n_types, size=n_background, p=proportions).astype(np.int64)
    cell_factor = rng.uniform(0.5, 1.5, size=n_target)

    log_size = np.log(library_size)
    lib_x = rng.lognormal(log_size, 0.5, size=n_target)
    lib_y = rng.lognormal(log_size, 0.5, size=n_background)
    noise_x = rng.gamma(dispersion, 1.0 / dispersion, size=(n_target, n_genes))
    noise_y = rng.gamma(dispersion, 1.0 / dispersion, size=(n_background, n_genes))

    # Background: type profiles only.
    rate_y = profiles[background_type]
    rate_y *= lib_y[:, None]
    rate_y *= noise_y
    Y = rng.poisson(rate_y).astype(np.float64)

    # Target: the stimulated cells' response genes are raised; rows are not renormalised.
    rate_x = profiles[target_type]
    stimulated = np.flatnonzero(labels == 1)
    response = 1.0 + 10.0 * gain[target_type[stimulated]] * cell_factor[stimulated]
    rate_x[np.ix_(stimulated, response_genes)] *= response[:, None]
    rate_x *= lib_x[:, None]
    rate_x *= noise_x
    X = rng.poisson(rate_x).astype(np.float64)

    if sparse:
        X = sp.csr_matrix(X)
        Y = sp.csr_matrix(Y)

    return CellTypeCounts(
        X=X,
        Y=Y,
        labels=labels,
        target_type=target_type,
        background_type=background_type,
        type_profiles=profiles,
        response_genes=response_genes,
        strength=strength,
    )


@dataclass(frozen=True, eq=False)
class SampleCounts:
    """Simulated counts of several samples per condition, from :func:`make_sample_counts`.

    Attributes
    ----------
    X : ndarray or scipy.sparse.csr_matrix of shape (n_target, n_genes), float64
        Target counts (whole numbers), the cells of the target samples one sample after the
        other.
    Y : ndarray or scipy.sparse.csr_matrix of shape (n_background, n_genes), float64
        Background counts.
    samples : ndarray of shape (n_target,), str
        The sample of every target cell (``"target_1"``, ``"target_2"``, ...).
    background_samples : ndarray of shape (n_background,), str
        The sample of every background cell (``"background_1"``, ...).
    programs : ndarray of shape (n_programs, n_genes), float64
        The shared programs, every row summing to 1.
    planted_program : ndarray of shape (n_genes,), float64
        The program added to the target cells when ``effect > 0``; sums to 1.
    planted_genes : ndarray of shape (n_block,), int64
        The gene block the planted program owns.
    sample_offsets : ndarray of shape (n_samples + n_background_samples, n_programs + 1)
        Log-scale deviation of every sample (target samples first) on every shared program
        and, last column, on the planted program.
    gene_factors : ndarray of shape (n_samples + n_background_samples, n_genes)
        Factor of every sample (target samples first) on every gene.
    effect : float
        Strength of the planted program in the target (0: no condition effect).
    sample_effect : float
        Standard deviation of the sample offsets.
    gene_effect : float
        Standard deviation of the log gene factors.
    """

    X: np.ndarray | sp.csr_matrix
    Y: np.ndarray | sp.csr_matrix
    samples: np.ndarray
    background_samples: np.ndarray
    programs: np.ndarray
    planted_program: np.ndarray
    planted_genes: np.ndarray
    sample_offsets: np.ndarray
    gene_factors: np.ndarray
    effect: float
    sample_effect: float
    gene_effect: float

    def __repr__(self):
        return (
            f"SampleCounts(X={_shape_repr(self.X)}, Y={_shape_repr(self.Y)}, "
            f"n_samples={np.unique(self.samples).size}, "
            f"n_background_samples={np.unique(self.background_samples).size}, "
            f"effect={self.effect!r}, sample_effect={self.sample_effect!r})"
        )


def make_sample_counts(
    effect=0.0,
    *,
    n_samples=6,
    n_background_samples=None,
    cells_per_sample=30,
    n_genes=100,
    n_programs=3,
    sample_effect=0.5,
    gene_effect=0.3,
    library_size=1000.0,
    random_state=0,
    sparse=False,
):
    r"""Simulate counts from several samples (donors, animals) per condition.

    A generator for testing the statistics of condition effects when cells come in samples:
    cells of one sample share the sample's own deviation (a random effect), so they are not
    independent.  With ``effect=0`` there is no condition effect: every sample, target or
    background, is drawn from the same distribution, and only which samples are called target
    differs.  With ``effect > 0`` every cell of every target sample also expresses a planted
    program.

    Genes: ``n_genes`` are cut into ``n_programs + 1`` blocks of ``n_genes // (n_programs +
    1)`` genes.  Shared program :math:`P_k` loads :math:`\mathrm{Gamma}(2, 1)` on block
    :math:`k`; the planted program :math:`T` on the last block; every program also gets
    :math:`\mathrm{Gamma}(0.5, \mathrm{scale}=0.01)` on every gene and is scaled to sum 1.

    Samples: each sample :math:`s` (``n_samples`` target, ``n_background_samples``
    background) draws offsets :math:`z_{sk} \sim N(0, \sigma^2)`, :math:`\sigma` =
    ``sample_effect``, one per shared program and one for the planted program, and a
    factor :math:`e^{\tau \epsilon_{sj}}` of every gene, :math:`\epsilon_{sj} \sim N(0, 1)`,
    :math:`\tau` = ``gene_effect`` (the sample's own expression, as a donor's genotype
    gives).  Cells: each
    of the ``cells_per_sample`` cells :math:`i` of sample :math:`s` draws activities
    :math:`a_{ik} \sim \mathrm{Gamma}(2, \mathrm{scale}=1/2)`,
    :math:`b_i \sim \mathrm{Gamma}(2, \mathrm{scale}=1/2)` and a library size
    :math:`L_i \sim \mathrm{LogNormal}(\log(\text{library\_size}), 0.3)`; the counts are
    Poisson with means

    .. math::

        E[X_{ij}] = \frac{L_i e^{\tau \epsilon_{sj}}}{n_\text{programs}}
                    \Big(\sum_k a_{ik} e^{z_{sk}} P_{kj}
                    + \text{effect}\; b_i e^{z_{sT}} T_j\Big),
        \qquad
        E[Y_{ij}] = \frac{L_i e^{\tau \epsilon_{sj}}}{n_\text{programs}}
                    \sum_k a_{ik} e^{z_{sk}} P_{kj}.

    Parameters
    ----------
    effect : float, default=0.0
        Strength of the planted program in every target cell, relative to one shared
        program (finite, >= 0).  0 gives null data.
    n_samples : int, default=6
        Target samples, at least 1.
    n_background_samples : int, optional
        Background samples, at least 1; default ``n_samples``.
    cells_per_sample : int, default=30
        Cells of every sample, at least 1.
    n_genes : int, default=100
        Genes, at least ``n_programs + 1``.
    n_programs : int, default=3
        Shared programs, at least 1.
    sample_effect : float, default=0.5
        Standard deviation :math:`\sigma` of the samples' log-scale program offsets
        (finite, >= 0).
    gene_effect : float, default=0.3
        Standard deviation :math:`\tau` of the samples' log-scale gene factors (finite,
        >= 0).  With ``sample_effect=0`` and ``gene_effect=0`` all cells of a condition are
        independent and identically distributed.
    library_size : float, default=1000.0
        Median library size (finite, > 0).
    random_state : int, numpy.random.Generator or None, default=0
        Seed for :func:`numpy.random.default_rng`, or a generator to draw from.
    sparse : bool, default=False
        Return ``X`` and ``Y`` as :class:`scipy.sparse.csr_matrix`.

    Returns
    -------
    SampleCounts
        ``X`` (n_samples * cells_per_sample, n_genes) and ``Y`` (n_background_samples *
        cells_per_sample, n_genes) float64 counts, the per-cell ``samples`` and
        ``background_samples`` labels, the programs and the sample offsets.

    Raises
    ------
    TypeError
        If an integer argument is not an int, or ``sparse`` is not a bool.
    ValueError
        If a number is out of its range (the message names the argument and the accepted
        values).

    Notes
    -----
    Draw order (fixed, so results are reproducible for a seed): shared block loadings, shared
    noise, planted block loadings, planted noise, sample offsets (target samples first),
    sample gene factors (standard normals, scaled by ``gene_effect`` afterwards), target
    activities, target planted activities, target library sizes, background
    activities, background library sizes, background counts, target counts.  Nothing drawn
    before the counts depends on ``effect`` and the background counts come first, so for one
    seed all fields but ``X`` and ``effect`` are the same at every ``effect``.

    Examples
    --------
    >>> import numpy as np
    >>> from bcnmf.datasets import make_sample_counts
    >>> data = make_sample_counts(0.0, n_samples=4, cells_per_sample=10, random_state=0)
    >>> data.X.shape, data.Y.shape
    ((40, 100), (40, 100))
    >>> [str(s) for s in np.unique(data.samples)]
    ['target_1', 'target_2', 'target_3', 'target_4']
    >>> str(data.background_samples[0])
    'background_1'
    """
    effect = _check_real(effect, "effect", positive=False)
    n_samples = _check_int(n_samples, "n_samples", 1)
    n_background_samples = n_samples if n_background_samples is None else _check_int(
        n_background_samples, "n_background_samples", 1)
    cells_per_sample = _check_int(cells_per_sample, "cells_per_sample", 1)
    n_programs = _check_int(n_programs, "n_programs", 1)
    n_genes = _check_int(n_genes, "n_genes", n_programs + 1)
    sample_effect = _check_real(sample_effect, "sample_effect", positive=False)
    gene_effect = _check_real(gene_effect, "gene_effect", positive=False)
    library_size = _check_real(library_size, "library_size", positive=True)
    if not isinstance(sparse, (bool, np.bool_)):
        raise TypeError(f"sparse must be a bool, got {type(sparse).__name__} ({sparse!r}).")
    rng = _check_rng(random_state)

    block = n_genes // (n_programs + 1)
    programs = np.zeros((n_programs, n_genes))
    loads = rng.gamma(2.0, 1.0, size=(n_programs, block))
    for k in range(n_programs):
        programs[k, k * block : (k + 1) * block] = loads[k]
    programs += rng.gamma(0.5, 0.01, size=programs.shape)
    programs /= programs.sum(axis=1, keepdims=True)
    planted_genes = np.arange(n_programs * block, (n_programs + 1) * block, dtype=np.int64)
    planted = np.zeros(n_genes)
    planted[planted_genes] = rng.gamma(2.0, 1.0, size=block)
    planted += rng.gamma(0.5, 0.01, size=n_genes)
    planted /= planted.sum()

    n_all = n_samples + n_background_samples
    offsets = rng.normal(0.0, sample_effect, size=(n_all, n_programs + 1))
    scale = np.exp(offsets)
    gene_scale = np.exp(gene_effect * rng.standard_normal((n_all, n_genes)))
    n_x = n_samples * cells_per_sample
    n_y = n_background_samples * cells_per_sample
    side_x = np.repeat(np.arange(n_samples), cells_per_sample)
    side_y = np.repeat(np.arange(n_samples, n_all), cells_per_sample)
    act_x = rng.gamma(2.0, 0.5, size=(n_x, n_programs)) * scale[side_x, :n_programs]
    planted_x = rng.gamma(2.0, 0.5, size=n_x) * scale[side_x, n_programs]
    lib_x = rng.lognormal(np.log(library_size), 0.3, size=n_x)
    act_y = rng.gamma(2.0, 0.5, size=(n_y, n_programs)) * scale[side_y, :n_programs]
    lib_y = rng.lognormal(np.log(library_size), 0.3, size=n_y)

    rate_x = act_x @ programs
    rate_x += effect * np.outer(planted_x, planted)
    rate_x *= (lib_x / n_programs)[:, None]
    rate_x *= gene_scale[side_x]
    rate_y = act_y @ programs
    rate_y *= (lib_y / n_programs)[:, None]
    rate_y *= gene_scale[side_y]
    Y = rng.poisson(rate_y).astype(np.float64)
    X = rng.poisson(rate_x).astype(np.float64)
    if sparse:
        X, Y = sp.csr_matrix(X), sp.csr_matrix(Y)
    names_x = np.array([f"target_{s + 1}" for s in range(n_samples)])
    names_y = np.array([f"background_{s + 1}" for s in range(n_background_samples)])
    return SampleCounts(
        X=X,
        Y=Y,
        samples=names_x[side_x],
        background_samples=names_y[side_y - n_samples],
        programs=programs,
        planted_program=planted,
        planted_genes=planted_genes,
        sample_offsets=offsets,
        gene_factors=gene_scale,
        effect=effect,
        sample_effect=sample_effect,
        gene_effect=gene_effect,
    )


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------


def _float_dtype(dtype):
    if dtype == np.float32 or dtype == np.float64:
        return np.dtype(dtype)
    if np.issubdtype(dtype, np.complexfloating):
        raise ValueError(f"normalize_log1p needs real values, got dtype {dtype}.")
    return np.dtype(np.float64)


def _check_values(values):
    if values.size == 0:
        return
    if not np.isfinite(values).all():
        n_nan = int(np.isnan(values).sum())
        n_inf = int(np.isinf(values).sum())
        raise ValueError(
            f"normalize_log1p needs finite values; found {n_nan} NaN and {n_inf} Inf entries."
        )
    if values.min() < 0:
        raise ValueError(
            "normalize_log1p needs non-negative values (counts); "
            f"found {int((values < 0).sum())} negative entries (min {values.min()!r})."
        )


def _row_scale(totals, target_sum, dtype):
    scale = np.zeros_like(totals)
    np.divide(target_sum, totals, out=scale, where=totals > 0)
    return scale.astype(dtype, copy=False)


def normalize_log1p(X, target_sum=1e4, *, copy=True):
    r"""Scale every sample (row) to the same total, then take ``log1p``.

    .. math::

        Z_{ij} = \log\left(1 + t \frac{X_{ij}}{\sum_{j'} X_{ij'}}\right)

    with :math:`t` = ``target_sum``. Rows whose total is 0 stay 0.

    Parameters
    ----------
    X : array-like or scipy.sparse matrix/array of shape (n_samples, n_features)
        Non-negative, finite values (typically counts). Sparse input in any format (CSR, CSC,
        COO, ...) is converted to CSR; only its stored entries are touched, so sparsity is
        kept.
    target_sum : float, default=1e4
        Total every row is scaled to before ``log1p`` (1e4 gives log-CP10k).
    copy : bool, default=True
        If True the input is never modified. If False and ``X`` is already a float32/float64
        C-contiguous ndarray or a CSR matrix/array with canonical (sorted, no duplicate) indices,
        it is normalised in place and returned; otherwise a new array is returned anyway.

    Returns
    -------
    ndarray or scipy.sparse CSR of shape (n_samples, n_features)
        Float32 for float32 input, float64 otherwise (integer input gives float64). Sparse
        input gives CSR (a ``csr_array`` for sparse-array input, ``csr_matrix`` otherwise).

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, holds NaN or infinite values, holds negative values, or
        ``target_sum`` is not a positive finite number.

    Examples
    --------
    >>> import numpy as np
    >>> from bcnmf.datasets import normalize_log1p
    >>> X = np.array([[1, 3], [0, 0], [2, 2]])
    >>> Z = normalize_log1p(X, target_sum=4)
    >>> Z.dtype
    dtype('float64')
    >>> np.round(np.expm1(Z), 6)
    array([[1., 3.],
           [0., 0.],
           [2., 2.]])
    """
    if (
        isinstance(target_sum, bool)
        or not isinstance(target_sum, Real)
        or not np.isfinite(target_sum)
        or target_sum <= 0
    ):
        raise ValueError(f"target_sum must be a positive finite number, got {target_sum!r}.")
    target_sum = float(target_sum)

    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"normalize_log1p needs a 2-D matrix, got {X.ndim} dimension(s).")
        dtype = _float_dtype(X.dtype)
        in_place = (
            not copy
            and X.format == "csr"
            and X.dtype == dtype
            and X.has_canonical_format
        )
        out = X if in_place else X.tocsr(copy=True).astype(dtype, copy=False)
        if not in_place:
            out.sum_duplicates()
        _check_values(out.data)
        totals = np.asarray(out.sum(axis=1, dtype=np.float64)).ravel()
        scale = _row_scale(totals, target_sum, dtype)
        out.data *= np.repeat(scale, np.diff(out.indptr))
        np.log1p(out.data, out=out.data)
        return out

    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"normalize_log1p needs a 2-D array, got {arr.ndim} dimension(s).")
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise ValueError(f"normalize_log1p needs a numeric array, got dtype {arr.dtype}.")
    dtype = _float_dtype(arr.dtype)
    _check_values(arr)
    in_place = not copy and arr is X and arr.dtype == dtype and arr.flags.c_contiguous
    out = arr if in_place else np.array(arr, dtype=dtype, order="C", copy=True)
    totals = out.sum(axis=1, dtype=np.float64)
    out *= _row_scale(totals, target_sum, dtype)[:, None]
    np.log1p(out, out=out)
    return out


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


def _from_npz(data, return_masks):
    """Build a sample-major TargetBackground from a features x samples npz archive."""

    def optional(*keys):
        for key in keys:
            if key in data.files:
                return np.asarray(data[key])
        return None

    X_missing = Y_missing = None
    if return_masks:
        X_missing, Y_missing = optional("X_missing"), optional("Y_missing")
        X_missing = None if X_missing is None else np.ascontiguousarray(X_missing.T, bool)
        Y_missing = None if Y_missing is None else np.ascontiguousarray(Y_missing.T, bool)
    return TargetBackground(
        X=np.ascontiguousarray(data["X"].T, dtype=np.float64),
        Y=np.ascontiguousarray(data["Y"].T, dtype=np.float64),
        labels=np.asarray(data["labels"], dtype=np.int64),
        label_names=np.asarray(data["label_names"]),
        feature_names=np.asarray(data["feature_names"]),
        target_samples=optional("target_mouse_id", "target_group"),
        background_samples=optional("background_mouse_id", "background_group"),
        X_missing=X_missing,
        Y_missing=Y_missing,
    )


def load_mice_protein(*, return_masks=False):
    """Load the Mice Protein Expression target/background data shipped with bcnmf.

    Cortex protein levels of mice (Higuera, Gardiner & Cios 2015, PLoS ONE 10(6):e0129126;
    UCI Machine Learning Repository "Mice Protein Expression", CC BY 4.0), arranged as in the
    contrastive PCA and bcNMF papers. Target: saline-treated mice not stimulated to learn
    (shock-then-context), control or Ts65Dn (Down-syndrome model), 135 measurements each.
    Background: saline-treated control mice stimulated to learn (context-shock). Missing values
    are 0. Each mouse contributes 15 technical replicates. See ``bcnmf/data/README.md`` for the
    provenance.

    Parameters
    ----------
    return_masks : bool, default=False
        Also return ``X_missing`` and ``Y_missing``, boolean masks of the entries that were
        missing in the raw data (324 in ``X``, 199 in ``Y``).

    Returns
    -------
    TargetBackground
        ``X`` (270, 77) and ``Y`` (135, 77) float64, non-negative; ``labels`` (270,) int64,
        0 = Control, 1 = Ts65Dn; ``label_names``; ``feature_names`` (77 protein names);
        ``target_samples`` (270,) and ``background_samples`` (135,) mouse ids; masks when asked,
        otherwise None.

    Examples
    --------
    >>> from bcnmf.datasets import load_mice_protein
    >>> data = load_mice_protein(return_masks=True)
    >>> data.X.shape, data.Y.shape
    ((270, 77), (135, 77))
    >>> [str(name) for name in data.label_names]
    ['Control', 'Ts65Dn']
    >>> int(data.X_missing.sum()), int(data.Y_missing.sum())
    (324, 199)
    """
    ref = resources.files("bcnmf") / "data" / _MICE_PROTEIN_FILE
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as data:
        return _from_npz(data, return_masks)


def _default_shared_root():
    env = os.environ.get(_SHARED_DATA_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    candidates = [repo.parent / "shared" / "data", repo / "shared" / "data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "shared benchmark data not found: looked in "
        + ", ".join(str(c) for c in candidates)
        + f"; pass root= or set the {_SHARED_DATA_ENV} environment variable."
    )


def load_shared_dataset(name, root=None, *, return_masks=False):
    """Load a developer benchmark dataset ``<root>/<name>/<name>.npz``, sample-major.

    The benchmark folders (``mice_protein``, ``mnist_daisy_demo``, ...) live beside the
    repository in ``shared/data`` and are not shipped with the package; this loader serves
    benchmarks and tests. Each archive stores ``X`` and ``Y`` as features x samples; they are
    returned transposed.

    Parameters
    ----------
    name : str
        Dataset folder name, for example ``"mice_protein"``.
    root : str or path-like, optional
        Folder holding the dataset folders. Defaults to the ``BCNMF_SHARED_DATA`` environment
        variable, else the ``shared/data`` folder next to the repository.
    return_masks : bool, default=False
        Also return the missing-value masks, where the archive has them (``X_missing``,
        ``Y_missing``); None otherwise.

    Returns
    -------
    TargetBackground
        ``X`` (n_target, n_features) and ``Y`` (n_background, n_features) float64,
        ``labels`` int64, ``label_names``, ``feature_names``, and the sample ids where the
        archive has them (mouse ids for ``mice_protein``), else None.

    Raises
    ------
    FileNotFoundError
        If the archive (or, without ``root``, the shared data folder) does not exist; the
        message names the path looked at.
    ValueError
        If ``name`` is not a plain folder name.

    Examples
    --------
    >>> from bcnmf.datasets import load_shared_dataset
    >>> load_shared_dataset("no_such_set", root=".")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: shared dataset 'no_such_set' not found: ...no_such_set.npz does not exist...
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in {
        ".",
        "..",
    }:
        raise ValueError(
            f"name must be a dataset folder name such as 'mice_protein', got {name!r}."
        )
    base = _default_shared_root() if root is None else Path(root)
    path = base / name / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"shared dataset {name!r} not found: {path} does not exist "
            f"(pass root= or set {_SHARED_DATA_ENV})."
        )
    with np.load(path, allow_pickle=False) as data:
        return _from_npz(data, return_masks)
