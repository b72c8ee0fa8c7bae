"""PCA, NMF and kernel PCA: streamed (dask, several row blocks) against in-memory results and
against scikit-learn, on a synthetic 8 mm store with 300 genes."""

import dask.array as da
import numpy as np
import pytest
from sklearn.decomposition import PCA as SKPCA
from sklearn.decomposition import KernelPCA as SKKernelPCA

from brainzarr.exceptions import InputError
from brainzarr.models import get_model_class
from brainzarr.models.kpca import KernelPCA
from brainzarr.models.nmf import NMF
from brainzarr.models.pca import PCA
from brainzarr.options import set_options
from brainzarr.store import open_store
from brainzarr.streaming import block_reduce, cache_if_small, stream_blocks


@pytest.fixture(scope="module")
def data(chunked_store):  # noqa: F811
    ds = open_store(chunked_store)
    train = ds["split"].values == "train"
    X = ds["expression"].data
    assert X.numblocks[0] > 4  # the streamed paths really see several row blocks
    Xn = X.compute()
    return {"dask": X[train], "train": Xn[train], "test": Xn[~train]}


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, dtype=np.float64) - b) ** 2)))


def test_registry():
    assert get_model_class("pca") is PCA
    assert get_model_class("nmf") is NMF
    assert get_model_class("kpca") is KernelPCA


# ------------------------------------------------------------------------- streaming helpers
def test_block_reduce_sums_every_row_once(data):
    X = data["dask"]
    n, s = block_reduce(X, lambda B: (len(B), B.sum(axis=0, dtype=np.float64)))
    assert n == X.shape[0]
    np.testing.assert_allclose(s, data["train"].sum(axis=0, dtype=np.float64), rtol=1e-10)


@pytest.mark.parametrize("block_rows", [None, 7, 100_000])
def test_block_reduce_gives_each_block_its_own_argument_and_combines_as_asked(data, block_rows):
    """``per_block``: block i's item goes with block i (here its own rows' indices, so each
    block checks it got the right rows); ``combine``: any merge, here an element-wise maximum."""
    from brainzarr.streaming import block_spans

    X = data["dask"]
    spans = block_spans(X, block_rows)
    assert spans[0][0] == 0 and spans[-1][1] == X.shape[0] and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    values = data["train"]
    per_block = [np.arange(a, b) for a, b in spans]

    def fn(block, rows):
        np.testing.assert_array_equal(block, values[rows])
        return (block.max(axis=0), len(rows))

    high, n = block_reduce(
        X, fn, block_rows=block_rows, per_block=per_block, combine=lambda a, b: (np.maximum(a[0], b[0]), a[1] + b[1])
    )
    assert n == X.shape[0]
    np.testing.assert_array_equal(high, values.max(axis=0))
    with pytest.raises(ValueError, match=f"per_block has {len(spans) + 1} items for {len(spans)} row blocks"):
        block_reduce(X, fn, block_rows=block_rows, per_block=[*per_block, None])


def test_shuffled_blocks_cover_the_rows_once_in_another_order(data):
    X = data["dask"]
    ordered = np.concatenate(list(stream_blocks(X)))
    shuffled = list(stream_blocks(X, rng=np.random.default_rng(0)))
    assert [len(b) for b in shuffled] != [len(b) for b in stream_blocks(X)] or not np.array_equal(
        np.concatenate(shuffled), ordered
    )
    np.testing.assert_array_equal(np.sort(np.concatenate(shuffled), axis=0), np.sort(ordered, axis=0))


