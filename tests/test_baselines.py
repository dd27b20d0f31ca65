from __future__ import annotations

import numpy as np
import pytest

from wxembed.archive import Archive
from wxembed.evaluation.baselines import ClimatologyBaseline, PCABaseline
from wxembed.reflectivity import dbz_to_unit as normalise_dbz


def low_rank_normalised(n=40, shape=(12, 16), rank=5, seed=0):
    """Normalised images that are a mean plus ``rank`` patterns, all inside (0, 1)."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(0, 1, (rank, shape[0] * shape[1]))
    weights = rng.normal(0, 1, (n, rank))
    x = weights @ patterns
    x = 0.5 + 0.4 * x / np.abs(x).max()
    return x.reshape(n, *shape).astype(np.float32)


@pytest.fixture(scope="module")
def archive(tiny_archive):
    """The shared archive: 96 hours of synthetic storms on the 66 x 112 grid."""
    return Archive(tiny_archive)


def test_normalisation_maps_no_data_to_zero_and_clips_to_0_60_dbz():
    dbz = np.array([[np.nan, -32.0, 0.0, 30.0, 60.0, 75.0]], dtype=np.float32)
    np.testing.assert_allclose(normalise_dbz(dbz), [[0, 0, 0, 0.5, 1, 1]])


def test_pca_with_as_many_components_as_the_rank_reconstructs_exactly_from_batches():
    x = low_rank_normalised(rank=5)
    pca = PCABaseline(n_components=5)
    for i in range(0, 40, 7):  # batches of 7, the first larger than n_components, a ragged tail
        pca.partial_fit(x[i : i + 7] * 60.0)
    assert pca.n_samples_seen_ == 40
    codes = pca.encode(x * 60.0)
    assert codes.shape == (40, 5)
    back = pca.decode(codes) / 60.0
    assert np.abs(back - x).max() < 1e-4


def test_pca_with_fewer_components_than_the_rank_does_not_reconstruct_exactly():
    x = low_rank_normalised(rank=5)
    pca = PCABaseline(n_components=3).partial_fit(x * 60.0)
    assert np.abs(pca.decode(pca.encode(x * 60.0)) / 60.0 - x).max() > 1e-2


def test_incremental_pca_matches_a_one_batch_svd():
    x = low_rank_normalised(n=30, rank=8, seed=1).reshape(30, -1).astype(np.float64)
    xc = x - x.mean(axis=0)
    s_ref = np.linalg.svd(xc, compute_uv=False)[:8]
    pca = PCABaseline(n_components=8)
    for i in range(0, 30, 10):
        pca.partial_fit(x[i : i + 10].reshape(-1, 12, 16) * 60.0)
    np.testing.assert_allclose(pca.singular_values_, s_ref, rtol=1e-4)
    np.testing.assert_allclose(pca.mean_, x.mean(axis=0), atol=1e-6)
    gram = pca.components_ @ pca.components_.T
    np.testing.assert_allclose(gram, np.eye(8), atol=1e-5)


def test_pca_fits_from_an_archive_in_batches_and_encodes_50_numbers_per_hour(archive):
    times = archive.stored_times()
    train = times[:55]
    pca = PCABaseline(n_components=50).fit_archive(archive, train, batch=16)
    assert pca.n_samples_seen_ == 55 and pca.shape == archive.grid.shape
    # batches of 16 (the first smaller than 50 components) give the one-shot SVD's spectrum
    train_fields = np.stack([archive.read_dbz(t) for t in train])
    flat = normalise_dbz(train_fields).reshape(55, -1).astype(np.float64)
    s_ref = np.linalg.svd(flat - flat.mean(axis=0), compute_uv=False)[:50]
    np.testing.assert_allclose(pca.singular_values_, s_ref, rtol=1e-4, atol=1e-6 * s_ref[0])
    fields = np.stack([archive.read_dbz(t) for t in times[55:]])  # the other 41 hours
    codes = pca.encode(fields)
    assert codes.shape == (41, 50) and codes.dtype == np.float32
    recon = pca.decode(codes)
    assert recon.shape == (41, *archive.grid.shape)
    assert recon.min() >= 0.0 and recon.max() <= 60.0
    # the training hours are in the span of 50 components of 55 hours: nearly exact
    head = train_fields[:5]
    train_err = np.abs(pca.reconstruct(head) - np.clip(head, 0, 60)).mean()
    assert train_err < 0.5


def test_pca_fit_archive_refuses_fewer_hours_than_components(archive):
    with pytest.raises(ValueError, match="cannot give 50 components"):
        PCABaseline(50).fit_archive(archive, archive.stored_times()[:10])


def test_coarsened_pca_decodes_to_the_full_grid(archive):
    times = archive.stored_times()
    pca = PCABaseline(n_components=10, coarsen=4).fit_archive(archive, times[:30], batch=8)
    assert pca.components_.shape == (10, (66 // 4) * (112 // 4))
    out = pca.decode(pca.encode(archive.read_dbz(times[40])))
    assert out.shape == (1, 66, 112)
    # trailing rows/columns beyond the last whole block repeat the last block's values
    np.testing.assert_array_equal(out[0, 64:, :], np.repeat(out[0, 63:64, :], 2, axis=0))


def test_pca_save_load_round_trip_gives_identical_codes(tmp_path):
    x = low_rank_normalised(rank=4)
    pca = PCABaseline(n_components=4, coarsen=2).partial_fit(x * 60.0)
    path = pca.save(tmp_path / "pca.npz")
    again = PCABaseline.load(path)
    assert (again.n_components, again.coarsen, again.shape) == (4, 2, (12, 16))
    codes = pca.encode(x * 60.0)
    np.testing.assert_array_equal(again.encode(x * 60.0), codes)
    np.testing.assert_array_equal(again.decode(codes), pca.decode(codes))
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert "components" in z.files


def test_pca_encode_before_fit_is_refused():
    with pytest.raises(RuntimeError, match="not fitted"):
        PCABaseline().encode(np.zeros((4, 4)))


def test_climatology_is_the_mean_normalised_training_image_in_dbz(archive, tmp_path):
    times = archive.stored_times()[:20]
    clim = ClimatologyBaseline().fit_archive(archive, times, batch=6)
    fields = np.stack([archive.read_dbz(t) for t in times])
    expected = normalise_dbz(fields).mean(axis=0) * 60.0
    np.testing.assert_allclose(clim.mean_dbz, expected, atol=1e-4)
    pred = clim.predict(3)
    assert pred.shape == (3, 66, 112) and np.array_equal(pred[0], pred[2])
    again = ClimatologyBaseline.load(clim.save(tmp_path / "clim.npz"))
    np.testing.assert_array_equal(again.predict(1)[0], clim.mean_dbz)
    assert again.n_samples_seen_ == 20


def test_a_loaded_climatology_goes_on_as_if_it_had_seen_every_hour(archive, tmp_path):
    times = archive.stored_times()[:12]
    whole = ClimatologyBaseline().fit_archive(archive, times, batch=5)
    first = ClimatologyBaseline().fit_archive(archive, times[:7])
    again = ClimatologyBaseline.load(first.save(tmp_path / "c.npz")).fit_archive(archive, times[7:])
    assert again.n_samples_seen_ == 12
    np.testing.assert_allclose(again.mean_dbz, whole.mean_dbz, atol=1e-4)
    one = ClimatologyBaseline().fit_archive(archive, times[:1])
    first_hour = normalise_dbz(archive.read_dbz(times[0])) * 60
    np.testing.assert_allclose(one.mean_dbz, first_hour, atol=1e-4)
    with pytest.raises(ValueError, match="no training hours"):
        ClimatologyBaseline().fit_archive(archive, times[:0])
    with pytest.raises(ValueError, match=r"fields have shape \(5, 5\), fitted on \(66, 112\)"):
        again.partial_fit(np.zeros((1, 5, 5), np.float32))
    pca = PCABaseline(n_components=2).partial_fit(low_rank_normalised(n=4) * 60.0)
    with pytest.raises(ValueError, match="not a ClimatologyBaseline file"):
        ClimatologyBaseline.load(pca.save(tmp_path / "p.npz"))
    with pytest.raises(RuntimeError, match="ClimatologyBaseline is not fitted"):
        ClimatologyBaseline().predict()
