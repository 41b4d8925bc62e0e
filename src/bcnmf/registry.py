"""The estimator classes that saved models can be loaded as, by registration.

The estimators' base class (:class:`bcnmf._base.BaseBCNMF`) registers every estimator class
when the class is made, with the fitted attributes it keeps beyond the base's, so
:mod:`bcnmf.persistence` reads and rebuilds models without importing any estimator module.
"""

from __future__ import annotations

import dataclasses

__all__ = ["REGISTRY", "Saved", "register"]


@dataclasses.dataclass(frozen=True)
class Saved:
    """A registered estimator class and the fitted attributes it keeps beyond
    the base class's, saved and restored as they are.

    Attributes
    ----------
    cls : type
        The estimator class (``cls.__name__`` names it in the metadata).
    arrays : tuple of str
        Fitted array attributes (None values are not saved).
    scalars : tuple of str
        Fitted scalar attributes.
    """

    cls: type
    arrays: tuple = ()
    scalars: tuple = ()


#: the registered estimator classes by class name, the name a saved model's metadata gives
#: (:func:`bcnmf.persistence.load_model` looks them up)
REGISTRY: dict[str, Saved] = {}


def register(cls, arrays=(), scalars=()):
    """Make the estimator class ``cls`` loadable by :func:`bcnmf.persistence.load_model`.

    The estimators' base class registers every estimator class when the class
    is made; a class registered again under the same name replaces the first.

    Parameters
    ----------
    cls : type
        The estimator class.
    arrays, scalars : sequence of str
        Fitted array and scalar attributes kept beyond the base class's.

    Returns
    -------
    type
        ``cls``.
    """
    REGISTRY[cls.__name__] = Saved(cls, tuple(arrays), tuple(scalars))
    return cls