def test_small_data_is_held_in_memory_with_the_same_blocks(data):
    X = data["dask"]
    held, block_rows = cache_if_small(X, max_bytes=X.nbytes)
    assert isinstance(held, np.ndarray) and block_rows == max(X.chunks[0])
    np.testing.assert_array_equal(held, data["train"])
    assert cache_if_small(X, max_bytes=X.nbytes, block_rows=100)[1] == 100
    assert cache_if_small(X, max_bytes=X.nbytes - 1) == (X, None)
    assert cache_if_small(X, max_bytes=None)[0] is X
    cached = PCA(8).fit(X)  # default budget: held in memory here
    streamed = PCA(8, cache_bytes=None).fit(X)
    np.testing.assert_allclose(cached.components_, streamed.components_, atol=1e-5)


# ------------------------------------------------------------------------- PCA
@pytest.mark.parametrize("solver", ["randomized", "covariance"])
def test_pca_streamed_equals_in_memory(data, solver):
    streamed = PCA(8, solver=solver, cache_bytes=None).fit(data["dask"])
    memory = PCA(8, solver=solver).fit(data["train"])
    np.testing.assert_allclose(streamed.components_, memory.components_, atol=2e-4)
    np.testing.assert_allclose(streamed.explained_variance_, memory.explained_variance_, rtol=1e-5)
    np.testing.assert_allclose(streamed.transform(data["test"]), memory.transform(data["test"]), atol=1e-3)
    lazy = streamed.transform(da.from_array(data["test"], chunks=(100, 64)))
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), streamed.transform(data["test"]), atol=1e-5)


def test_pca_test_rmse_within_one_percent_of_sklearn_at_every_dim(data):
    for k in (2, 4, 8, 16, 32, 64, 128):
        ref = SKPCA(k, svd_solver="full").fit(data["train"])
        ref_rmse = rmse(ref.inverse_transform(ref.transform(data["test"])), data["test"])
        ours = PCA(k, cache_bytes=None).fit(data["dask"])  # streamed from the store
        our_rmse = rmse(ours.inverse_transform(ours.transform(data["test"])), data["test"])
        assert our_rmse <= 1.01 * ref_rmse, (k, our_rmse, ref_rmse)


def test_pca_covariance_solver_is_exact(data):
    ref = SKPCA(16, svd_solver="full").fit(data["train"].astype(np.float64))  # float64 reference
    ours = PCA(16, solver="covariance").fit(data["dask"])
    np.testing.assert_allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(ours.singular_values_, ref.singular_values_, rtol=1e-6)
    np.testing.assert_allclose(ours.mean_, ref.mean_, atol=1e-6)
    # same axes up to sign
    np.testing.assert_allclose(np.abs(np.sum(ours.components_ * ref.components_, axis=1)), 1, atol=1e-4)


def test_pca_likelihood_is_scikit_learns(data, monkeypatch):
    """score_samples and score are scikit-learn's probabilistic PCA log-likelihood (float64
    reference), from a fit with few components to one that keeps every direction but one (noise
    tiny: the residual must not be had by cancellation) or all of them; streamed and lazy alike."""
    X64 = data["train"][:, :40].astype(np.float64)  # 40 genes: every n_components up to all of them
    test = data["test"][:200, :40]
    for k in (1, 8, 39, 40):
        ref = SKPCA(k, svd_solver="full").fit(X64)
        ours = PCA(k, solver="covariance").fit(data["train"][:, :40])
        assert ours.noise_variance_ == pytest.approx(ref.noise_variance_, rel=1e-5, abs=1e-12)
        expected = ref.score_samples(test.astype(np.float64))
        np.testing.assert_allclose(ours.score_samples(test), expected, rtol=1e-5, err_msg=f"k={k}")
        assert ours.score(test) == pytest.approx(ref.score(test.astype(np.float64)), rel=1e-5)
    streamed = PCA(8, cache_bytes=None).fit(data["dask"])
    lazy = streamed.score_samples(data["dask"])
    assert isinstance(lazy, da.Array) and lazy.shape == (data["dask"].shape[0],)
    np.testing.assert_allclose(lazy.compute(), streamed.score_samples(data["train"]), rtol=1e-9)
    assert streamed.score(data["dask"]) == pytest.approx(float(np.mean(lazy.compute())), rel=1e-9)
    import brainzarr.models.pca as pca_module

    whole = streamed.score_samples(data["train"])
    monkeypatch.setattr(pca_module, "_SCORE_VALUES", 7 * data["train"].shape[1])  # 7 rows at a time
    np.testing.assert_allclose(streamed.score_samples(data["train"]), whole, rtol=1e-12)  # BLAS rounding
    with pytest.raises(ValueError, match="no variance outside its 20 components"):
        PCA(20, solver="covariance").fit(data["train"][:20]).score(data["test"])


