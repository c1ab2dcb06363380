"""A realistic screen readout of AREABSCR1 as a NumPy black box: image, noise, analysis.

Per shot, :func:`read_screen` forms the camera image of a Gaussian beam and analyses it the
way control-room image analysis does:

1. **Shot-to-shot jitter** (matching :class:`~diffdesign.beamline.ares.screens.IdealisedScreen`'s
   floors): centroid ``mu + CENTROID_JITTER z`` and size ``sigma exp(s z' - s^2 / 2)`` with
   ``s^2 = SIZE_JITTER^2 + (SIZE_FLOOR / sigma)^2`` (log-normal, mean-preserving, positive).
2. **Optics**: the beam blurred by the point spread ``sigma_psf = r``, i.e. a Gaussian of
   size ``sqrt(sigma^2 + r^2)``, imaged on ``SENSOR_PIXELS`` = 612 x 510 binned pixels of
   size ``r`` centred on the axis (pixel edges at ``(i - 306) r`` and ``(j - 255) r``), so
   the beam can leave the field of view.
3. **Photon statistics**: independent Poisson photoelectron counts per pixel with mean
   ``PHOTOELECTRONS`` times the beam's probability in the pixel (the beam's full integral
   holds ``PHOTOELECTRONS`` on average, also where it falls off the sensor).
4. **Camera**: ``ADC = clip(round(PEDESTAL + GAIN n + READ_NOISE z), 0, ADC_MAX)`` per pixel
   (12-bit integer ADC that saturates at 4095 counts).
5. **Analysis**: subtract the known pedestal, keep the pixels above ``THRESHOLD``, and take
   the intensity-weighted centroid and rms size ``s`` of the kept pixels' centres; the size
   is deconvolved from the point spread, ``sigma = sqrt(max(s^2 - r^2, 0))``. An image with
   no pixel above threshold (the beam off the screen) reads as the field-of-view centre
   (0 m) with a size equal to the field of view's half width (``306 r``, ``255 r``).

Constants (the camera of :data:`CAMERA`):

========================  =========  ====================================================
``PHOTOELECTRONS``        2e4        mean photoelectrons of the whole beam per image
``GAIN``                  20         ADC counts per photoelectron
``PEDESTAL``              100        ADC counts of the dark level
``READ_NOISE``            2          ADC counts, Gaussian, per pixel
``ADC_MAX``               4095       ADC counts (12 bit), saturation
``THRESHOLD``             10         ADC counts above pedestal (5 read-noise sigmas)
``CENTROID_JITTER``       5e-6       m, shot-to-shot centroid jitter (Gaussian)
``SIZE_JITTER``           0.02       relative shot-to-shot size jitter
``SIZE_FLOOR``            2e-6       m, absolute size jitter
========================  =========  ====================================================

The gain makes a pixel saturate at ``(ADC_MAX - PEDESTAL) / GAIN`` ~ 200 photoelectrons: at
today's resolution r = 13.28 um a focused beam (sigma = 20 um: ~970 photoelectrons in the
peak pixel) saturates and its size reads high (by ~30 %, see the tests), while beams above
~50 um stay below it (a 100 um beam peaks at ~55 photoelectrons, 1100 counts). One
photoelectron (20 counts) clears the threshold with probability 1 - 1e-6, so the threshold
removes the read noise and keeps the light; a 3-sigma threshold would keep ~400 noise
pixels of the 312 120 in every image, whose spread over the field of view would dominate
the rms size of a 2e4-photoelectron beam. With 5 sigmas an image holds 0.024 noise pixels
on average.

How it is computed (exact in distribution, up to the stated approximations): pixels that
can saturate (expected count >= ``SATURABLE_COUNT`` = 100, where reaching ~200 has
probability < 1e-15 otherwise) lie in a small rectangle around the peak, rendered pixel by
pixel: Poisson counts, read noise, rounding, saturation and the 2-D threshold. Everywhere
else the pedestal-subtracted image is exactly ``GAIN n`` plus read noise on each lit pixel,
and each lit pixel passes the threshold; since the beam and the sensor factorise in x and
y, the photoelectrons of those regions (two rectangles' worth of a Poisson process) are
drawn as a Poisson count and two independent 1-D multinomial pixel histograms, which carry
every sum the moments need. Approximations: the read noise of lit pixels outside the
saturable rectangle is left out (its variance is 1 % of a single photoelectron's, so it
moves any moment's spread by < 0.5 %); noise pixels above threshold (Poisson count with
the pass probability of 312 120 dark pixels, uniform positions, values from the noise tail)
may fall on lit pixels; a lit pixel that fails the threshold (probability 1e-6) is kept.

The inputs are vectorised over rows (shots); 10^4 rows take about a second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
from scipy.special import ndtr, ndtri

from diffdesign.beamline.ares.screens import OBSERVABLES, RESOLUTION_RANGE, SENSOR_PIXELS

#: Version of the readout model: bump when its physics or constants change (surrogate
#: artefacts trained on it carry it in their card and are refused after a change).
VERSION = "1"
#: Name of the simulator in surrogate cards.
NAME = "ares_screen_camera"

#: Ranges of the inputs the joint design explores (m): |mu| and sigma at the screen.
MU_RANGE = (1e-6, 5e-3)
SIGMA_RANGE = (1e-5, 2e-3)
#: What :func:`read_screen` accepts (m): |mu| up to 5 cm, sigma in (0, 1 cm].
MU_LIMIT = 5e-2
SIGMA_LIMIT = 1e-2

_CHUNK = 2048  # rows per vectorised pass (memory ~ 40 MB); fixed so results do not depend on n


@dataclasses.dataclass(frozen=True)
class Camera:
    """Constants of the camera and its analysis (see the module docstring for units)."""

    photoelectrons: float = 2e4
    gain: int = 20
    pedestal: int = 100
    read_noise: float = 2.0
    adc_max: int = 4095
    threshold_sigmas: float = 5.0
    centroid_jitter: float = 5e-6
    size_jitter: float = 0.02
    size_floor: float = 2e-6

    def __post_init__(self):
        # the fast path treats every lit pixel outside the saturable rectangle as passing
        margin = (self.gain - self.threshold - 0.5) / self.read_noise
        if margin < 4.5:
            raise ValueError(
                "one photoelectron must clear the threshold by >= 4.5 read-noise sigmas "
                f"(gain - threshold - 0.5 >= 4.5 read_noise); got {margin:.2f} sigmas"
            )

    @property
    def threshold(self) -> float:
        """ADC counts above pedestal a pixel must exceed to be kept."""
        return self.threshold_sigmas * self.read_noise

    @property
    def saturation_count(self) -> float:
        """Photoelectrons that fill a pixel's ADC range above the pedestal."""
        return (self.adc_max - self.pedestal) / self.gain

    @property
    def saturable_count(self) -> float:
        """Expected photoelectrons per pixel from which a pixel is rendered one by one."""
        return 0.5 * self.saturation_count

    @property
    def noise_pass_probability(self) -> float:
        """Probability that a dark pixel's rounded read noise exceeds the threshold."""
        return float(ndtr(-(self.threshold + 0.5) / self.read_noise))


