"""brainzarr leaves a researcher's session as it found it: torch's random generator and
matplotlib's backend belong to the caller."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _fits():
    from brainzarr.inr import GeneINR
    from brainzarr.models import TSNE, AutoEncoder
    from brainzarr.sources.synthetic import load_synthetic

    X = np.random.default_rng(0).random((200, 12)).astype(np.float32)
    table = load_synthetic(6, random_state=1, donors=["12876"])
    return {
        "GeneINR": lambda: GeneINR(max_epochs=1, n_ensemble=2, width=16, n_features=4, device="cpu").fit(table),
        "AutoEncoder": lambda: AutoEncoder(n_components=2, hidden=(8,), max_epochs=1, device="cpu").fit(X),
        "TSNE's MLP decoder": lambda: TSNE(
            n_components=2, n_iter=20, early_exaggeration_iter=10, decoder="mlp", device="cpu"
        ).fit(X),
    }


@pytest.mark.parametrize("name", ["GeneINR", "AutoEncoder", "TSNE's MLP decoder"])
def test_a_fit_does_not_reseed_torchs_global_generator(name):
    """GeneINR and the MLP decoder called torch.manual_seed: the caller's next torch.rand after a
    fit was the same whatever the caller had seeded."""
    fit = _fits()[name]
    before = torch.get_rng_state()
    try:
        torch.manual_seed(12345)
        expected = torch.rand(3)
        torch.manual_seed(12345)
        fit()
        assert torch.equal(torch.rand(3), expected)
    finally:
        torch.set_rng_state(before)


def test_a_resumed_auto_encoder_fit_leaves_torchs_global_generator_alone(tmp_path):
    """A resume restored torch's global random state saved in the checkpoint: after it, the
    caller's torch.rand drew what the interrupted fit's caller had been about to draw."""
    from brainzarr.models import AutoEncoder

    X = np.random.default_rng(0).random((200, 12)).astype(np.float32)
    params = {"n_components": 2, "hidden": (8,), "max_epochs": 3, "device": "cpu", "checkpoint_dir": tmp_path}

    def interrupt(model, info):
        if info["epoch"] == 1:
            raise KeyboardInterrupt

    before = torch.get_rng_state()
    try:
        torch.manual_seed(1)  # the state the interrupted fit's checkpoint held
        with pytest.raises(KeyboardInterrupt):
            AutoEncoder(**params).fit(X, callback=interrupt)
        torch.manual_seed(12345)
        expected = torch.rand(3)
        torch.manual_seed(12345)
        resumed = AutoEncoder(**params).fit(X)
        assert len(resumed.history_["train_loss"]) == 3  # it resumed, from epoch 2
        assert torch.equal(torch.rand(3), expected)
    finally:
        torch.set_rng_state(before)


def test_importing_the_evaluation_and_drawing_keeps_the_callers_matplotlib_backend(tmp_path):
    """``import brainzarr.evaluate`` switched a notebook's backend to Agg (inline figures stopped
    showing); the INR's held-out figure did it when drawn."""
    code = f"""
import matplotlib, pandas as pd  # the frame's columns are those cross_validate writes
import brainzarr.evaluate, brainzarr.evaluate.figures
from brainzarr.inr.figures import plot_heldout
frame = pd.DataFrame({{"method": ["inr", "idw"] * 2, "gene": ["A", "A", "B", "B"], "fold": 0, "cv": "blocks",
                       "rmse": [0.1, 0.2, 0.15, 0.25], "pearson_r": [0.9, 0.8, 0.85, 0.7], "n_test": 10}})
plot_heldout(frame, {str(tmp_path / "heldout.png")!r})
print(matplotlib.get_backend())
"""
    env = {**os.environ, "MPLBACKEND": "svg"}  # a backend that is not Agg and needs no display
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "svg"
    assert (tmp_path / "heldout.png").stat().st_size > 1000
