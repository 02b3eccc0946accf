"""Model specs, zoos of models (from a study TOML or the offline demo), fine-tuning, and building a zoo."""
from .checks import UnknownModelError, ZooError, ZooTypeError
from .specs import FORMATS, MODEL_DIMS, ModelSpec, Zoo, ZooEntry
from .training import SCHEDULES, TRAINABLE, accuracy, finetune
from .labels import ModelClasses, TaskLabels, model_classes, scored_labels
from .demo import DemoSettings, default_cache_dir, default_workers, demo_study_data, demo_zoo
from .recipe import BaseWeights, HeldOutSplit, TrainingSettings, ZooRecipe
from .build import build_zoo

__all__ = ["ModelSpec", "ZooEntry", "Zoo", "ZooError", "ZooTypeError", "UnknownModelError", "finetune", "accuracy",
           "DemoSettings", "demo_zoo", "demo_study_data", "default_cache_dir", "default_workers", "FORMATS",
           "MODEL_DIMS", "SCHEDULES", "TRAINABLE", "ModelClasses", "TaskLabels", "model_classes", "scored_labels",
           "ZooRecipe", "TrainingSettings", "BaseWeights", "HeldOutSplit", "build_zoo"]