CAMERA = Camera()
PHOTOELECTRONS = CAMERA.photoelectrons
GAIN = CAMERA.gain
PEDESTAL = CAMERA.pedestal
READ_NOISE = CAMERA.read_noise
ADC_MAX = CAMERA.adc_max
THRESHOLD = CAMERA.threshold
CENTROID_JITTER = CAMERA.centroid_jitter
SIZE_JITTER = CAMERA.size_jitter
SIZE_FLOOR = CAMERA.size_floor
SATURABLE_COUNT = CAMERA.saturable_count


def _checked_rows(beam: Mapping[str, np.ndarray], resolution) -> tuple[np.ndarray, np.ndarray]:
    """``(4, n)`` beam moments and ``(n,)`` resolutions, validated."""
    missing = [k for k in OBSERVABLES if k not in beam]
    if missing:
        raise ValueError(f"beam must hold {', '.join(OBSERVABLES)}; missing {missing}")
    values = [np.asarray(beam[k], dtype=float) for k in OBSERVABLES]
    shape = values[0].shape
    for key, value in zip(OBSERVABLES, values, strict=True):
        if value.shape != shape:
            raise ValueError(
                f"beam[{key!r}] must have the shape of beam['mu_x'] {shape}; got {value.shape}"
            )
    resolution = np.asarray(resolution, dtype=float)
    if resolution.shape not in ((), shape):
        raise ValueError(
            f"resolution must be a scalar or have the beam's shape {shape}; got {resolution.shape}"
        )
    low, high = RESOLUTION_RANGE
    for key, value in zip(OBSERVABLES, values, strict=True):
        if key.startswith("mu"):
            bad = ~(np.abs(value) <= MU_LIMIT)
            allowed = f"[-{MU_LIMIT:g}, {MU_LIMIT:g}] m"
        else:
            bad = ~((value > 0) & (value <= SIGMA_LIMIT))
            allowed = f"(0, {SIGMA_LIMIT:g}] m"
        if np.any(bad):
            raise ValueError(f"{key} must be finite in {allowed}; got {value[bad].ravel()[0]}")
    bad = ~((resolution >= low) & (resolution <= high))
    if np.any(bad):
        raise ValueError(
            f"resolution must lie in [{low:g}, {high:g}] m (binned pixel = point-spread "
            f"sigma); got {np.ravel(resolution[bad] if resolution.ndim else resolution)[0]}"
        )
    rows = np.stack([v.ravel() for v in values])
    return rows, np.broadcast_to(resolution, shape).ravel().copy()


