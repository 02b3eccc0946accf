"""Model specs, zoos of models (from a study TOML or the offline demo), and fine-tuning."""
from .specs import FORMATS, MODEL_DIMS, ModelSpec, Zoo, ZooEntry, ZooError, default_cache_dir
from .training import SCHEDULES, accuracy, finetune
from .demo import DemoSettings, default_workers, demo_study_data

__all__ = ["ModelSpec", "ZooEntry", "Zoo", "ZooError", "finetune", "accuracy", "DemoSettings", "demo_study_data",
           "default_cache_dir", "default_workers", "FORMATS", "MODEL_DIMS", "SCHEDULES"]
