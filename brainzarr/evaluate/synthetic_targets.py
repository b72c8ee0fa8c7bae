"""Synthetic target maps made from the synthetic source's truth, to evaluate like PET maps.

The synthetic source (:mod:`brainzarr.sources.synthetic`) defines, at every MNI point, the
latent factors ``u(p)`` (anterior-posterior, dorsal-ventral and medial-lateral gradients,
three smooth random fields, a one-hot tissue class) and the hidden units ``h(p) = tanh(A u + a)``
from which every gene is made. The targets below are functions of that truth, from easy to
impossible to predict from gene expression:

``receptor_gradient``
    ``sigmoid(3 u_ap - 2 u_dv)``: a smooth anterior-posterior / dorsal-ventral gradient, like
    many receptor densities. The genes carry both gradients.
``myelin_like``
    ``white_matter + 0.5 deep_grey + 0.3 u_dv + 0.2 field_1``: high in white matter, like a
    T1w/T2w ratio.
``expression_program``
    ``h(p) . w`` with fixed weights ``w``: a linear read-out of the very layer the genes are
    made from, the most predictable from expression.
``field_interaction``
    ``field_1 x field_2 + 0.5 field_3``: a nonlinear mix of the random fields.
``spatial_control``
    A smooth random field (length scale 20 mm) drawn from its own seed, independent of the
    genes. Expression says nothing about it beyond *where* a voxel is; but the embeddings do
    encode location (the genes follow the spatial gradients), so a model can still predict it
    by interpolating from training voxels nearby. Its test R² is what spatial interpolation
    alone earns: high under the random split (every test voxel has training neighbours, often
    with the very same embedding), lower under the blocked split, and lower still with blocks
    larger than its length scale (``brainzarr build --block-mm``). Read the other targets'
    scores against it.

Maps are written as NIfTI files at ``resolution`` mm on nilearn's MNI152 brain mask, scaled to
0-100 (as PET maps often are), 0 outside the brain, so the evaluation treats them exactly as it
treats real maps (resampling, background exclusion, min-max scaling).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .._deprecation import renamed_kwargs
from .._location import user_path
from ..exceptions import InputError
from ..grid import mni152_grid
from ..sources.synthetic import LATENT_FACTORS, SyntheticModel

__all__ = [
    "SYNTHETIC_TARGETS",
    "DESCRIPTIONS",
    "synthetic_target_values",
    "write_synthetic_targets",
    "model_from_store",
]

SYNTHETIC_TARGETS = ("receptor_gradient", "myelin_like", "expression_program", "field_interaction", "spatial_control")
#: one line per target, for reports (see the module docstring)
DESCRIPTIONS = {
    "receptor_gradient": "synthetic: anterior-posterior / dorsal-ventral gradient (carried by the genes)",
    "myelin_like": "synthetic: high in white matter, like T1w/T2w",
    "expression_program": "synthetic: a read-out of the layer the genes are made from (most predictable)",
    "field_interaction": "synthetic: nonlinear mix of the model's random fields",
    "spatial_control": "synthetic control, independent of the genes: R² here is spatial interpolation alone",
}


def _sigmoid(t):
    return 1.0 / (1.0 + np.exp(-t))


def _control_field(xyz, random_state: int, length_scale_mm: float = 20.0, n_features: int = 64) -> np.ndarray:
    rng = np.random.default_rng([int(random_state), 4242])
    omega = rng.normal(0, 1 / length_scale_mm, size=(n_features, 3))
    phase = rng.uniform(0, 2 * np.pi, size=n_features)
    return np.sqrt(2 / n_features) * np.cos(xyz @ omega.T + phase).sum(axis=1)


def synthetic_target_values(model: SyntheticModel, xyz, names=SYNTHETIC_TARGETS) -> dict:
    """The targets (see the module docstring) at MNI points ``xyz`` (n, 3): name -> (n,) array."""
    xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
    u = model.latent(xyz)
    f = {name: u[:, i] for i, name in enumerate(LATENT_FACTORS)}
    unknown = sorted(set(names) - set(SYNTHETIC_TARGETS))
    if unknown:
        raise InputError(
            f"unknown synthetic target(s) {', '.join(unknown)}; choose from {', '.join(SYNTHETIC_TARGETS)}"
        )
    out = {}
    for name in names:
        if name == "receptor_gradient":
            out[name] = _sigmoid(3 * f["anterior_posterior"] - 2 * f["dorsal_ventral"])
        elif name == "myelin_like":
            out[name] = (
                f["tissue_white_matter"] + 0.5 * f["tissue_deep_grey"] + 0.3 * f["dorsal_ventral"] + 0.2 * f["field_1"]
            )
        elif name == "expression_program":
            w = np.random.default_rng([int(model.random_state), 4241]).normal(0, 1, model.hidden)
            out[name] = model.hidden_units(u) @ w / np.sqrt(model.hidden)
        elif name == "field_interaction":
            out[name] = f["field_1"] * f["field_2"] + 0.5 * f["field_3"]
        elif name == "spatial_control":
            out[name] = _control_field(xyz, model.random_state)
    return out


def model_from_store(store) -> SyntheticModel:
    """The :class:`SyntheticModel` a synthetic store was built from (its provenance)."""
    from ..store import check_schema

    source = check_schema(store).get("provenance", {}).get("source", {})
    if source.get("name") != "synthetic":
        raise InputError(
            f"{store} was not built from the synthetic source (source: {source.get('name')}); "
            "synthetic targets need the synthetic truth"
        )
    fields = SyntheticModel.__dataclass_fields__
    return SyntheticModel(**{k: v for k, v in source.get("options", {}).items() if k in fields})


@renamed_kwargs(seed="random_state")
def write_synthetic_targets(
    out_dir, *, store=None, random_state: int = 0, resolution: int = 2, names=SYNTHETIC_TARGETS
) -> list[Path]:
    """Write the synthetic targets as ``<out_dir>/<name>.nii.gz`` and return the paths.

    Parameters
    ----------
    out_dir : str or Path
        Created if needed.
    store : str or Path, optional
        A synthetic store: the targets come from the model it was built from. Otherwise from
        ``SyntheticModel(random_state=random_state)``.
    random_state : int
        Seed of the synthetic model when no store is given.
    resolution : int
        Grid of the files in mm (nilearn's MNI152 brain mask): 2 mm by default, finer than the
        store, like real PET maps.
    names : sequence of str
        Which targets (default: all of ``SYNTHETIC_TARGETS``).
    """
    from ..nifti import save_nifti, to_nifti

    model = model_from_store(store) if store is not None else SyntheticModel(random_state=random_state)
    grid = mni152_grid(resolution)
    out_dir = user_path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, values in synthetic_target_values(model, grid.xyz, names).items():
        lo, hi = values.min(), values.max()
        scaled = 100 * (values - lo) / (hi - lo)
        # 0 is the background: keep brain voxels strictly positive
        scaled = np.maximum(scaled, 1e-3).astype(np.float32)
        da = xr.DataArray(
            scaled,
            dims=("voxel",),
            name=name,
            attrs={"units": "a.u. (0-100)", "synthetic_seed": int(model.random_state)},
        )
        paths.append(save_nifti(to_nifti(da, grid), out_dir / f"{name}.nii.gz"))
    return paths