def read_screen(
    beam: Mapping[str, np.ndarray],
    resolution: float | np.ndarray,
    seed: int | np.random.Generator,
    camera: Camera = CAMERA,
) -> dict[str, np.ndarray]:
    """Measured beam moments of one camera shot per entry of ``beam`` (m).

    Args:
        beam: true ``mu_x, sigma_x, mu_y, sigma_y`` at the screen (m), NumPy arrays of one
            shape; |mu| <= 5 cm, 0 < sigma <= 1 cm.
        resolution: binned pixel size = point-spread sigma (m) in ``RESOLUTION_RANGE``, a
            scalar or an array of the beam's shape.
        seed: seed or generator of the shot noise.
        camera: the camera's constants.

    Returns:
        Measured ``mu_x, sigma_x, mu_y, sigma_y`` (m), the beam's shape, never NaN; a shot
        with no pixel above threshold reads ``mu = 0`` and sigma = the field of view's half
        width (``306 r`` in x, ``255 r`` in y).

    Raises:
        ValueError: naming the field and its allowed range, for missing keys, shapes that
            differ, non-finite or out-of-range values.

    Example::

        read_screen({"mu_x": 1e-4, "sigma_x": 2e-4, "mu_y": 0.0, "sigma_y": 1e-4},
                    13.28e-6, seed=0)
    """
    shape = np.shape(beam["mu_x"]) if "mu_x" in beam else ()
    rows, resolution = _checked_rows(beam, resolution)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = np.empty((4, rows.shape[1]))
    for start in range(0, rows.shape[1], _CHUNK):
        stop = start + _CHUNK
        out[:, start:stop] = _read_chunk(rows[:, start:stop], resolution[start:stop], rng, camera)
    return {k: out[i].reshape(shape) for i, k in enumerate(OBSERVABLES)}


