"""``python -m src.download``: the command line of :mod:`src.data.download`."""

from src.data.download import main

if __name__ == "__main__":
    raise SystemExit(main())
