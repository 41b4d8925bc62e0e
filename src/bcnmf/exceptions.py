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


# ---------------------------------------------------------------------------------------------
# what a file holds, from its first bytes: the "found ..." part of InputFileError and
# ModelFormatError messages (bcnmf.io, bcnmf.persistence)
# ---------------------------------------------------------------------------------------------

#: bytes read from the start of a file to tell its format
_HEAD = 4096
_HDF5 = b"\x89HDF\r\n\x1a\n"
_SIGNATURES = ((_HDF5, "hdf5"), (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"),
               (b"\x1f\x8b", "gzip"), (b"\x93NUMPY", "npy"), (b"%%MatrixMarket", "mtx"))
_FOUND = {
    "empty": "an empty file (0 bytes)",
    "hdf5": "an HDF5 file (such as an AnnData .h5ad file)",
    "zip": "a zip archive (such as a NumPy .npz file)",
    "gzip": "gzip-compressed data",
    "npy": "a single NumPy .npy array",
    "mtx": "a Matrix Market file",
}


def _signature(head: bytes) -> str:
    """The format of content starting with ``head``: empty, hdf5, zip, gzip, npy, mtx, text
    or binary."""
    if not head:
        return "empty"
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    if any(head[offset:offset + 8] == _HDF5 for offset in (512, 1024, 2048)):
        return "hdf5"   # an HDF5 file with a user block
    return "binary" if b"\x00" in head else "text"


def _first_line(head: bytes, width=60) -> str:
    """The first non-blank line of ``head`` (cut at ``width`` characters unless None)."""
    lines = [line for line in head.decode("utf-8", errors="replace").splitlines()
             if line.strip()]
    line = lines[0] if lines else ""
    return line if width is None or len(line) <= width else line[:width] + "..."


def _describe(signature: str, head: bytes) -> str:
    """What a message says was found in a file of ``signature`` starting with ``head``."""
    if signature in _FOUND:
        return _FOUND[signature]
    if signature == "binary":
        return f"binary data of an unknown format (first bytes {head[:8]!r})"
    if not head.strip():
        return "only blank lines"
    return f"text beginning {_first_line(head)!r}"
