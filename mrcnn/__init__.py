"""mrcnn: Mask R-CNN instance segmentation in Keras 3, keeping Matterport's API.

``from mrcnn.config import Config`` and ``from mrcnn import utils`` work as with Matterport. Importing
this package does not import TensorFlow; the model modules do.
"""

__version__ = "0.1.0"

from mrcnn.backend import check_backend as _check_backend

_check_backend()  # an unknown or missing Keras backend: one clear message, before Keras fails inside
