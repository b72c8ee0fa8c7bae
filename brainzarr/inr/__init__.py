"""Gene-conditioned implicit neural representation (INR) of sparse expression samples.

* :class:`GeneINR` (:mod:`.model`): one coordinate network for all genes, per-gene embeddings
  (needs PyTorch: ``pip install 'brainzarr[inr]'``).
* baselines (:mod:`.baselines`): nearest, IDW (abagen's), kriging with one shared kernel.
* evaluation (:mod:`.evaluate`): held-out samples by spatial blocks or by donor; error against
  the true field on synthetic data.
* rendering (:mod:`.render`): a fitted model as a block source of :func:`brainzarr.build_store`.
"""

from .baselines import IDWInterpolator, KrigingInterpolator, NearestInterpolator

__all__ = ["GeneINR", "NearestInterpolator", "IDWInterpolator", "KrigingInterpolator"]


def __getattr__(name):
    if name == "GeneINR":  # imported on use: it needs torch, the baselines do not
        from .model import GeneINR

        return GeneINR
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
