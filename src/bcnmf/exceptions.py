"""Warnings and errors raised by bcnmf."""

from sklearn.exceptions import ConvergenceWarning

__all__ = ["AlphaSelectionWarning", "ConvergenceWarning", "DivergenceWarning",
           "FeatureAlignmentWarning", "InputFileError", "InvalidParameterError",
           "ModelFormatError", "TransformedDataWarning"]


class DivergenceWarning(RuntimeWarning):
    """The iterations left the finite range or ran away from the data.

    The estimator returns the last finite state and says at which sweep it
    stopped; a smaller ``alpha``, ``mode="stable"`` or damping usually helps.
    """


class AlphaSelectionWarning(UserWarning):
    """``alpha="auto"`` could not settle on an alpha it trusts: no alpha gave a contrast
    above chance, or the best lies at the edge of the searched range.  The message says what
    to try; the fitted ``alpha_path_`` holds the measurements."""


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a value outside the accepted set."""


class FeatureAlignmentWarning(UserWarning):
    """Target and background were aligned on their shared features; some were dropped."""


class InputFileError(ValueError):
    """An input file cannot be read as the data it should hold.

    Raised by :func:`bcnmf.io.read_table` (and so by every command-line input) for a file
    that is empty, truncated or corrupted, of another format than its name says, a directory,
    or whose content is not a matrix of finite, non-negative numbers. The message names the
    file, the format expected and what was found; the error of the underlying reader (pandas,
    h5py, anndata, scipy, numpy), if any, is chained as ``__cause__``.
    """


class ModelFormatError(InputFileError):
    """A saved model file cannot be read: not a bcnmf model, corrupted or truncated,
    or written in a newer format than this version of bcnmf understands."""


class TransformedDataWarning(UserWarning):
    """Data given to the Poisson (KL) loss look log-transformed.

    The Poisson loss models raw counts; log1p-transformed data are accepted
    (the generalised KL divergence is defined for any non-negative values) but
    are almost always a mistake there.  Pass the counts, or use the squared
    error (``beta_loss="frobenius"``) for log-transformed data.
    """
