"""Exporting a finalised model: safetensors with its hash, checked against the chain.

The file holds the model's tensors (the ``state_dict`` of ``build_model(spec)`` with the
finalised parameters) and, in its metadata, the model spec and the sha256 model hash over
the canonical flat vector: the hash the chain finalised. Anyone can recompute it with
:func:`load_model` and compare with ``Federation.finalizedModel(round)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from peer.errors import FedchainError
from peer.models import ModelSpec, build_model, get_flat, model_hash, set_flat

__all__ = ["save_model", "load_model", "ExportError"]


class ExportError(FedchainError):
    """A model file is missing, unreadable, or its hash does not match."""


def save_model(path: Path, spec: ModelSpec, vec: np.ndarray, *, round: int | None = None) -> bytes:
    """Write ``vec`` as the tensors of ``spec``'s model; returns the model hash."""
    from safetensors.torch import save_file

    model = build_model(spec)
    set_flat(model, vec)
    digest = model_hash(vec)
    meta = {"fedchain_model_hash": digest.hex(), "fedchain_spec": json.dumps(spec.to_dict(), sort_keys=True)}
    if round is not None:
        meta["fedchain_round"] = str(round)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    return digest


def load_model(path: Path) -> tuple[ModelSpec, np.ndarray, bytes]:
    """Read a file written by :func:`save_model`; the hash is recomputed, not trusted."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise ExportError(f"model file {path} does not exist")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if "fedchain_spec" not in meta:
            raise ExportError(f"{path} is not a fedchain model export (no fedchain_spec metadata)")
        spec = ModelSpec.from_dict(json.loads(meta["fedchain_spec"]))
        model = build_model(spec)
        state = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict(state)
    vec = get_flat(model)
    digest = model_hash(vec)
    if meta.get("fedchain_model_hash") != digest.hex():
        raise ExportError(
            f"{path}: recorded hash {meta.get('fedchain_model_hash')} does not match the tensors ({digest.hex()})"
        )
    return spec, vec, digest
