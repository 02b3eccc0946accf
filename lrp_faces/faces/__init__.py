"""Face data: synthetic faces with ground-truth regions, synthetic objects, real aligned-face data sets, the one
data interface every step reads (:mod:`lrp_faces.faces.interface`), held-out splits, and the class numbering a model
and a data set share (:func:`class_mapping`)."""
from .synthetic import (FACE_PARAMETERS, GENDER_NAMES, IMAGE_PARAMETERS, PARAMETER_NAMES, REGIONS, TASK_REGIONS,
                        SyntheticDataError, SyntheticFaces, parameter_dissimilarity, render_faces, synthetic_faces)
from .objects import OBJECT_REGIONS, SHAPES, TEXTURES, SyntheticObjects, object_class_names, synthetic_objects
from ._errors import DatasetError, DataTypeError
from .image_files import IMAGE_EXTENSIONS, read_image
from .datasets import GENDER_CODES, FaceDataset
from .interface import (FaceData, FaceDataView, ImageTable, as_face_data, check_images, describe_images, load_images,
                        task_labels)
from .splits import split_by_image
from .classes import ClassMismatchError, class_mapping
from .kinds import DATASET_KINDS, DATASET_SETTINGS

__all__ = ["REGIONS", "TASK_REGIONS", "FACE_PARAMETERS", "IMAGE_PARAMETERS", "PARAMETER_NAMES", "GENDER_NAMES",
           "SyntheticFaces", "synthetic_faces", "render_faces", "parameter_dissimilarity", "SyntheticDataError",
           "SHAPES", "TEXTURES", "OBJECT_REGIONS", "SyntheticObjects", "synthetic_objects", "object_class_names",
           "FaceDataset", "DatasetError", "DataTypeError", "IMAGE_EXTENSIONS", "GENDER_CODES", "read_image",
           "FaceData", "FaceDataView", "as_face_data", "ImageTable", "load_images", "task_labels", "describe_images",
           "check_images", "split_by_image", "class_mapping", "ClassMismatchError", "DATASET_SETTINGS",
           "DATASET_KINDS"]
