"""``cityscapes.py`` that kills itself with SIGKILL at a chosen moment, for tests/test_faults.py.

    python tests/cli_with_fault.py MOMENT train --dataset=... --logs=... [cityscapes.py arguments]

The model is a tiny one (``--config=synthetic`` is replaced by :class:`TinyCityscapesConfig`) so that a
process starts and trains in seconds; everything else is the CLI's own code. MOMENT is ``none`` or:

    train_batch:E:B     after training step B (1-based) of epoch E
    val_batch:E         after the first validation step of epoch E
    epoch_begin:E       as epoch E begins (between epochs)
    checkpoint_write:E  inside the checkpoint file of epoch E, before it is renamed into place
    after_checkpoint:E  after the checkpoint of epoch E is in place, before training_log.csv is written
    csv_write:E         with training_log.csv of epoch E half written to its temporary file
    run_summary         after training, as run_summary.json would be written
    evaluate:N          after N images of the evaluation
    detect              as the first detection picture would be drawn
"""

import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402

from mrcnn import checkpoints  # noqa: E402
from mrcnn import model as modellib  # noqa: E402
from samples.cityscapes import cityscapes, jobs  # noqa: E402
from samples.cityscapes.config import SyntheticCityscapesConfig  # noqa: E402
from tests.conftest import tiny_backbone  # noqa: E402


class TinyCityscapesConfig(SyntheticCityscapesConfig):
    """The synthetic Cityscapes settings with the tests' tiny backbone and heads."""

    BACKBONE = staticmethod(tiny_backbone)
    IMAGES_PER_GPU = 1
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 32
    MASK_HEAD_SIZE = 16
    POST_NMS_ROIS_TRAINING = 64
    POST_NMS_ROIS_INFERENCE = 32
    TRAIN_ROIS_PER_IMAGE = 16
    VALIDATION_STEPS = 1
    # The synthetic job's 16 precise-BN batches outweighed the tests' few training steps at every restart; two
    # still recompute the statistics before each checkpoint, which resuming must reproduce.
    PRECISE_BN_BATCHES = 2


def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class Killer(keras.callbacks.Callback):
    def __init__(self, kind, args):
        super().__init__()
        self.kind, self.args, self.epoch = kind, args, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1
        if self.kind == "epoch_begin" and self.epoch == self.args[0]:
            die()

    def on_train_batch_end(self, batch, logs=None):
        if self.kind == "train_batch" and [self.epoch, batch + 1] == self.args:
            die()

    def on_test_batch_end(self, batch, logs=None):
        if self.kind == "val_batch" and self.epoch == self.args[0]:
            die()


def arm(moment):
    kind, _, rest = moment.partition(":")
    args = [int(v) for v in rest.split(":")] if rest else []
    train = modellib.MaskRCNN.train

    def train_with_killer(self, *a, custom_callbacks=None, **k):
        return train(self, *a, custom_callbacks=list(custom_callbacks or []) + [Killer(kind, args)], **k)

    modellib.MaskRCNN.train = train_with_killer
    write_state, write_csv = checkpoints.write_state, checkpoints.write_csv

    def write_state_then_die(f, state):
        write_state(f, state)
        if kind == "checkpoint_write" and state.epoch == args[0]:
            f.flush()
            die()

    def write_csv_or_die(path, history):
        epoch = history[-1]["epoch"] + 1 if history else 0
        if kind == "after_checkpoint" and epoch == args[0]:
            die()
        if kind == "csv_write" and epoch == args[0]:
            with open(os.path.join(os.path.dirname(path), checkpoints.TMP_PREFIX + "csv.txt"), "w") as f:
                f.write("epoch,lo")
            die()
        write_csv(path, history)

    checkpoints.write_state, checkpoints.write_csv = write_state_then_die, write_csv_or_die
    if kind == "run_summary":
        jobs.write_run_summary = lambda *a, **k: die()
    if kind == "evaluate":
        write_predictions, count = jobs.write_predictions, [0]

        def write_predictions_or_die(*a, **k):
            write_predictions(*a, **k)
            count[0] += 1
            if count[0] == args[0]:
                die()

        jobs.write_predictions = write_predictions_or_die
    if kind == "detect":
        jobs.draw_instances = lambda *a, **k: die()


if __name__ == "__main__":
    moment, argv = sys.argv[1], sys.argv[2:]
    cityscapes.CONFIGS["synthetic"] = TinyCityscapesConfig
    if moment != "none":
        arm(moment)
    sys.exit(cityscapes.main(argv))
