"""Reading our safetensors checkpoints: tensors plus JSON metadata naming the architecture
and carrying the config. Every model's loader goes through `read`, so a missing, corrupt or
foreign file gives the same clear error everywhere."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from avgen.errors import WeightsError


def read(path: str | Path, architecture: str, what: str, device: str = "cpu"
         ) -> tuple[dict, dict[str, str]]:
    """(state dict, raw metadata) of a checkpoint whose metadata names `architecture`.
    `what` names the model in errors ("vocoder", "text-to-tokens", ...)."""
    from safetensors.torch import load_file

    metadata = read_metadata(path, architecture, what)
    with _readable(path, what):
        state = load_file(str(path), device=str(device))
    check_finite(state, path)
    return state, metadata


def build(factory, state: dict):
    """`factory()`, an nn.Module, loaded with `state` (strict, as `load_state_dict`),
    built without the random draws of its layers' initialisation: they were 40 % of
    loading the joint model (0.19 of 0.5 s), all of it overwritten at once. Everything
    else the constructor does (shapes, buffers it computes) happens as usual, and strict
    loading leaves no parameter or stored buffer unset, so the module equals one built
    and loaded the ordinary way."""
    with _without_random_init():
        model = factory()
    model.load_state_dict(state)
    return model


def _without_random_init():
    """A context in which torch's weight initialisers (`torch.nn.init.kaiming_uniform_`
    and the others that hand themselves to torch function modes) fill zeros instead of
    random draws. Only those whole functions: a random fill made in any other way runs
    as usual, since code may look at what it drew (`trunc_normal_` redraws until its
    values fall inside its bounds). A torch function mode holds for the calling thread
    only, so other threads building modules meanwhile draw as usual (patching
    `torch.nn.init` would change them too)."""
    import torch
    from torch.overrides import TorchFunctionMode

    init = torch.nn.init
    skipped = {init.uniform_, init.normal_, init.trunc_normal_, init.kaiming_uniform_,
               init.kaiming_normal_, init.xavier_uniform_, init.xavier_normal_,
               init.orthogonal_, init.sparse_}

    class WithoutRandomInit(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in skipped:
                tensor = args[0] if args else kwargs["tensor"]
                with torch.no_grad():
                    return tensor.zero_()
            return func(*args, **(kwargs or {}))

    return WithoutRandomInit()


def read_metadata(path: str | Path, architecture: str, what: str) -> dict[str, str]:
    """The raw metadata of a checkpoint whose metadata names `architecture`, without
    reading its tensors; the same errors as `read`."""
    from safetensors import safe_open

    with _readable(path, what):
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    if metadata.get("architecture") != architecture:
        raise WeightsError(f"{path}: not an {architecture} checkpoint "
                           f"(architecture {metadata.get('architecture')!r})")
    return metadata


@contextlib.contextmanager
def _readable(path, what: str):
    """A missing or unreadable file as one WeightsError naming it."""
    from safetensors import SafetensorError

    try:
        yield
    except FileNotFoundError:
        raise WeightsError(f"{path}: {what} checkpoint not found") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None


def check_finite(state: dict, path) -> None:
    """WeightsError if any floating-point tensor holds NaN or Inf: a model with one such
    weight writes NaN everywhere, so a corrupt file is refused at load, not after a run."""
    import torch

    for name, tensor in state.items():
        # a float64 sum of finite float16/32 values is finite, and NaN or Inf carries
        # through it: one pass instead of a mask per tensor (float64 values can
        # overflow the sum, so a non-finite sum is checked element by element)
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and \
                not bool(torch.isfinite(tensor.sum(dtype=torch.float64))) and \
                not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{path}: tensor {name!r} holds NaN or infinite values; the "
                               "checkpoint is corrupt")


def metadata(path: str | Path) -> dict:
    """A checkpoint's metadata with every value but the architecture JSON-decoded."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        raw = handle.metadata() or {}
    return {k: (json.loads(v) if k != "architecture" else v) for k, v in raw.items()}


# -- training state without pickle ---------------------------------------------------------
# A run folder's resume state (model, optimizer moments, random generator states, configs)
# is a nested structure of tensors and plain values. Pickle (torch.save) would run code
# from a crafted run folder; here tensors go into a safetensors file and the structure
# around them into its metadata as JSON, so loading is data only.

def _encode(value, tensors: dict, key: str):
    import torch

    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"tensor": key}
    if isinstance(value, dict):
        return {"dict": [[_encode(k, tensors, f"{key}/k{n}"), _encode(v, tensors, f"{key}/{n}")]
                         for n, (k, v) in enumerate(value.items())]}
    if isinstance(value, (list, tuple)):
        return {"tuple" if isinstance(value, tuple) else "list":
                [_encode(v, tensors, f"{key}/{n}") for n, v in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"cannot store {type(value).__name__} in a state file")


def _decode(node, tensors: dict, source: str):
    if not isinstance(node, dict) or len(node) != 1:
        raise WeightsError(f"{source}: not an avgen state file (bad structure)")
    (kind, body), = node.items()
    if kind == "tensor":
        if body not in tensors:
            raise WeightsError(f"{source}: state file lacks tensor {body!r}")
        return tensors[body]
    if kind == "dict":
        return {_decode(k, tensors, source): _decode(v, tensors, source) for k, v in body}
    if kind in ("list", "tuple"):
        items = [_decode(v, tensors, source) for v in body]
        return tuple(items) if kind == "tuple" else items
    if kind == "value":
        return body
    raise WeightsError(f"{source}: not an avgen state file (unknown node {kind!r})")


STATE_FORMAT = "avgen.state/1"


def save_state(path: str | Path, state) -> None:
    """Write a nested structure of tensors and plain values atomically, without pickle."""
    from safetensors.torch import save

    from avgen.outputs import write_bytes

    tensors: dict = {}
    tree = _encode(state, tensors, "s")
    write_bytes(path, save(tensors, metadata={"format": STATE_FORMAT,
                                              "tree": json.dumps(tree)}))


def load_state(path: str | Path):
    """Read `save_state`'s file; WeightsError for anything else. Never runs code."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise WeightsError(f"{path}: state file not found") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: not a readable state file ({exc})") from None
    if metadata.get("format") != STATE_FORMAT:
        raise WeightsError(f"{path}: not an avgen state file (format "
                           f"{metadata.get('format')!r})")
    try:
        tree = json.loads(metadata["tree"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: not an avgen state file ({exc})") from None
    check_finite({k: v for k, v in tensors.items()}, path)
    return _decode(tree, tensors, str(path))


def load_legacy_state(path: str | Path):
    """A resume state an older avgen pickled with torch.save, read with weights_only=True
    (tensors, dicts, lists and numbers only: a pickle that tries to run code is refused)."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError,
            AttributeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{path}: refused: not a plain-data state file ({first})") \
            from None
