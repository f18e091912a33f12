"""The README's short tour runs as written (offline, on a CPU): both of its Python blocks, in order."""

import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def tour_blocks():
    text = open(README).read()
    tour = text[text.index("## A short tour"):]
    tour = tour[:tour.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", tour, flags=re.S)


def test_the_tour_has_its_two_blocks():
    blocks = tour_blocks()
    assert len(blocks) == 2 and "model.train(" in blocks[1] and "detect(" in blocks[1]


@pytest.mark.slow
def test_the_short_tour_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # its logs/ and nothing else land here
    namespace = {}
    for block in tour_blocks():
        exec(compile(block, "README.md", "exec"), namespace)
    run = namespace["model"].log_dir
    assert sorted(f for f in os.listdir(run) if f.endswith(".h5")) == ["mask_rcnn_shapes_0001.h5",
                                                                       "mask_rcnn_shapes_0002.h5"]
    assert os.path.abspath(run).startswith(str(tmp_path))
    r = namespace["r"]
    assert r["masks"].shape[:2] == namespace["image"].shape[:2] and len(r["scores"]) == len(r["class_ids"])
