"""``python -m src.report``: the command line of :mod:`src.inference.report`."""

from src.inference.report import main

if __name__ == "__main__":
    raise SystemExit(main())
