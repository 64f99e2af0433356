"""Model architectures, their flat parameter vectors, and the hashes the chain records.

A :class:`ModelSpec` names an architecture and everything that fixes its parameter
shapes and its initial values:

- ``logreg``: multinomial logistic regression (one linear layer);
- ``mlp``: ReLU perceptron with ``hidden`` layer widths (default ``(64,)``);
- ``cnn``: a small convnet for small images such as 8x8 digits: per entry of
  ``hidden`` (default ``(16, 32)``) a 3x3 conv, ReLU and 2x2 max-pool, then a linear
  classifier;
- ``"package.module:function"``: the user's own factory returning a ``torch.nn.Module``;
  it is called with whichever of ``input_shape``, ``n_classes`` and ``hidden`` it
  accepts as keyword arguments.

The federation exchanges parameters as one flat float32 vector, in the canonical
order of ``model.named_parameters()`` (which is the state-dict order of the
parameters). Models with buffers (BatchNorm running statistics) are refused: buffers
are not parameters, so peers' copies would drift apart; use GroupNorm/LayerNorm.

Hashes (bytes32 on chain):

- :func:`spec_hash`: sha256 of a canonical JSON of the spec and the parameter names
  and shapes it yields; recorded at deployment, so a peer with another model is refused;
- :func:`model_hash`: sha256 of :func:`canonical_bytes` (little-endian float32, -0.0
  written as +0.0, NaN/Inf refused). The genesis model M(0) is
  ``get_flat(build_model(spec))``.

Initialisation is deterministic in ``spec.seed`` and does not read or change torch's
global random state: the built-in architectures draw from a private
``torch.Generator`` (PyTorch's default fan-in uniform bounds, 1/sqrt(fan_in)). A user
factory runs under ``torch.random.fork_rng`` seeded with ``spec.seed``, which restores
the global state afterwards (not safe against another thread drawing from the global
generator at the same moment).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from peer.errors import ConfigError, FedchainError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ModelSpec",
    "ModelError",
    "BUILTIN_ARCHS",
    "build_model",
    "spec_hash",
    "get_flat",
    "set_flat",
    "canonical_bytes",
    "model_hash",
    "n_params",
    "tensor_sizes",
]

BUILTIN_ARCHS = ("logreg", "mlp", "cnn")
_DEFAULT_HIDDEN = {"logreg": (), "mlp": (64,), "cnn": (16, 32)}
_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_SPEC_FORMAT = 1  # bump when the meaning of a spec (init scheme, layer layout) changes


class ModelError(FedchainError):
    """A parameter vector does not fit the model, is not finite, or training diverged."""


@dataclass(frozen=True)
class ModelSpec:
    """Architecture, shapes and initialisation seed of the federation's model.

    ``hidden=None`` takes the architecture's default widths (resolved at construction,
    so two specs that build the same model compare and hash equal).
    """

    arch: str
    input_shape: tuple[int, ...]
    n_classes: int
    hidden: tuple[int, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.arch not in BUILTIN_ARCHS and not _FACTORY_RE.match(self.arch):
            raise ConfigError(f"model.arch: {self.arch!r} is neither one of {BUILTIN_ARCHS} "
                              f"nor 'package.module:function'")
        shape = tuple(self.input_shape)
        if not shape or any(type(d) is not int or d < 1 for d in shape):
            raise ConfigError(f"model.input_shape must be positive ints, got {self.input_shape!r}")
        object.__setattr__(self, "input_shape", shape)
        if type(self.n_classes) is not int or self.n_classes < 2:
            raise ConfigError(f"model.n_classes must be an int >= 2, got {self.n_classes!r}")
        if type(self.seed) is not int or not 0 <= self.seed < 2**63:
            raise ConfigError(f"model.seed must be an int in [0, 2**63), got {self.seed!r}")
        hidden = _DEFAULT_HIDDEN.get(self.arch, ()) if self.hidden is None else tuple(self.hidden)
        if any(type(h) is not int or h < 1 for h in hidden):
            raise ConfigError(f"model.hidden must be positive ints, got {self.hidden!r}")
        if self.arch == "logreg" and hidden:
            raise ConfigError(f"model.hidden must be empty for logreg, got {hidden}")
        if self.arch == "cnn":
            if len(shape) not in (2, 3):
                raise ConfigError(f"model 'cnn' needs input_shape (C, H, W) or (H, W), got {shape}")
            if not hidden:
                raise ConfigError("model 'cnn' needs at least one conv layer in hidden")
            if min(shape[-2:]) < 2 ** len(hidden):
                raise ConfigError(f"model 'cnn': input {shape[-2:]} is too small for "
                                  f"{len(hidden)} 2x2 poolings (hidden={hidden})")
        object.__setattr__(self, "hidden", hidden)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """Build from a TOML table; unknown keys are a ConfigError naming them."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"model: unknown option(s) {unknown}")
        d = dict(d)
        for key in ("input_shape", "hidden"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "input_shape": list(self.input_shape),
                "n_classes": self.n_classes, "hidden": list(self.hidden or ()), "seed": self.seed}


# ------------------------------------------------------------------------------ builders


def _uninit(cls: type[torch.nn.Module], *args: Any, **kwargs: Any) -> torch.nn.Module:
    """A layer built without its default init, which would draw from the global RNG
    (``_init_builtin`` fills it from a private generator instead)."""
    from torch.nn.utils import skip_init

    return skip_init(cls, *args, **kwargs)


def _linear_stack(spec: ModelSpec) -> torch.nn.Module:
    import torch.nn as nn

    width = math.prod(spec.input_shape)
    layers: list[nn.Module] = [nn.Flatten()]
    for h in spec.hidden or ():
        layers += [_uninit(nn.Linear, width, h), nn.ReLU()]
        width = h
    layers.append(_uninit(nn.Linear, width, spec.n_classes))
    return nn.Sequential(*layers)


