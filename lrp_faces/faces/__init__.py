"""Face data: synthetic faces with ground-truth regions, synthetic objects, and real aligned-face data sets."""
from .synthetic import (FACE_PARAMETERS, GENDER_NAMES, IMAGE_PARAMETERS, PARAMETER_NAMES, REGIONS, TASK_REGIONS,
                        SyntheticDataError, SyntheticFaces, parameter_dissimilarity, render_faces, synthetic_faces)
from .objects import OBJECT_REGIONS, SHAPES, TEXTURES, SyntheticObjects, object_class_names, synthetic_objects
from .datasets import GENDER_CODES, IMAGE_EXTENSIONS, DatasetError, FaceDataset

__all__ = ["REGIONS", "TASK_REGIONS", "FACE_PARAMETERS", "IMAGE_PARAMETERS", "PARAMETER_NAMES", "GENDER_NAMES",
           "SyntheticFaces", "synthetic_faces", "render_faces", "parameter_dissimilarity", "SyntheticDataError",
           "SHAPES", "TEXTURES", "OBJECT_REGIONS", "SyntheticObjects", "synthetic_objects", "object_class_names",
           "FaceDataset", "DatasetError", "IMAGE_EXTENSIONS", "GENDER_CODES"]
