"""What the joint model reads and writes besides tokens: the motion feature layout (head
pose as Euler angles + translation, then the expressions) and the normaliser stored with
each checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avgen.constants import EXPRESSION_NAMES
from avgen.face.rotations import euler_to_quaternion, quaternion_to_euler

# layout of a motion feature vector (see motion_features)
PITCH_FEATURE = 1
EXPRESSION_FEATURES = 6  # index of the first expression


def motion_features(head_pose: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """(T, 7) quaternion+translation and (T, E) -> (T, 6 + E): yaw, pitch, roll (rad),
    translation, expressions. Euler angles are smooth for the small rotations of a
    talking head, where quaternions carry a redundant, constrained dimension."""
    yaw, pitch, roll = quaternion_to_euler(head_pose[:, :4].astype(np.float64))
    return np.concatenate([np.stack([yaw, pitch, roll], 1), head_pose[:, 4:7], expression],
                          axis=1).astype(np.float32)


def motion_from_features(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of motion_features; expressions are clipped to their ranges."""
    from avgen.constants import SIGNED_EXPRESSIONS

    pose = np.zeros((len(features), 7), np.float32)
    pose[:, :4] = euler_to_quaternion(features[:, 0], features[:, 1], features[:, 2])
    pose[:, 4:] = features[:, 3:6]
    expression = features[:, EXPRESSION_FEATURES:].copy()
    for k, name in enumerate(EXPRESSION_NAMES):
        low = -1.0 if name in SIGNED_EXPRESSIONS else 0.0
        expression[:, k] = np.clip(expression[:, k], low, 1.0)
    return pose, expression.astype(np.float32)


@dataclass(frozen=True)
class Normalizer:
    """Per-dimension mean/std of mel (80,) and motion (M,), stored with the checkpoint."""

    mel_mean: np.ndarray
    mel_std: np.ndarray
    motion_mean: np.ndarray
    motion_std: np.ndarray

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {f"normalizer.{k}": torch.from_numpy(np.asarray(v, np.float32))
                for k, v in self.__dict__.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> Normalizer:
        return cls(**{k: tensors[f"normalizer.{k}"].numpy() for k in
                      ("mel_mean", "mel_std", "motion_mean", "motion_std")})
