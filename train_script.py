"""Fine-tune OneFormer on Galaxy Zoo 2 — thin CLI over ``src.training`` (``python train_script.py --help``).

Several GPUs or nodes: ``accelerate launch train_script.py ...``.
"""

import sys

from src.training import main

if __name__ == "__main__":
    sys.exit(main())
