"""lrp-faces: pixel-wise relevance for VGG-16 face classifiers, validated by masking and across models."""
from importlib.metadata import PackageNotFoundError, version as _version

from .nn import IMAGENET, VGGFACE, PixelNorm, Preprocessing
from .models import (load_model, load_torchvision_vgg16, load_vgg_face, read_checkpoint_info, save_model,
                     vgg16)
from .attribution import attribute
from .faces import (REGIONS, TASK_REGIONS, DatasetError, FaceDataset, SyntheticFaces, SyntheticObjects,
                    as_face_data, parameter_dissimilarity, split_by_image, synthetic_faces, synthetic_objects)
from .masking import MaskingConfig, MaskingError, curves, generalization, perturb
from . import canonizers, cube, faces, masking, methods, rules

try:
    __version__ = _version("lrp-faces")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = ["IMAGENET", "VGGFACE", "PixelNorm", "Preprocessing", "vgg16", "load_torchvision_vgg16", "load_vgg_face",
           "save_model", "load_model", "read_checkpoint_info", "attribute", "synthetic_faces", "synthetic_objects",
           "SyntheticFaces", "SyntheticObjects", "FaceDataset", "DatasetError", "as_face_data", "split_by_image",
           "parameter_dissimilarity", "REGIONS",
           "TASK_REGIONS", "MaskingConfig", "MaskingError", "perturb", "curves", "generalization", "canonizers",
           "cube", "faces", "masking", "methods", "rules", "__version__"]
