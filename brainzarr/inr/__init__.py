"""Gene-conditioned implicit neural representation (INR) of sparse expression samples.

* :class:`GeneINR` (:mod:`.model`): one coordinate network for all genes, per-gene embeddings.
* baselines (:mod:`.baselines`): nearest, IDW (abagen's), kriging with one shared kernel.
* evaluation (:mod:`.evaluate`): held-out samples by spatial blocks or by donor; error against
  the true field on synthetic data.
* rendering (:mod:`.render`): a fitted model as a block source of :func:`brainzarr.build_store`.
"""

from .baselines import IDWInterpolator, KrigingInterpolator, NearestInterpolator
from .model import GeneINR

__all__ = ["GeneINR", "NearestInterpolator", "IDWInterpolator", "KrigingInterpolator"]
