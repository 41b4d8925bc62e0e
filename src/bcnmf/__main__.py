"""``python -m bcnmf``: the ``bcnmf`` command line."""

from .cli import run

if __name__ == "__main__":
    run()
