"""Run folders (mrcnn.runs): named to the second, never shared by two runs, found in the order they started."""

import datetime
import os

import pytest

from mrcnn import model as modellib
from mrcnn import runs
from tests.conftest import TinyModelConfig, shapes_data


def test_two_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    started = datetime.datetime(2026, 12, 6, 10, 30, 5)
    monkeypatch.setattr(runs, "_now", lambda: started)
    config = TinyModelConfig(IMAGES_PER_GPU=1, STEPS_PER_EPOCH=1, VALIDATION_STEPS=1)
    first = modellib.MaskRCNN("training", config, str(tmp_path), seed=0)
    second = modellib.MaskRCNN("training", config, str(tmp_path), seed=0)
    assert first.log_dir == second.log_dir == str(tmp_path / "tinymodel20261206T103005")
    assert first.make_log_dir() == first.log_dir  # the first run takes the name
    dataset = shapes_data(2, seed=0)
    second.train(dataset, dataset, learning_rate=0.01, epochs=1, layers="heads", workers=1, verbose=0)
    assert second.log_dir == str(tmp_path / "tinymodel20261206T103005_2")
    assert os.listdir(second.log_dir) and not os.listdir(first.log_dir)  # nothing of the second in the first's
    last = second.find_last()
    assert last == os.path.join(second.log_dir, "mask_rcnn_tinymodel_0001.h5")
    resumed = modellib.MaskRCNN("training", config, str(tmp_path), seed=0)
    resumed.load_weights(last)
    assert resumed.log_dir == second.log_dir and resumed.epoch == 1
    assert resumed.make_log_dir() == second.log_dir  # a resumed run continues in its own folder


def test_run_folders_are_ordered_by_start_then_suffix_and_matterports_are_read(tmp_path):
    names = ["shapes20261206T1029",  # Matterport's, to the minute
             "shapes20261206T103005", "shapes20261206T103005_2", "shapes20261206T103005_10",
             "shapes20261206T103006", "shapes_other20261206T103007"]
    for name in names:
        os.makedirs(tmp_path / name)
        (tmp_path / name / "mask_rcnn_shapes_0001.h5").write_bytes(b"")
    found = [os.path.basename(d) for d in runs.run_dirs(str(tmp_path), "shapes")]
    assert found == names[:2] + ["shapes20261206T103005_2", "shapes20261206T103005_10", "shapes20261206T103006"]
    assert runs.find_last(str(tmp_path), "shapes").endswith(os.path.join("shapes20261206T103006",
                                                                         "mask_rcnn_shapes_0001.h5"))
    for name in names[:4]:
        log_dir, _, epoch, resumed = runs.run_paths(
            str(tmp_path / "logs"), "shapes", str(tmp_path / name / "mask_rcnn_shapes_0003.h5"))
        assert (os.path.basename(log_dir), epoch, resumed) == (name, 3, True)


def test_a_weights_file_that_is_no_checkpoint_starts_a_new_run(tmp_path):
    log_dir, template, epoch, resumed = runs.run_paths(str(tmp_path), "shapes", str(tmp_path / "mask_rcnn_coco.h5"))
    assert epoch == 0 and not resumed and os.path.basename(log_dir).startswith("shapes")
    assert template.endswith("mask_rcnn_shapes_{epoch:04d}.h5")
    with pytest.raises(FileNotFoundError, match="looked for shapes"):
        runs.find_last(str(tmp_path), "shapes")
