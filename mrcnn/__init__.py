"""mrcnn: Mask R-CNN instance segmentation in Keras 3, keeping Matterport's API.

``from mrcnn.config import Config`` and ``from mrcnn import utils`` work as with Matterport. Importing this
package checks the Keras backend (one clear message when it is unknown or not installed), then registers every
layer and model class mrcnn saves in ``.keras`` files, so that ``keras.saving.load_model`` reads them after
``import mrcnn``; that imports Keras and its backend.
"""

__version__ = "0.1.0"

from mrcnn.backend import check_backend as _check_backend

_check_backend()  # an unknown or missing Keras backend: one clear message, before Keras fails inside

# the modules that register mrcnn's serializable classes (the graph, its layers, the serving model's layers,
# the attention layer the backbone imports when asked for it)
import attention.local_attention  # noqa: E402, F401
import mrcnn.export  # noqa: E402, F401
