"""The in-memory executor of :func:`bcnmf.core.solver.solve`: blocks of cells
in this process (numpy or torch; held in memory or streamed from an
out-of-core source at every sweep) and their codes as arrays.

An executor answers the loop's questions about the data: sweep every block
with given bases (summed divergences and parts of each dataset), evaluate,
refine the codes with the basis fixed, rescale the codes after a gauge fix,
and save or restore the codes.  The Dask executor
(:class:`bcnmf.dask_engine.OnDask`) answers the same ones with the blocks on
a cluster.
"""

from __future__ import annotations

from .backend import copy
from .solver import refine_codes
from .updates import FROBENIUS, Block, Held, held_products, sweep_block, view_basis

#: the two datasets of a fit, in sweep order
SIDES = ("target", "background")


class InMemory:
    """Blocks of both datasets as ``(block, codes)`` pairs, the codes being row
    views of one ``n x K`` array per dataset.

    ``background`` may be empty (a fit without a background: its sweeps
    return ``(0.0, None)`` for it)."""

    def __init__(self, target, background, loss: str, policy):
        self.pairs = {"target": list(target), "background": list(background)}
        self.loss, self.policy = loss, policy
        self._held = ({}, {})   # entry predictions of the fixed rows, by pair index
        self._stale = True      # ... to be recomputed (the held codes changed since)

    @property
    def has_background(self) -> bool:
        return bool(self.pairs["background"])

    @property
    def can_hold(self) -> bool:
        """Whether sweeps may hold the codes on fixed rows (not with missing
        values: the masked sweep has no entry offsets)."""
        return not any(b.masked for side in SIDES for b, _ in self.pairs[side])

    def codes(self) -> list:
        """Every code array, target blocks first (updated in place)."""
        return [c for side in SIDES for _, c in self.pairs[side]]

    def snapshot(self) -> list:
        return [copy(c) for c in self.codes()]

    def restore(self, saved) -> None:
        for codes, c in zip(self.codes(), saved):
            codes[...] = c

    def scale(self, side: str, scale, start: int = 0) -> None:
        """``codes[:, start:start + len(scale)] *= scale`` for every block of ``side``."""
        stop = start + scale.shape[0]
        for _, codes in self.pairs[side]:
            if start == 0 and stop == codes.shape[1]:
                codes *= scale
            else:
                codes[:, start:stop] *= scale

    def _views(self, bx, by):
        vx = view_basis(bx, self.loss)
        return vx, (vx if by is bx else view_basis(by, self.loss))

    def sweep(self, bx, by, want_div: bool, held=None):
        """One sweep of both datasets with target basis ``bx`` and background
        basis ``by``: ``((dx, px), (dy, py))``, a divergence None when not
        computed.  ``held = (tail_t, first)``: a held sweep (the bases hold
        the free rows only; codes from column ``first`` on stay fixed)."""
        vx, vy = self._views(bx, by)
        if held is None:
            self._stale = True
            out = tuple(self._sweep_all(self.pairs[side], v, want_div)
                        for side, v in zip(SIDES, (vx, vy)))
        else:
            out = tuple(self._sweep_held(self.pairs[side], v, held, cache)
                        for side, v, cache in zip(SIDES, (vx, vy), self._held))
            self._stale = False
        return out

    def _sweep_all(self, pairs, view, want_div):
        if not pairs:
            return 0.0, None
        div, parts = 0.0, None
        for block, codes in pairs:
            d, p = sweep_block(block, codes, view, self.loss, self.policy, want_div=want_div)
            div = None if d is None or div is None else div + d
            if parts is None:
                parts = p
            else:
                parts += p
        return div, parts

    def _sweep_held(self, pairs, view, held, cache):
        """A held sweep (:func:`~bcnmf.core.updates.sweep_block` with
        ``held``): the products of the fixed rows with each block
        (:func:`~bcnmf.core.updates.held_products`) are cached by pair index
        for blocks held in memory (KL: recomputed into the same buffers after
        the held codes changed; squared error: constant) and recomputed from
        a single read for streamed blocks."""
        if not pairs:
            return 0.0, None
        tail_t, first = held
        stale = self._stale and self.loss != FROBENIUS
        div, parts = 0.0, None
        for i, (block, codes) in enumerate(pairs):
            if not block.resident:   # streamed: read once for both uses
                block = Block(block.data, block.const, block.offset, block.storage)
                products = held_products(block, codes, first, tail_t, self.loss)
            else:
                products = cache.get(i)
                if stale or products is None:
                    products = cache[i] = held_products(block, codes, first, tail_t, self.loss,
                                                        out=products)
            d, p = sweep_block(block, codes, view, self.loss, self.policy,
                               want_div=self.loss == FROBENIUS,
                               held=Held(tail_t, first, products))
            div = None if d is None or div is None else div + d
            if parts is None:
                parts = p
            else:
                parts += p
        return div, parts

    def evaluate(self, bx, by):
        """Divergences ``(D_X, D_Y)`` at the current state, no updates."""
        divs = []
        for side, view in zip(SIDES, self._views(bx, by)):
            divs.append(float(sum(
                sweep_block(b, c, view, self.loss, self.policy, update=False,
                            want_parts=False)[0] for b, c in self.pairs[side])))
        return tuple(divs)

    def refine(self, bx, by, max_iter: int, tol: float) -> None:
        """Code-only sweeps with the basis fixed until every cell has settled
        (:func:`~bcnmf.core.solver.refine_codes`)."""
        vx, vy = self._views(bx, by)
        if vy is vx:
            refine_codes(self.pairs["target"] + self.pairs["background"], vx, self.loss,
                         self.policy, max_iter, tol)
        else:
            for side, view in zip(SIDES, (vx, vy)):
                refine_codes(self.pairs[side], view, self.loss, self.policy, max_iter, tol)
