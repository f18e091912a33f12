import io
import os
import urllib.error
import urllib.request

import pytest

from mrcnn import utils


def test_offline_download_fails_with_instructions_and_leaves_no_file(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    target = tmp_path / "weights" / "mask_rcnn_coco.h5"
    with pytest.raises(utils.WeightsDownloadError) as error:
        utils.download_trained_weights(str(target), verbose=0)
    message = str(error.value)
    assert str(target) in message
    assert utils.COCO_MODEL_URL in message
    assert "--weights=" in message
    assert os.listdir(target.parent) == []  # no partial file


def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    class Broken(io.RawIOBase):
        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

        def readinto(self, buffer):
            raise ConnectionResetError("connection reset by peer")

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Broken())
    with pytest.raises(utils.WeightsDownloadError, match="connection reset"):
        utils.download_trained_weights(str(tmp_path / "w.h5"), verbose=0)
    assert os.listdir(tmp_path) == []


def test_download_writes_the_file(tmp_path, monkeypatch):
    payload = b"\x89HDF\r\n\x1a\n" + b"x" * 5000
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(payload))
    path = utils.download_trained_weights(str(tmp_path / "mask_rcnn_coco.h5"), verbose=0)
    assert open(path, "rb").read() == payload
    assert os.listdir(tmp_path) == ["mask_rcnn_coco.h5"]
