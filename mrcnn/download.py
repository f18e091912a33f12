"""Downloading Matterport's pretrained COCO weights (``mask_rcnn_coco.h5``).

The download is written to a temporary file beside the target and renamed into place only when
complete, so an interrupted download never leaves a truncated ``.h5`` behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request

COCO_MODEL_URL = "https://github.com/matterport/Mask_RCNN/releases/download/v2.0/mask_rcnn_coco.h5"


class WeightsDownloadError(RuntimeError):
    """The weights could not be downloaded; the message says where to get them and where to put them."""


def download_file(url, path, what, hint="", timeout=30):
    """Download ``url`` to ``path`` atomically; on failure raise WeightsDownloadError saying what to do."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=directory)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        os.replace(partial, path)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise WeightsDownloadError(
            f"Could not download {what} from {url} ({error}).\n"
            f"Download {os.path.basename(path)} from that address on a machine with network access and "
            f"put it at {path}{', ' + hint if hint else ''}."
        ) from error
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


def download_trained_weights(coco_model_path, verbose=1, url=COCO_MODEL_URL, timeout=30):
    """Download the COCO-trained weights from Matterport's release to ``coco_model_path``.

    Raises :class:`WeightsDownloadError` when the network or the server fails, saying where to
    download the file by hand and where to put it.
    """
    if verbose > 0:
        print(f"Downloading pretrained model to {os.path.abspath(coco_model_path)} ...")
    path = download_file(url, coco_model_path, what="the COCO weights",
                         hint="or pass its location as the weights path "
                              "(e.g. --weights=/path/to/mask_rcnn_coco.h5)", timeout=timeout)
    if verbose > 0:
        print("... done downloading pretrained model!")
    return path
