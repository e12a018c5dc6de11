"""One home for the defaults and names that more than one module uses: import them from here, never restate them.

Each concept that belongs to one module stays there (the classes in ``src.classes``, the star/galaxy rules in
``src.field.stars``); what crosses modules (the tasks, the sizes of a cutout, a tile and a stamp, the score
thresholds, the names of the files that several stages read and write) is defined here once.
"""

from __future__ import annotations

# ------------------------------------------------------------------------------------------ tasks
#: The tasks a OneFormer model is conditioned on (its task token), in their usual order.
TASKS = ("semantic", "instance", "panoptic")
#: Training's extra task: each batch draws one of ``RANDOM_TASKS``.
RANDOM_TASK = "random"
#: The tasks a training run accepts.
TRAIN_TASKS = (*TASKS, RANDOM_TASK)
#: The tasks the random task draws from, and the tasks scored by default (compute_scores.py, the demo).
RANDOM_TASKS = ("semantic", "instance")
SCORED_TASKS = ("semantic", "instance")

# ------------------------------------------------------------------------------------------ sizes, px
#: Side of a Galaxy Zoo 2 cutout (``Dr7_<objid>.jpg``) and of the images the models are trained on.
CUTOUT_SIZE = 256
#: Fields, tiles strategy: tile side and overlap.
TILE = 512
TILE_OVERLAP = 224
#: Fields, cutout strategy: the stamp side given to the model, and the smallest detection (pixels above the
#: threshold) that becomes a candidate; also the conversion's smallest annotation, as in the original project.
STAMP_SIZE = CUTOUT_SIZE
MIN_CANDIDATE_AREA = 90

# ------------------------------------------------------------------------------------------ file names
#: Written by the conversion beside the split files: the training split's pixel statistics and class counts.
DATASET_STATS = "dataset_stats.json"
#: Written last into each training checkpoint folder (its presence marks the folder complete).
TRAIN_STATE = "train_state.json"
