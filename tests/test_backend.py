"""An unknown or unavailable Keras backend: one message naming it and the line that installs it."""

import json
import os
import subprocess
import sys

import pytest

from mrcnn import backend

pytestmark = pytest.mark.all_backends  # also on JAX and PyTorch (tests/run_backends.py)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_unknown_backend_is_named(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "mxnet")
    with pytest.raises(backend.BackendError, match="unknown Keras backend 'mxnet' \\(from KERAS_BACKEND\\)"):
        backend.check_backend()


def test_missing_package_gives_the_install_line(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    monkeypatch.setattr(backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(backend.BackendError, match=r"'jax'.*not installed.*pip install \"jax\[cpu\]\""):
        backend.check_backend()


def test_backend_from_keras_json(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert backend.requested_backend() == ("tensorflow", "Keras's default")
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "theano"}))
    with pytest.raises(backend.BackendError, match="'theano' \\(from .*keras.json\\)"):
        backend.check_backend()


def test_import_mrcnn_says_it_in_one_message():
    env = {**os.environ, "KERAS_BACKEND": "mxnet"}
    done = subprocess.run([sys.executable, "-c", "import mrcnn"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "BackendError: mrcnn: unknown Keras backend 'mxnet'" in done.stderr
