"""The one clock and the shared vocabularies of every stage (docs/design.md, "Rates and shapes").

Changing anything here changes a file contract: bump the format versions in
`avgen.formats` in the same step.
"""

import math

SAMPLE_RATE = 22050
N_FFT = 1024
HOP_LENGTH = 256
WIN_LENGTH = 1024
N_MELS = 80
FMIN = 0.0
FMAX = 8000.0

# Log-mels are log(max(mel, LOG_FLOOR)); LOG_SILENCE = log(LOG_FLOOR) is a silent band,
# the value vocoders, padding and off-speech frames use as "silence".
LOG_FLOOR = 1e-5
LOG_SILENCE = math.log(LOG_FLOOR)

# Mel frames, token frames and motion frames all tick at this rate inside the model.
FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH  # 86.1328125

# quaternion (w, x, y, z) + translation (x, y, z) in face widths
HEAD_POSE_DIM = 7

# Named expression coefficients; [0, 1] unless listed in SIGNED_EXPRESSIONS ([-1, 1]).
EXPRESSION_NAMES = (
    "jaw_open",
    "lips_close",
    "lips_pucker",
    "lips_funnel",
    "smile_left",
    "smile_right",
    "mouth_stretch",
    "upper_lip_raise",
    "lower_lip_depress",
    "brow_inner_up",
    "brow_outer_up",
    "brow_down",
    "eye_blink_left",
    "eye_blink_right",
    "eye_squint",
    "gaze_x",
    "gaze_y",
)
SIGNED_EXPRESSIONS = frozenset({"gaze_x", "gaze_y"})

NUM_PEOPLE = 2


def seconds_to_frames(seconds: float) -> int:
    """Nearest whole frame on the model clock."""
    return int(round(seconds * FRAMES_PER_SECOND))

# Sampling temperature of the joint model's speech (scale of the mel's starting noise),
# chosen by measured WER (benchmarks/results/av_eval.md).
DEFAULT_TEMPERATURE = 0.333

# Voice guidance of the joint model's speech (AVFlow.forward): how far the mel's velocity
# is pushed from the voices' mean voice toward the person's own; 1 is off. Off by default:
# 1.5 makes the voices less alike but costs 14 % of synth's time and 2-3 dB of MCD
# (benchmarks/results/voice_calibration.md, voices.md).
DEFAULT_VOICE_GUIDANCE = 1.0

# Sway sampling (F5-TTS) of the sampler's steps in flow time (AVFlow, `step_times`): below 0
# the first steps are small, so the sampler settles what each frame does (does the
# listener nod? smile?) before it commits; uniform steps average those chances away.
DEFAULT_SWAY = -1.0

# ODE solvers of the joint model's sampler, with their model evaluations per step. Euler
# is first order; midpoint and Heun are second order: fewer steps for the same error, at
# two evaluations each.
SOLVERS = {"euler": 1, "midpoint": 2, "heun": 2}

# Arithmetic of the joint model's evaluations while sampling (`GenerateConfig.precision`;
# "auto" is bfloat16 where the device does it natively, else float32). bfloat16 halves
# the sampler's time on CPUs with AVX512-BF16 or AMX; the model was trained under it.
PRECISIONS = ("float32", "bfloat16")
