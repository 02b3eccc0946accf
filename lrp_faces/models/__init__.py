"""VGG-16 models that take RGB in [0, 1]: builders, weight loaders and checkpoints."""
from .builder import VGG16_CONFIG, ModelCard, NormalizedVGG, vgg16, vgg16_from_architecture
from .checkpoints import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, UnverifiedCheckpointWarning, load_model,
                          read_checkpoint_info, save_model, weights_digest)
from ._state_dicts import NonFiniteWeightsWarning, WeightsError, WeightsFileNotFoundError
from .weights import load_torchvision_vgg16, load_vgg_face, replace_head

__all__ = ["NormalizedVGG", "ModelCard", "vgg16", "vgg16_from_architecture", "VGG16_CONFIG", "WeightsError",
           "WeightsFileNotFoundError", "NonFiniteWeightsWarning", "UnverifiedCheckpointWarning", "load_torchvision_vgg16", "load_vgg_face",
           "replace_head", "save_model", "load_model", "read_checkpoint_info", "weights_digest", "CHECKPOINT_FORMAT",
           "CHECKPOINT_VERSION"]