def test_grid_search_without_scoring_finds_the_rank_as_scikit_learns_pca():
    """GridSearchCV(PCA(), {"n_components": ...}) with no ``scoring`` uses ``score``: on rank 4
    plus noise it picks 4, as it does with scikit-learn's PCA, with the same CV scores."""
    from sklearn.model_selection import GridSearchCV, KFold

    rng = np.random.default_rng(0)
    X = (rng.normal(size=(600, 4)) @ rng.normal(size=(4, 40)) + 0.3 * rng.normal(size=(600, 40))).astype(np.float32)
    grid = {"n_components": [1, 2, 4, 8, 20]}
    ours = GridSearchCV(PCA(solver="covariance"), grid, cv=KFold(5)).fit(X)
    ref = GridSearchCV(SKPCA(svd_solver="full"), grid, cv=KFold(5)).fit(X.astype(np.float64))
    assert ours.best_params_ == ref.best_params_ == {"n_components": 4}
    np.testing.assert_allclose(ours.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"], rtol=1e-5)


def test_pca_randomized_needs_its_power_iterations_on_a_slow_spectrum():
    rng = np.random.default_rng(0)
    n, d = 1500, 400
    spectrum = 1 / np.sqrt(np.arange(1, d + 1))  # slowly decaying, like expression data
    U, _ = np.linalg.qr(rng.standard_normal((n, d)))
    V, _ = np.linalg.qr(rng.standard_normal((d, d)))
    X = ((U * spectrum) @ V.T).astype(np.float32) + 0.5
    exact = PCA(20, solver="covariance").fit(X).explained_variance_.sum()
    fast = PCA(20, n_power_iter=1).fit(X).explained_variance_.sum()
    good = PCA(20, n_power_iter=6).fit(X).explained_variance_.sum()
    assert abs(good - exact) / exact < abs(fast - exact) / exact
    assert abs(good - exact) / exact < 5e-3


def test_pca_is_seeded(data):
    a = PCA(16, n_power_iter=1, random_state=1).fit(data["train"]).components_
    b = PCA(16, n_power_iter=1, random_state=1).fit(data["train"]).components_
    c = PCA(16, n_power_iter=1, random_state=2).fit(data["train"]).components_
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_pca_rejects_too_many_components(data):
    with pytest.raises(ValueError, match="n_components"):
        PCA(400).fit(data["train"])
    with pytest.raises(ValueError, match="solver"):
        PCA(2, solver="svd").fit(data["train"])


def test_a_fraction_of_the_variance_is_answered_with_how_to_choose_k(data):
    """scikit-learn's PCA(0.9) keeps the components that explain 90 %; a streamed fit has no
    whole spectrum. The message says how to choose k, and the recipe it gives is scikit-learn's."""
    for n_components in (0.9, None, "mle"):
        with pytest.raises(InputError, match=r"got .*; a fraction of the variance .*explained_variance_ratio_\.cumsum"):
            PCA(n_components).fit(data["train"])
    X = np.asarray(data["train"])
    ours = PCA(12, solver="covariance").fit(X).explained_variance_ratio_.cumsum()
    np.testing.assert_allclose(ours, SKPCA(12).fit(X).explained_variance_ratio_.cumsum(), rtol=1e-4)
    for fraction in (0.5, 0.7):
        assert np.searchsorted(ours, fraction) + 1 == SKPCA(fraction, svd_solver="full").fit(X).n_components_


@pytest.mark.parametrize("method", ["pca", "nmf", "ae"])
def test_a_store_or_its_dataset_given_for_the_array_points_to_fit_store(method, small_store):
    """``PCA(8).fit(ds)`` or ``.fit("s8.zarr")``: the array is ds.expression, and fit_store fits a store."""
    model = get_model_class(method)(2)
    for given, what in ((open_store(small_store), "not the Dataset"), (str(small_store), "not the path")):
        with pytest.raises(
            TypeError, match=f"takes a \\(voxels, genes\\) array such as ds.expression, {what}.*fit_store"
        ):
            model.fit(given)


@pytest.mark.parametrize(
    "method, params",
    [
        ("pca", {}),
        ("pca", {"solver": "covariance", "cache_bytes": None}),
        ("nmf", {}),
        ("nmf", {"solver": "minibatch"}),
        ("kpca", {}),
        ("tsne", {}),
        ("umap", {}),
        ("ae", {"max_epochs": 1}),
        ("ae", {"max_epochs": 1, "in_memory": False}),
    ],
)
def test_nan_rows_of_a_lazy_array_are_refused_by_every_method(method, params, small_store):
    """``ds.expression.where(mask)`` keeps the masked rows as NaN, and a lazy array is not
    validated up front: PCA and t-SNE stopped with numpy's 'SVD did not converge', NMF with
    scipy's message, kernel PCA blamed its landmarks' rank, and the auto-encoder returned its
    untrained weights (loss NaN). Each says what X holds and how to keep only the voxels."""
    ds = open_store(small_store)
    masked = ds["expression"].where(ds["hemisphere"] == "L")
    assert masked.chunks is not None  # lazy: scikit-learn's validation never sees the values
    with pytest.raises(InputError, match=r"X holds NaN or infinite values.*ds.brain.expression\(where=...\)"):
        get_model_class(method)(2, **params).fit(masked)


@pytest.mark.parametrize("in_memory", [True, False])
def test_an_auto_encoder_whose_loss_is_not_finite_says_so_instead_of_keeping_its_first_weights(in_memory):
    huge = da.from_array(np.random.default_rng(0).random((600, 20)).astype(np.float32) * 1e30, chunks=(200, 20))
    with pytest.raises(InputError, match="loss is not finite in epoch 1, though X is: the training diverged"):
        get_model_class("ae")(2, max_epochs=1, in_memory=in_memory).fit(huge)


def test_pca_on_a_dask_cluster_equals_local(data):
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        with set_options(client=client):
            remote = PCA(8).fit(data["dask"])
    local = PCA(8).fit(data["dask"])
    np.testing.assert_allclose(remote.components_, local.components_, atol=1e-5)


# ------------------------------------------------------------------------- NMF
@pytest.fixture(scope="module")
def nmf_models(data):
    return {k: NMF(k, max_epochs=15, cache_bytes=None).fit(data["dask"]) for k in (2, 4, 8, 16)}


def test_nmf_is_non_negative(nmf_models, data):
    model = nmf_models[8]
    W = model.transform(data["test"])
    assert (model.components_ >= 0).all() and (W >= 0).all()
    assert (model.inverse_transform(W) >= 0).all()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # the reference's 400 iterations
def test_nmf_rmse_falls_with_dim_and_nears_sklearn(nmf_models, data):
    from sklearn.decomposition import NMF as SKNMF

    errors = [rmse(m.inverse_transform(m.transform(data["test"])), data["test"]) for m in nmf_models.values()]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    ref = SKNMF(8, init="nndsvda", max_iter=400).fit(data["train"])
    ref_rmse = rmse(ref.inverse_transform(ref.transform(data["test"])), data["test"])
    assert errors[2] < 1.03 * ref_rmse


def test_nmf_training_loss_decreases(nmf_models):
    loss = nmf_models[16].loss_
    assert len(loss) > 2 and np.all(np.diff(loss) <= 1e-9 * loss[0])


def test_nmf_streamed_equals_in_memory(data):
    # a fixed number of sweeps per W solve: each voxel's W is then independent of the blocking
    settings = dict(max_epochs=8, w_tol=0, w_max_iter=30)
    streamed = NMF(4, cache_bytes=None, **settings).fit(data["dask"])
    memory = NMF(4, **settings).fit(data["train"])
    np.testing.assert_allclose(memory.components_, streamed.components_, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(memory.loss_, streamed.loss_, rtol=1e-5)


def test_nmf_minibatch_solver_learns(data):
    model = NMF(4, solver="minibatch", batch_size=256, max_epochs=5, cache_bytes=None).fit(data["dask"])
    W = model.transform(data["test"])
    assert (model.components_ >= 0).all() and (W >= 0).all()
    mean_rmse = rmse(data["train"].mean(axis=0), data["test"])
    assert rmse(model.inverse_transform(W), data["test"]) < 0.85 * mean_rmse


def test_nmf_rejects_negative_data(data):
    with pytest.raises(ValueError, match="Negative values|non-negative"):
        NMF(2, max_epochs=2).fit(data["train"] - 0.5)


# ------------------------------------------------------------------------- kernel PCA
def test_kpca_with_every_row_a_landmark_matches_exact_kernel_pca(data):
    X = data["train"][:300]
    gamma = 0.01
    exact = SKKernelPCA(5, kernel="rbf", gamma=gamma).fit(X)
    ours = KernelPCA(5, gamma=gamma, n_landmarks=len(X)).fit(X)
    Z_exact, Z_ours = exact.transform(data["test"]), ours.transform(data["test"])
    signs = np.sign(np.sum(Z_exact * Z_ours, axis=0))
    np.testing.assert_allclose(Z_ours * signs, Z_exact, atol=2e-3 * np.abs(Z_exact).max())


def test_kpca_reconstruction_beats_the_mean_and_learns_its_preimage(data):
    mean_rmse = rmse(data["train"].mean(axis=0), data["test"])
    errors = []
    for k in (2, 8):
        model = KernelPCA(k, n_landmarks=600).fit(data["dask"])
        errors.append(rmse(model.inverse_transform(model.transform(data["test"])), data["test"]))
        assert model.alpha_ > 0 and model.inverse_gamma_ > 0
    assert errors[0] < 0.9 * mean_rmse and errors[1] < errors[0]


def test_kpca_streamed_equals_in_memory(data):
    a = KernelPCA(4, n_landmarks=400, gamma="median").fit(data["dask"])
    b = KernelPCA(4, n_landmarks=400, gamma="median").fit(data["train"])
    assert a.gamma_ == pytest.approx(b.gamma_)
    np.testing.assert_allclose(a.transform(data["test"]), b.transform(data["test"]), atol=1e-3)
    np.testing.assert_allclose(
        a.inverse_transform(a.transform(data["test"])), b.inverse_transform(b.transform(data["test"])), atol=1e-3
    )


def test_kpca_rejects_other_kernels(data):
    with pytest.raises(ValueError, match="rbf"):
        KernelPCA(2, kernel="poly").fit(data["train"])


@pytest.mark.parametrize(
    "model", [PCA(3), NMF(3, max_epochs=3), KernelPCA(3, n_landmarks=200)], ids=["pca", "nmf", "kpca"]
)
def test_parameters_round_trip_as_arrays(model, data):
    model.fit(data["train"])
    params = model.to_dataset()
    assert all(v.dtype != object for v in params.data_vars.values())
    again = type(model).from_dataset(params)
    np.testing.assert_array_equal(again.transform(data["test"]), model.transform(data["test"]))
    Z = model.transform(data["test"])
    np.testing.assert_array_equal(again.inverse_transform(Z), model.inverse_transform(Z))
