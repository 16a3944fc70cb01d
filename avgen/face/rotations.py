"""Head pose helpers shared by the motion teacher, the renderer and the tracker.

Coordinates are the camera frame of the face model (`avgen.face.model`): x to image
right, y down, z away from the camera (right-handed). head_pose (T, 7) = unit quaternion
(w, x, y, z) of the head rotation, then translation (x, y, z) in face widths. Euler
angles here are radians, R = Ry(yaw) Rx(pitch) Rz(roll): positive yaw turns the nose
toward image left (the subject's right), positive pitch nods the chin down, positive
roll tilts the head's top toward image right.
"""

from __future__ import annotations

import numpy as np


def euler_to_quaternion(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(T,) x3 radians -> (T, 4) unit quaternions (w, x, y, z) for R = Ry(yaw) Rx(pitch) Rz(roll)."""
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    # q = qy * qx * qz
    w = cy * cp * cr + sy * sp * sr
    x = cy * sp * cr + sy * cp * sr
    y = sy * cp * cr - cy * sp * sr
    z = cy * cp * sr - sy * sp * cr
    return np.stack([w, x, y, z], axis=-1)


def quaternion_to_euler(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, 4) (w, x, y, z) -> (yaw, pitch, roll), the inverse of euler_to_quaternion."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    pitch = np.arcsin(np.clip(2 * (w * x - y * z), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * y + x * z), 1 - 2 * (x * x + y * y))
    roll = np.arctan2(2 * (w * z + x * y), 1 - 2 * (x * x + z * z))
    return yaw, pitch, roll


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) (w, x, y, z) -> (..., 3, 3) rotation matrices."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """(w, x, y, z) with w >= 0 for one rotation matrix (3, 3)."""
    m = np.asarray(R, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-12))
        q = [0.0] * 4
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def quaternion_from_degrees(yaw, pitch, roll=0.0) -> np.ndarray:
    """euler_to_quaternion with angles in degrees (scalars give a (4,) quaternion)."""
    return euler_to_quaternion(*np.radians(np.asarray([yaw, pitch, roll], np.float64)))


def degrees_from_quaternion(q: np.ndarray) -> np.ndarray:
    """(..., 4) -> (..., 3) yaw, pitch, roll in degrees."""
    return np.degrees(np.stack(quaternion_to_euler(np.asarray(q, np.float64)), axis=-1))


def neutral_head_pose(num_frames: int) -> np.ndarray:
    """(T, 7): identity rotation, no translation."""
    pose = np.zeros((num_frames, 7), np.float32)
    pose[:, 0] = 1.0
    return pose
