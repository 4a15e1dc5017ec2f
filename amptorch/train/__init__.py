"""Training: the AmpTorch config, the skorch net, checkpoints and the trainer."""

from amptorch.train.checkpoint import TrainedPotential
from amptorch.train.config import Config, validate_config
from amptorch.train.trainer import AtomsTrainer

__all__ = ["AtomsTrainer", "Config", "TrainedPotential", "validate_config"]
