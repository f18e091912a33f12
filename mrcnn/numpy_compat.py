"""NumPy 2 compatibility for imgaug 0.4.0 (the last imgaug release).

imgaug reads ``np.sctypes`` at import time and ``np.complex`` in some augmenters; numpy 2 removed
both. :func:`patch_numpy_for_imgaug` adds them back (only when missing, never replacing anything).
``mrcnn.data.augmentation.imgaug_augmenters()`` calls it before importing imgaug (the one place mrcnn does).
Measured on this stack: the augmenters Matterport's samples use work with it; ElasticTransformation
still fails.
"""

import numpy as np


def patch_numpy_for_imgaug():
    """Restore the numpy 1 aliases imgaug 0.4.0 uses; idempotent, only adds missing names."""
    if "sctypes" not in np.__dict__:
        np.sctypes = {  # noqa: NPY201
            "int": [np.int8, np.int16, np.int32, np.int64],
            "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
            "float": [np.float16, np.float32, np.float64, np.longdouble],
            "complex": [np.complex64, np.complex128, np.clongdouble],
            "others": [bool, object, bytes, str, np.void],
        }
    if "complex" not in np.__dict__:
        np.complex = complex  # noqa: NPY001  (restoring the removed alias is the point)