def _cnn(spec: ModelSpec) -> torch.nn.Module:
    import torch.nn as nn

    c, h, w = spec.input_shape if len(spec.input_shape) == 3 else (1, *spec.input_shape)
    # Flatten + Unflatten accept (n, C, H, W), (n, H, W) and flat (n, C*H*W) input alike.
    layers: list[nn.Module] = [nn.Flatten(), nn.Unflatten(1, (c, h, w))]
    for ch in spec.hidden or ():
        layers += [_uninit(nn.Conv2d, c, ch, kernel_size=3, padding=1), nn.ReLU(),
                   nn.MaxPool2d(2)]
        c, h, w = ch, h // 2, w // 2
    layers += [nn.Flatten(), _uninit(nn.Linear, c * h * w, spec.n_classes)]
    return nn.Sequential(*layers)


def _init_builtin(model: torch.nn.Module, seed: int) -> None:
    """Fan-in uniform init U(-1/sqrt(fan_in), 1/sqrt(fan_in)) of every weight and bias
    (the bound PyTorch's Linear/Conv defaults give), from a private generator."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                module.weight.uniform_(-bound, bound, generator=gen)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=gen)


def _user_factory(spec: ModelSpec) -> torch.nn.Module:
    import torch

    mod_name, fn_name = spec.arch.split(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(f"model.arch {spec.arch!r}: cannot import {mod_name!r} ({exc})") from exc
    factory = getattr(module, fn_name, None)
    if not callable(factory):
        raise ConfigError(f"model.arch {spec.arch!r}: {mod_name!r} has no function {fn_name!r}")
    offered = {"input_shape": spec.input_shape, "n_classes": spec.n_classes,
               "hidden": spec.hidden}
    params = inspect.signature(factory).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if takes_kwargs or k in params}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = factory(**kwargs)
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"model.arch {spec.arch!r} returned {type(model).__name__}, "
                          f"not a torch.nn.Module")
    return model


def build_model(spec: ModelSpec) -> torch.nn.Module:
    """A float32 CPU model with the deterministic initial parameters of ``spec``."""
    if spec.arch in ("logreg", "mlp"):
        model = _linear_stack(spec)
        _init_builtin(model, spec.seed)
    elif spec.arch == "cnn":
        model = _cnn(spec)
        _init_builtin(model, spec.seed)
    else:
        model = _user_factory(spec)
    model = model.float()
    buffers = [name for name, _ in model.named_buffers()]
    if buffers:
        raise ConfigError(f"model {spec.arch!r} has buffers {buffers[:3]}, which are not "
                          f"federated; use a normalisation without running statistics")
    if not any(True for _ in model.parameters()):
        raise ConfigError(f"model {spec.arch!r} has no parameters")
    return model


# ------------------------------------------------------------------------ flat vectors


def get_flat(model: torch.nn.Module) -> np.ndarray:
    """All parameters as one new float32 vector, in ``named_parameters()`` order."""
    import torch

    with torch.no_grad():
        flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
    return flat.numpy().copy()


def set_flat(model: torch.nn.Module, vec: np.ndarray) -> None:
    """Copy a flat float32 vector (``get_flat``'s layout) into the model's parameters."""
    import torch

    v = np.asarray(vec)
    total = sum(p.numel() for p in model.parameters())
    if v.dtype != np.float32 or v.shape != (total,):
        raise ModelError(f"parameter vector must be float32 of shape ({total},), "
                         f"got {v.dtype} {v.shape}")
    src = torch.from_numpy(np.ascontiguousarray(v))
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            n = p.numel()
            p.copy_(src[offset:offset + n].view_as(p))
            offset += n


def canonical_bytes(vec: np.ndarray) -> bytes:
    """The bytes a model hash covers: little-endian float32, -0.0 as +0.0, finite only."""
    v = np.asarray(vec)
    if v.dtype != np.float32 or v.ndim != 1:
        raise ModelError(f"canonical_bytes needs a 1-D float32 vector, got {v.dtype} {v.shape}")
    finite = np.isfinite(v)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ModelError(f"parameter vector has a non-finite value {v[bad]} at index {bad}")
    # x + 0.0 maps -0.0 to +0.0 (IEEE 754 round-to-nearest) and leaves everything else.
    return (v + np.float32(0.0)).astype("<f4", copy=False).tobytes()


def model_hash(vec: np.ndarray) -> bytes:
    """sha256 of :func:`canonical_bytes` (32 bytes, the bytes32 the chain stores)."""
    return hashlib.sha256(canonical_bytes(vec)).digest()


@lru_cache(maxsize=64)
def _shapes(spec: ModelSpec) -> tuple[tuple[str, tuple[int, ...]], ...]:
    model = build_model(spec)
    return tuple((name, tuple(p.shape)) for name, p in model.named_parameters())


def tensor_sizes(spec: ModelSpec) -> tuple[int, ...]:
    """Element count of each parameter tensor, in flat-vector order (for per-tensor codecs)."""
    return tuple(math.prod(shape) for _, shape in _shapes(spec))


def n_params(spec: ModelSpec) -> int:
    """Length of the flat parameter vector of ``spec``."""
    return sum(tensor_sizes(spec))


def spec_hash(spec: ModelSpec) -> bytes:
    """sha256 of the canonical JSON (sorted keys, no spaces) of the spec, its parameter
    names and shapes, and the spec format version: the model identity on chain."""
    doc = {**spec.to_dict(), "format": _SPEC_FORMAT,
           "params": [[name, list(shape)] for name, shape in _shapes(spec)]}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).digest()
