"""``python -m src.conversion``: the command line of :mod:`src.data.conversion`."""

from src.data.conversion import main

if __name__ == "__main__":
    raise SystemExit(main())
