"""Synthetic AHBA-like expression with a known, low-dimensional, nonlinear latent structure.

Samples sit at the 3,702 real AHBA sample sites (corrected MNI coordinates shipped with
abagen), split over the six donors with their real counts, and carry real gene symbols.

The generative model (all parameters drawn from ``random_state``)
---------------------------------------------------------
At any MNI point ``p = (x, y, z)`` mm a latent vector ``u(p)`` of 10 factors is defined:

* three smooth gradients: anterior-posterior ``y/100``, dorsal-ventral ``z/70`` and
  medial-lateral ``|x|/70`` (symmetric in the hemispheres);
* three smooth random fields ``f_m(p) = sqrt(2/R) sum_r cos(w_r . p + b_r)`` with
  ``w_r ~ N(0, I / l^2)`` (random Fourier features of a Gaussian-kernel field of length scale
  ``l = length_scale_mm``), unit variance;
* a one-hot tissue class (cortex, white matter, deep grey, cerebellum): grey matter from
  nilearn's 1 mm MNI152 grey-matter mask, deep grey and cerebellum by box
  rules in MNI space (:func:`tissue_class`).

Genes are a nonlinear function of ``u``: a hidden layer ``h = tanh(A u + a)`` (width
``hidden``), then gene ``g``'s logit ``t_g(p) = s (w_g . h + c_g)``; the population truth is
``sigmoid(t_g(p))`` (:meth:`SyntheticModel.expression`). A sample of donor ``d`` observes
``sigmoid(t_g(p) + delta_d + delta_dg + eps)`` with a donor shift ``delta_d``, a donor x gene
offset ``delta_dg`` and noise ``eps ~ N(0, noise_sd^2)``, all in logit space, so values stay
in (0, 1) with a median near 0.5 and a spread near 0.12, like srs-normalised AHBA data.

Every gene's parameters come from a stream keyed by the gene's index in the fixed
15,633-symbol list, and noise is drawn per donor for the whole list, so the same gene has the
same values whatever subset is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import xarray as xr

from .._deprecation import renamed_kwargs
from .._validation import Bound, check_params
from ..exceptions import InputError
from .abagen_data import corrected_coordinates, study_gene_symbols
from .table import make_sample_table, resolve_genes

__all__ = ["SyntheticModel", "load_synthetic", "tissue_class", "TISSUES", "LATENT_FACTORS"]

TISSUES = ("cortex", "white_matter", "deep_grey", "cerebellum")
LATENT_FACTORS = ("anterior_posterior", "dorsal_ventral", "medial_lateral", "field_1", "field_2", "field_3") + tuple(
    f"tissue_{t}" for t in TISSUES
)
_N_FOURIER = 64


@lru_cache(maxsize=1)
def _tissue_masks():
    from nilearn.datasets import load_mni152_gm_mask

    gm = load_mni152_gm_mask(resolution=1)  # nilearn's native resolution: no resampling
    return np.asarray(gm.dataobj) > 0, gm.affine


def tissue_class(xyz) -> np.ndarray:
    """Tissue class index into :data:`TISSUES` at MNI points (n, 3).

    Cerebellum: y < -44 and z < -18. Deep grey: grey matter with |x| < 28, -35 < y < 22,
    -20 < z < 20. Cortex: other grey matter. White matter: everything else (including points
    outside nilearn's masks, so the model is defined everywhere).
    """
    from ..grid import xyz_to_ijk

    xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
    gm, affine = _tissue_masks()
    ijk = xyz_to_ijk(xyz, affine)
    inside = np.all((ijk >= 0) & (ijk < np.array(gm.shape)), axis=1)
    grey = np.zeros(len(xyz), dtype=bool)
    grey[inside] = gm[tuple(ijk[inside].T)]
    x, y, z = xyz.T
    cls = np.full(len(xyz), TISSUES.index("white_matter"), dtype=np.int8)
    cls[grey] = TISSUES.index("cortex")
    deep = grey & (np.abs(x) < 28) & (y > -35) & (y < 22) & (z > -20) & (z < 20)
    cls[deep] = TISSUES.index("deep_grey")
    cls[(y < -44) & (z < -18)] = TISSUES.index("cerebellum")
    return cls


def _gene_stream(seed: int, gene_index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 7919, int(gene_index)])


@dataclass(frozen=True)
class SyntheticModel:
    """The seeded generative model; see the module docstring.

    Parameters
    ----------
    random_state : int
        Draws every parameter and the noise.
    length_scale_mm : float
        Length scale of the three random fields.
    hidden : int
        Width of the nonlinear layer between factors and genes.
    signal_scale : float
        Spread of the genes' logits across the brain.
    noise_sd, donor_sd, donor_gene_sd : float
        Sample noise, donor shift and donor x gene offsets, in logit units.
    """

    random_state: int = 0
    length_scale_mm: float = 25.0
    hidden: int = 12
    signal_scale: float = 0.3
    noise_sd: float = 0.25
    donor_sd: float = 0.05
    donor_gene_sd: float = 0.08

    def __post_init__(self):
        # numpy took a negative noise_sd as its magnitude, True as 1, and stopped on hidden=2.5
        check_params(
            self,
            {
                "length_scale_mm": Bound(0, low_open=True),
                "hidden": Bound(1, integer=True),
                **dict.fromkeys(("signal_scale", "noise_sd", "donor_sd", "donor_gene_sd"), Bound(0)),
            },
        )
        object.__setattr__(self, "hidden", int(self.hidden))  # 4.0 units are 4 (a frozen dataclass)

    @property
    def genes(self) -> tuple[str, ...]:
        return study_gene_symbols()

    def _params(self):
        rng = np.random.default_rng([int(self.random_state), 1])
        omegas = rng.normal(0, 1 / self.length_scale_mm, size=(3, _N_FOURIER, 3))
        phases = rng.uniform(0, 2 * np.pi, size=(3, _N_FOURIER))
        n_factors = len(LATENT_FACTORS)
        a = rng.normal(0, 1.2 / np.sqrt(n_factors / 3), size=(self.hidden, n_factors))
        a_bias = rng.normal(0, 0.3, size=self.hidden)
        return omegas, phases, a, a_bias

    def latent(self, xyz) -> np.ndarray:
        """The 10 latent factors (:data:`LATENT_FACTORS`) at MNI points (n, 3)."""
        xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
        omegas, phases, _, _ = self._params()
        x, y, z = xyz.T
        fields = [np.sqrt(2 / _N_FOURIER) * np.cos(xyz @ omegas[m].T + phases[m]).sum(axis=1) for m in range(3)]
        onehot = np.eye(len(TISSUES))[tissue_class(xyz)]
        return np.column_stack([y / 100, z / 70, np.abs(x) / 70, *fields, onehot])

    def gene_weights(self, gene_indices) -> tuple[np.ndarray, np.ndarray]:
        """(hidden, n) output weights and (n,) biases of the genes at these list indices."""
        w = np.empty((self.hidden, len(gene_indices)))
        c = np.empty(len(gene_indices))
        for col, g in enumerate(gene_indices):
            rng = _gene_stream(self.random_state, g)
            w[:, col] = rng.normal(0, 1, self.hidden) / np.sqrt(self.hidden / 4)
            c[col] = rng.normal(0, 0.5)
        return w, c

    def hidden_units(self, latent) -> np.ndarray:
        _, _, a, a_bias = self._params()
        return np.tanh(latent @ a.T + a_bias)

    def logits(self, xyz, genes=None) -> np.ndarray:
        """Population logits t_g(p) (n, n_genes) at MNI points for ``genes`` (names or None=all)."""
        from threadpoolctl import threadpool_limits

        idx = self.gene_indices(genes)
        w, c = self.gene_weights(idx)
        # one BLAS thread: the sums then run in one order whatever the machine's thread count, so
        # a store built here is byte-identical to one built (or resumed) under other settings
        with threadpool_limits(limits=1, user_api="blas"):
            h = self.hidden_units(self.latent(xyz)).astype(np.float32)
            t = h @ (self.signal_scale * w).astype(np.float32)
        t += (self.signal_scale * c).astype(np.float32)
        return t

    def expression(self, xyz, genes=None) -> np.ndarray:
        """Noise-free population expression sigmoid(t_g(p)) at any MNI points, float32."""
        return _sigmoid(self.logits(xyz, genes))

    def gene_indices(self, genes=None) -> np.ndarray:
        all_genes = self.genes
        if genes is None:
            return np.arange(len(all_genes))
        position = {g: i for i, g in enumerate(all_genes)}
        return np.array([position[g] for g in genes], dtype=np.int64)

    def observe(self, xyz, donors, genes=None) -> np.ndarray:
        """Noisy observations (n, n_genes) of samples at ``xyz`` from ``donors``.

        A donor's shift, its per-gene offsets and its samples' noise come from a stream keyed
        by (random_state, donor) and drawn for the whole gene list, so a donor's values do not depend
        on which other donors or genes are asked for.
        """
        idx = self.gene_indices(genes)
        donors = np.asarray(donors).astype(str)
        t = self.logits(xyz, genes)
        n_all = len(self.genes)
        for donor in sorted(set(donors)):
            rows = np.flatnonzero(donors == donor)
            rng = np.random.default_rng([int(self.random_state), 2, int(donor)])
            shift = rng.normal(0, self.donor_sd)
            offsets = rng.normal(0, self.donor_gene_sd, n_all)[idx]
            # noise for every gene of the list, then the requested columns: the same gene gets
            # the same noise whichever subset is asked for
            noise = rng.standard_normal((len(rows), n_all), dtype=np.float32)[:, idx]
            noise *= self.noise_sd
            noise += (shift + offsets).astype(np.float32)
            t[rows] += noise
        return _sigmoid(t)


def _sigmoid(t):
    """In place for float arrays: 1 / (1 + exp(-t))."""
    t = np.asarray(t, dtype=np.float32)
    np.negative(t, out=t)
    np.exp(t, out=t)
    t += 1
    np.reciprocal(t, out=t)
    return t


@renamed_kwargs(seed="random_state")
def load_synthetic(genes=None, *, random_state: int = 0, donors=None, **model_options) -> xr.Dataset:
    """Synthetic sample x gene table at the real AHBA sample sites.

    Parameters
    ----------
    genes : None, int or list of str
        All 15,633 genes, the first ``n`` of an evenly spaced selection, or these symbols.
    random_state : int
        Seed of the generative model (parameters and noise).
    donors : list of str, optional
        Keep only these donors (default: all six).
    **model_options
        Other :class:`SyntheticModel` parameters.

    Returns
    -------
    xarray.Dataset
        ``expression (sample, gene)`` with sample coords x, y, z, donor, hemisphere,
        structure, and the true ``latent (sample, factor)``.
    """
    model = SyntheticModel(random_state=random_state, **model_options)
    gene_names = resolve_genes(genes, model.genes)
    sites = corrected_coordinates()
    if donors is not None:
        donors = [str(d) for d in donors]
        unknown = sorted(set(donors) - set(sites["donor"]))
        if unknown:
            raise InputError(f"unknown donor(s) {unknown}; AHBA donors are {sorted(set(sites['donor']))}")
        sites = sites[sites["donor"].isin(donors)]
    xyz = sites[["x", "y", "z"]].to_numpy()
    latent = model.latent(xyz)
    values = model.observe(xyz, sites["donor"].to_numpy(), gene_names)
    table = make_sample_table(
        values,
        gene_names,
        xyz,
        donor=sites["donor"].to_numpy(),
        structure=np.array(TISSUES)[tissue_class(xyz)],
        sample_id=sites["well_id"].to_numpy(),
        source="synthetic",
        options={k: getattr(model, k) for k in model.__dataclass_fields__},
    )
    table["latent"] = (("sample", "factor"), latent.astype(np.float32))
    table = table.assign_coords(factor=list(LATENT_FACTORS))
    return table
