"""Progress of counted work (grid points, alphas): a tqdm bar on stderr when tqdm is
installed, else one line per step."""

from __future__ import annotations

import sys


class Progress:
    """``update(label)`` after every step of ``total`` (None: unknown); ``close()`` at the
    end.  Silent when not ``enabled``."""

    def __init__(self, enabled, total, desc, unit):
        self.bar = None
        self.enabled = bool(enabled)
        self.total, self.desc = total, desc
        self.done = 0
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, desc=desc, unit=unit)

    def update(self, label):
        if not self.enabled:
            return
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(label)
        else:
            of = "" if self.total is None else f"/{self.total}"
            sys.stderr.write(f"{self.desc}: {self.done}{of} ({label})\n")
            sys.stderr.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
