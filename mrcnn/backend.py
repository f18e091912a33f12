"""Which Keras backend mrcnn will run on, checked before Keras is imported.

Keras picks its backend from ``KERAS_BACKEND``, else from ``$KERAS_HOME/keras.json`` (``~/.keras``), else
TensorFlow. An unknown name, or a backend whose package is not installed, fails inside Keras with a
message about importing modules; :func:`check_backend` (run by ``import mrcnn``) says instead which backend
was asked for and the line that installs it.
"""

from __future__ import annotations

import importlib.util
import json
import os

# backend -> (module Keras imports, install line)
BACKENDS = {
    "tensorflow": ("tensorflow", "pip install -r requirements.txt (TensorFlow 2.21, the tested backend)"),
    "jax": ("jax", 'pip install "jax[cpu]" (or "jax[cuda12]" on an NVIDIA GPU)'),
    "torch": ("torch", "pip install torch --index-url https://download.pytorch.org/whl/cpu (CPU build)"),
}


class BackendError(ImportError):
    """The Keras backend asked for is unknown or not installed."""


def requested_backend():
    """The backend name Keras will use, and where it came from."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name, "KERAS_BACKEND"
    path = os.path.join(os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras"),
                        "keras.json")
    try:
        with open(path) as f:
            name = json.load(f).get("backend")
    except (OSError, ValueError):
        name = None
    return (name, path) if name else ("tensorflow", "Keras's default")


def check_backend():
    """Raise :class:`BackendError` naming the backend and its install line if Keras could not load it."""
    name, source = requested_backend()
    if name not in BACKENDS:
        raise BackendError(f"mrcnn: unknown Keras backend {name!r} (from {source}); mrcnn runs on "
                           f"{', '.join(BACKENDS)}: set KERAS_BACKEND to one of them")
    module, install = BACKENDS[name]
    if importlib.util.find_spec(module) is None:
        raise BackendError(f"mrcnn: the Keras backend {name!r} (from {source}) needs the {module!r} package, "
                           f"which is not installed. Install it with: {install}; or choose another backend "
                           f"with KERAS_BACKEND ({', '.join(BACKENDS)})")
    return name
