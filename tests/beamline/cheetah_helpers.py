"""Building Cheetah objects directly (not through our converter) and comparing with them."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cheetah = pytest.importorskip("cheetah")
torch.set_default_dtype(torch.float64)


def T(value):
    return torch.tensor(np.array(value, dtype=float), dtype=torch.float64)


def N(tensor):
    return tensor.detach().numpy()


def assert_vector_close(ours, theirs, rtol=1e-10):
    """Per coordinate: relative to that coordinate's largest magnitude in the batch."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    for i in range(theirs.shape[-1]):
        scale = np.abs(theirs[..., i]).max()
        np.testing.assert_allclose(ours[..., i], theirs[..., i], rtol=rtol, atol=rtol * scale)


def assert_covariance_close(ours, theirs, rtol=1e-10):
    """Entry (i, j) relative to sqrt(cov_ii cov_jj), the scale of a correlation."""
    ours, theirs = np.asarray(ours)[..., :6, :6], np.asarray(theirs)[..., :6, :6]
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    diagonal = np.sqrt(np.abs(np.diagonal(theirs, axis1=-2, axis2=-1)))
    scale = diagonal[..., :, None] * diagonal[..., None, :]
    assert np.all(np.abs(ours - theirs) <= rtol * scale), np.max(np.abs(ours - theirs) / scale)


def assert_map_close(ours, theirs, rtol=1e-12):
    """Transfer maps, each row (one output coordinate) relative to its largest entry."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = np.abs(theirs).max(axis=-1, keepdims=True)
    error = np.abs(ours - theirs)
    assert np.all(error <= rtol * scale), np.max(error / np.where(scale > 0, scale, 1.0))


def assert_round_trips(ours, path):
    """``ours`` (a Segment) written as Cheetah LatticeJSON to ``path`` reads back equal, and
    Cheetah's segment loaded from that file converts back equal, as does ``to_cheetah`` of
    ours. Returns Cheetah's loaded segment (for tracking comparisons)."""
    import equinox as eqx
    from cheetah import latticejson

    from diffdesign.beamline.convert import from_cheetah, to_cheetah
    from diffdesign.beamline.lattice_json import read_lattice_json, write_lattice_json

    def assert_same_elements(segment):
        pairs = zip(segment.elements, ours.elements, strict=True)
        assert [type(a) for a in segment.elements] == [type(b) for b in ours.elements]
        assert all(eqx.tree_equal(a, b) for a, b in pairs)

    write_lattice_json(ours, path)
    assert_same_elements(read_lattice_json(path))
    theirs = latticejson.load_cheetah_model(str(path))
    assert_same_elements(from_cheetah(theirs))
    assert_same_elements(from_cheetah(to_cheetah(ours)))
    return theirs
