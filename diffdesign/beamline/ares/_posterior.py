"""NUTS posterior over the ARES quadrupole offsets (and optionally the incoming centroid).

Uses the calibration's one likelihood (`whitened_residuals`) as a NumPyro factor. Imports
only the likelihood module, never ``calibration`` (which imports this module lazily, so that
least squares does not load NumPyro and ArviZ).
"""

from __future__ import annotations

import arviz as az
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

from diffdesign.beamline.ares._likelihood import (
    CalibrationResult,
    flat_residuals,
    residual_table,
    whitened_residuals,
)
from diffdesign.beamline.beams import ParameterBeam
from diffdesign.inference.identifiability import identifiability

_CENTROID_INDEX = jnp.array([0, 1, 2, 3])  # mu_x, mu_px, mu_y, mu_py in the 7-vector


def sample_offsets(
    settings, measured, sigmas, incoming: ParameterBeam, bound, num_warmup, num_samples,
    num_chains, fit_incoming_centroid, centroid_prior_std, key,
) -> CalibrationResult:  # fmt: skip
    nominal_centroid = incoming.mu[_CENTROID_INDEX]

    def model():
        offsets = numpyro.sample("offsets", dist.Uniform(-bound, bound).expand([3, 2]).to_event(2))
        beam = incoming
        if fit_incoming_centroid:
            centroid = numpyro.sample(
                "incoming_centroid", dist.Normal(nominal_centroid, centroid_prior_std).to_event(1)
            )
            beam = _with_centroid(incoming, centroid)
        r = whitened_residuals(offsets, settings, measured, sigmas, beam)
        numpyro.factor("likelihood", -0.5 * jnp.sum(r**2))

    chain_method = "sequential" if jax.device_count() < num_chains else "parallel"
    mcmc = MCMC(
        NUTS(model, target_accept_prob=0.9),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(key)
    posterior = az.from_numpyro(mcmc)
    draws = mcmc.get_samples()
    samples = np.asarray(draws["offsets"]).reshape(-1, 6)
    offsets = jnp.asarray(samples.mean(0).reshape(3, 2))
    if fit_incoming_centroid:
        incoming = _with_centroid(incoming, jnp.asarray(draws["incoming_centroid"]).mean(0))
    covariance = jnp.asarray(np.cov(samples.T))
    jacobian = jax.jacfwd(flat_residuals(settings, measured, sigmas, incoming))(offsets.reshape(6))
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    rhat = float(np.asarray(az.rhat(posterior, var_names=["offsets"])["offsets"]).max())
    r = whitened_residuals(offsets, settings, measured, sigmas, incoming)
    return CalibrationResult(
        offsets=offsets,
        std=jnp.sqrt(jnp.diagonal(covariance)).reshape(3, 2),
        covariance=covariance,
        residuals=residual_table(offsets, settings, measured, sigmas, incoming),
        chi2=float(jnp.sum(r**2)),
        dof=4 * settings.shape[0] - 6 - (4 if fit_incoming_centroid else 0),
        identifiability=identifiability(jacobian),
        at_bound=jnp.abs(offsets) > 0.99 * bound,
        converged=divergences == 0 and rhat < 1.01,
        method="nuts",
        posterior=posterior,
    )


def _with_centroid(beam: ParameterBeam, centroid) -> ParameterBeam:
    return eqx.tree_at(lambda b: b.mu, beam, beam.mu.at[_CENTROID_INDEX].set(centroid))