def _pixel_probabilities(edges: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``(m, k)`` probabilities of Gaussians ``(m,)`` in pixels between ``edges (k + 1,)``
    (all in pixel units); differences taken on the near tail for accuracy."""
    t = (edges[None, :] - mu[:, None]) / sigma[:, None]
    below, above = ndtr(t), ndtr(-t)
    right = t[:, :-1] > 0
    return np.where(right, above[:, :-1] - above[:, 1:], below[:, 1:] - below[:, :-1])


def _multinomial(rng, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(m, k)`` histograms of ``counts (m,)`` draws with probabilities ∝ ``weights``."""
    total = weights.sum(axis=1, keepdims=True)
    pvals = np.where(total > 0, weights / np.where(total > 0, total, 1.0), 1.0 / weights.shape[1])
    return rng.multinomial(np.where(total[:, 0] > 0, counts, 0), pvals)


def _core_range(peak_fraction: np.ndarray, level: np.ndarray):
    """First index, width and mask of the pixels whose probability reaches ``level``."""
    mask = peak_fraction >= level[:, None]
    width = mask.sum(axis=1)
    first = np.argmax(mask, axis=1)
    return first, width, mask


def _read_chunk(rows, resolution, rng, camera: Camera) -> np.ndarray:
    mu_x, sigma_x, mu_y, sigma_y = rows
    m = mu_x.shape[0]
    n_x, n_y = SENSOR_PIXELS
    # 1. shot-to-shot jitter, in pixel units from here on
    jitter = rng.standard_normal((4, m))
    sums = []
    for mu, sigma, z_mu, z_sigma, n_pix in (
        (mu_x, sigma_x, jitter[0], jitter[1], n_x),
        (mu_y, sigma_y, jitter[2], jitter[3], n_y),
    ):
        spread = np.sqrt(camera.size_jitter**2 + (camera.size_floor / sigma) ** 2)
        shot_sigma = sigma * np.exp(spread * z_sigma - 0.5 * spread**2)
        shot_mu = mu + camera.centroid_jitter * z_mu
        blurred = np.sqrt(shot_sigma**2 + resolution**2) / resolution
        edges = np.arange(n_pix + 1) - 0.5 * n_pix
        probability = _pixel_probabilities(edges, shot_mu / resolution, blurred)
        sums.append((probability, edges[:-1] + 0.5))
    (p_x, centre_x), (p_y, centre_y) = sums
    expected = camera.photoelectrons

    # 2. the saturable rectangle: pixels whose expected count can reach SATURABLE_COUNT
    level = camera.saturable_count / expected
    first_x, width_x, core_x = _core_range(p_x, level / np.maximum(p_y.max(axis=1), 1e-300))
    first_y, width_y, core_y = _core_range(p_y, level / np.maximum(p_x.max(axis=1), 1e-300))
    has_core = (width_x > 0) & (width_y > 0)
    width_x, width_y = np.where(has_core, width_x, 0), np.where(has_core, width_y, 0)
    core_x &= has_core[:, None]
    core_y &= has_core[:, None]

    s0 = np.zeros(m)
    s1 = np.zeros((2, m))
    s2 = np.zeros((2, m))
    w_x, w_y = int(width_x.max(initial=0)), int(width_y.max(initial=0))
    if w_x and w_y:
        index_x = np.minimum(first_x[:, None] + np.arange(w_x), n_x - 1)
        index_y = np.minimum(first_y[:, None] + np.arange(w_y), n_y - 1)
        valid = (np.arange(w_x) < width_x[:, None])[:, :, None] & (
            np.arange(w_y) < width_y[:, None]
        )[:, None, :]
        rate = expected * np.take_along_axis(p_x, index_x, 1)[:, :, None]
        rate = np.where(valid, rate * np.take_along_axis(p_y, index_y, 1)[:, None, :], 0.0)
        counts = rng.poisson(rate)
        noise = camera.read_noise * rng.standard_normal(rate.shape)
        adc = np.clip(np.rint(camera.pedestal + camera.gain * counts + noise), 0, camera.adc_max)
        signal = adc - camera.pedestal
        kept = np.where(valid & (signal > camera.threshold), signal, 0.0)
        x = centre_x[index_x][:, :, None]
        y = centre_y[index_y][:, None, :]
        s0 += kept.sum(axis=(1, 2))
        s1 += [(kept * x).sum(axis=(1, 2)), (kept * y).sum(axis=(1, 2))]
        s2 += [(kept * x**2).sum(axis=(1, 2)), (kept * y**2).sum(axis=(1, 2))]

    # 3. the linear region: (x outside the rectangle) x (all y) and (x inside) x (y outside)
    for weight_x, weight_y in (
        (np.where(core_x, 0.0, p_x), p_y),
        (np.where(core_x, p_x, 0.0), np.where(core_y, 0.0, p_y)),
    ):
        mean = expected * weight_x.sum(axis=1) * weight_y.sum(axis=1)
        lit = rng.poisson(mean)
        hist_x = _multinomial(rng, lit, weight_x)
        hist_y = _multinomial(rng, lit, weight_y)
        s0 += camera.gain * lit
        s1 += camera.gain * np.stack([hist_x @ centre_x, hist_y @ centre_y])
        s2 += camera.gain * np.stack([hist_x @ centre_x**2, hist_y @ centre_y**2])

    # 4. dark pixels above threshold: values from the read noise's tail
    p_noise = camera.noise_pass_probability
    n_noise = rng.poisson(n_x * n_y * p_noise, m)
    if n_noise.any():
        row = np.repeat(np.arange(m), n_noise)
        value = np.rint(camera.read_noise * -ndtri(p_noise * rng.uniform(size=row.size)))
        x = centre_x[rng.integers(0, n_x, row.size)]
        y = centre_y[rng.integers(0, n_y, row.size)]
        np.add.at(s0, row, value)
        np.add.at(s1[0], row, value * x)
        np.add.at(s1[1], row, value * y)
        np.add.at(s2[0], row, value * x**2)
        np.add.at(s2[1], row, value * y**2)

    # 5. moments of the kept pixels, deconvolved from the point spread (pixel units -> m)
    seen = s0 > 0
    total = np.where(seen, s0, 1.0)
    centroid = s1 / total
    variance = np.maximum(s2 / total - centroid**2, 0.0)
    size = np.sqrt(np.maximum(variance - 1.0, 0.0))
    half = 0.5 * np.array([[n_x], [n_y]], dtype=float)
    centroid = np.where(seen, centroid, 0.0) * resolution
    size = np.where(seen, size, half) * resolution
    return np.stack([centroid[0], size[0], centroid[1], size[1]])


def sample_inputs(n: int, seed: int) -> np.ndarray:
    """``(n, 4)`` true beams ``[mu_x, sigma_x, mu_y, sigma_y]`` (m) the joint design explores.

    Centroids have a random sign and |mu| log-uniform in ``MU_RANGE`` (1 um .. 5 mm), so
    beams on the screen are common at every resolution; sizes are log-uniform in
    ``SIGMA_RANGE`` (10 um .. 2 mm).
    """
    rng = np.random.default_rng(seed)
    log_mu = rng.uniform(*np.log(MU_RANGE), (n, 2))
    sign = rng.choice([-1.0, 1.0], (n, 2))
    sigma = np.exp(rng.uniform(*np.log(SIGMA_RANGE), (n, 2)))
    mu = sign * np.exp(log_mu)
    return np.stack([mu[:, 0], sigma[:, 0], mu[:, 1], sigma[:, 1]], axis=1)


def sample_resolutions(n: int, seed: int) -> np.ndarray:
    """``(n, 1)`` resolutions (m), log-uniform in ``RESOLUTION_RANGE`` (2 .. 100 um)."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(*np.log(RESOLUTION_RANGE), (n, 1)))


def simulate(psi: np.ndarray, x: np.ndarray, seed: int) -> np.ndarray:
    """The readout as a black-box simulator: one shot per row.

    Args:
        psi: ``(n, 1)`` resolutions (m).
        x: ``(n, 4)`` true ``[mu_x, sigma_x, mu_y, sigma_y]`` (m).
        seed: seed of the shot noise.

    Returns:
        ``(n, 4)`` measured ``[mu_x, sigma_x, mu_y, sigma_y]`` (m).
    """
    psi, x = np.asarray(psi, dtype=float), np.asarray(x, dtype=float)
    if psi.ndim != 2 or psi.shape[1] != 1:
        raise ValueError(f"psi must have shape (n, 1) (the resolution in m); got {psi.shape}")
    if x.shape != (psi.shape[0], 4):
        raise ValueError(
            f"x must have shape ({psi.shape[0]}, 4) (mu_x, sigma_x, mu_y, sigma_y in m); "
            f"got {x.shape}"
        )
    beam = dict(zip(OBSERVABLES, x.T, strict=True))
    measured = read_screen(beam, psi[:, 0], seed)
    return np.stack([measured[k] for k in OBSERVABLES], axis=1)
