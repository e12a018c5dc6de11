"""``python -m src.hf_dataset``: the command line of :mod:`src.data.hf_dataset`."""

from src.data.hf_dataset import main

if __name__ == "__main__":
    raise SystemExit(main())
