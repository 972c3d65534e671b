"""One typed config tree (schema), loaded from YAML plus `key.sub=value` overrides (load), with the rule for what a
resume may change (resume) and a reference generated from the code (describe)."""

from dcgan.config.fields import may_change, resolved_model_name
from dcgan.config.load import load_config, to_dict, to_flat_dict, to_flat_values, yaml_scalar
from dcgan.config.resume import change_lines, may_change_key, resume_changes
from dcgan.config.schema import (
    AUGMENTATIONS,
    IMAGE_SIZES,
    CheckpointConfig,
    Config,
    DataConfig,
    EvalConfig,
    FaultConfig,
    LogConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

__all__ = [
    "AUGMENTATIONS", "IMAGE_SIZES", "CheckpointConfig", "Config", "DataConfig", "EvalConfig", "FaultConfig",
    "LogConfig", "ModelConfig", "OptimConfig", "TrainConfig", "change_lines", "load_config", "may_change",
    "may_change_key", "resolved_model_name", "resume_changes", "to_dict", "to_flat_dict", "to_flat_values",
    "yaml_scalar",
]  # fmt: skip
