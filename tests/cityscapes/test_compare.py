"""The attention comparison's table and plot, from two runs' summaries."""

from PIL import Image

from samples.cityscapes import compare_attention

CLASSES = ("person", "car")


def _result(ap, seconds, stages):
    return {
        "evaluation": {"AP": ap, "AP50": 2 * ap, "classes": {c: {"AP": ap, "AP50": 2 * ap} for c in CLASSES},
                       "coco": {"bbox": {"AP": ap, "AP50": ap}, "segm": {"AP": ap / 2, "AP50": ap}}},
        "params": 1234567, "backbone_params": 234567, "backbone_gflops_per_image": 1.5,
        "seconds_per_step": seconds, "peak_rss_mb": 2048.0, "val_loss": [3.0, 2.0, 1.5],
        "attention_stages": stages,
    }


def test_table_and_plot(tmp_path):
    results = {"baseline": _result(0.1, 0.5, []), "attention": _result(0.2, 0.7, [4, 5])}
    text = compare_attention.table(results)
    lines = text.splitlines()
    assert lines[0] == "| | baseline | attention |"
    assert "| AP (official) | 0.100 | 0.200 |" in lines
    assert "| person AP / AP50 | 0.100 / 0.200 | 0.200 / 0.400 |" in lines
    assert "| seconds / training step | 0.500 | 0.700 |" in lines
    assert "| parameters (model) | 1,234,567 | 1,234,567 |" in lines
    path = tmp_path / "comparison.png"
    compare_attention.plot(results, str(path))
    assert Image.open(path).size == (1200, 450)
