"""Training: the AmpTorch config, the settings plan, the skorch net and the trainer.

Depends on ``amptorch.potential`` (what training produces), never the reverse.
"""

from amptorch.potential import TrainedPotential
from amptorch.train.config import Config, validate_config
from amptorch.train.plan import Plan
from amptorch.train.trainer import AtomsTrainer

__all__ = ["AtomsTrainer", "Config", "Plan", "TrainedPotential", "validate_config"]
