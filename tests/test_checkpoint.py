"""Loading checkpoints: modules built without their random initialisation equal modules
built and loaded the ordinary way; corrupt weights are refused, finite ones are not."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from avgen import checkpoint
from avgen.errors import WeightsError
from avgen.model.av_flow import AVFlow, AVFlowConfig


@pytest.mark.parametrize("fusion", ["highway", "shared", "cascaded"])
def test_build_equals_ordinary_load(fusion):
    config = AVFlowConfig(d_model=32, n_heads=2, n_blocks=2, fusion=fusion)
    torch.manual_seed(0)
    state = AVFlow(config).half().state_dict()  # shipped weights are float16
    built = checkpoint.build(lambda: AVFlow(config), state)
    ordinary = AVFlow(config)
    ordinary.load_state_dict(state)
    got, want = built.state_dict(), ordinary.state_dict()
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype == torch.float32, name
        assert torch.equal(got[name], want[name]), name
    if fusion == "shared":  # the tied blocks stay one set of weights
        assert built.visual_blocks[0].qkv.weight is built.audio_blocks[0].qkv.weight
    assert all(p.requires_grad for p in built.parameters())


def test_build_keeps_buffers_the_constructor_computes():
    class WithWindow(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)
            self.register_buffer("window", torch.hann_window(8), persistent=False)

    state = WithWindow().state_dict()
    built = checkpoint.build(WithWindow, state)
    assert torch.equal(built.window, torch.hann_window(8))
    assert torch.equal(built.linear.weight, state["linear.weight"])


def test_build_is_strict():
    state = nn.Linear(4, 4).state_dict()
    with pytest.raises(RuntimeError, match="bias"):
        checkpoint.build(lambda: nn.Linear(4, 4), {"weight": state["weight"]})
    with pytest.raises(RuntimeError, match="size mismatch"):
        checkpoint.build(lambda: nn.Linear(4, 5), state)


def test_random_init_is_skipped_in_the_loading_thread_only():
    """Another thread building a module meanwhile still draws its initial weights."""
    inside, done = threading.Event(), threading.Event()
    built = {}

    def other_thread():
        inside.wait()
        torch.manual_seed(7)
        built["linear"] = nn.Linear(16, 16)
        done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with checkpoint._without_random_init():
        inside.set()
        done.wait(timeout=30)
    thread.join()
    torch.manual_seed(7)
    assert torch.equal(built["linear"].weight, nn.Linear(16, 16).weight)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32,
                                   torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(dtype, bad):
    tensor = torch.zeros(100, dtype=dtype)
    tensor[37] = bad
    with pytest.raises(WeightsError, match="'w'.*NaN or infinite"):
        checkpoint.check_finite({"w": tensor}, "model.safetensors")


def test_large_finite_weights_are_accepted():
    # their sum overflows float64, every value is finite
    big = torch.full((10,), torch.finfo(torch.float64).max, dtype=torch.float64)
    checkpoint.check_finite({"big": big, "half": torch.full((10,), 65504.0,
                                                            dtype=torch.float16)}, "x")


def test_initialisers_that_look_at_their_draws_still_finish():
    """trunc_normal_ redraws until its values fall inside its bounds: its draws must be
    real ones, whatever the bounds (here 0 lies outside them)."""
    class Truncated(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(8, 8)
            nn.init.trunc_normal_(self.linear.weight, mean=5.0, std=1.0, a=4.0, b=6.0)

    state = Truncated().state_dict()
    result = {}
    thread = threading.Thread(
        target=lambda: result.setdefault("model", checkpoint.build(Truncated, state)),
        daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert "model" in result, "building the module did not finish"
    assert torch.equal(result["model"].linear.weight, state["linear.weight"])
