"""Problems: a spec and a loss. Problems add, so joint design is one ``fit`` call.

A :class:`Problem` holds its data as arrays (an ``eqx.Module``), publishes ``spec`` (a dict
of name -> :class:`~diffdesign.core.spec.Param` tree) and computes

    loss(params, key) -> (scalar, aux)

with ``params`` the spec's values (physical units) and ``aux`` a dict of diagnostics. A
:class:`ResidualProblem` computes whitened ``residuals(params, key)`` instead, and its loss
is half their sum of squares, so least squares, Gauss-Newton and Fisher information use the
same function.

``p + q`` is a problem over the union of the two specs (an entry present in both is one
shared parameter); ``w * p`` weights a problem. The sum's aux holds each term's loss and aux
under the term's ``name``.

Example:
    >>> joint = tuning + 0.1 * detector_design        # one spec, one loss
    >>> result = run(joint, steps=200, key=jax.random.key(0))
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray, PyTree, Scalar

from diffdesign.core.spec import merge


class Problem(eqx.Module):
    """Abstract problem. Subclasses define :attr:`spec`, :attr:`name` and :meth:`loss`."""

    @property
    @abc.abstractmethod
    def spec(self) -> dict[str, PyTree]: ...

    @property
    def name(self) -> str:
        return type(self).__name__

    @abc.abstractmethod
    def loss(self, params: Mapping[str, PyTree], key: PRNGKeyArray) -> tuple[Scalar, dict]: ...

    def __add__(self, other: Problem) -> Sum:
        if not isinstance(other, Problem):
            return NotImplemented
        return Sum(_terms(self) + _terms(other))

    def __rmul__(self, weight: float) -> Sum:
        if isinstance(weight, Problem):
            return NotImplemented
        return Sum(tuple((w * weight, p) for w, p in _terms(self)))

    __mul__ = __rmul__


class ResidualProblem(Problem):
    """A problem given by whitened residuals; the loss is ``0.5 * sum(residuals**2)``."""

    @abc.abstractmethod
    def residuals(self, params: Mapping[str, PyTree], key: PRNGKeyArray) -> Array: ...

    def loss(self, params, key):
        r = self.residuals(params, key)
        return 0.5 * jnp.sum(r**2), {}


def _terms(problem: Problem) -> tuple[tuple[Any, Problem], ...]:
    if isinstance(problem, Sum):
        return problem.terms
    return ((1.0, problem),)


class Sum(Problem):
    """A weighted sum of problems over the union of their specs.

    Each term receives only its own spec's entries and its own key (split from the step's);
    aux is ``{term name: {"loss": term loss, **term aux}}`` (names made unique by a suffix).
    """

    terms: tuple[tuple[Any, Problem], ...]

    def __init__(self, terms):
        terms = tuple(terms)
        if not terms:
            raise ValueError("a sum of problems needs at least one term")
        for weight, problem in terms:
            if not isinstance(problem, Problem):
                raise TypeError(f"terms must be Problems; got {type(problem).__name__}")
            if isinstance(weight, (int, float)) and not weight >= 0:
                raise ValueError(f"problem weights must be >= 0; got {weight} for {problem.name}")
        merge(*(p.spec for _, p in terms))  # conflicting definitions fail here, before any work
        self.terms = terms

    @property
    def spec(self):
        return merge(*(p.spec for _, p in self.terms))

    @property
    def name(self):
        return "+".join(p.name for _, p in self.terms)

    def term_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for _, p in self.terms:
            name, k = p.name, 2
            while name in names:
                name, k = f"{p.name}_{k}", k + 1
            names.append(name)
        return tuple(names)

    def loss(self, params, key):
        keys = jax.random.split(key, len(self.terms))
        total, aux = 0.0, {}
        for name, (weight, problem), k in zip(self.term_names(), self.terms, keys, strict=True):
            own = {entry: params[entry] for entry in problem.spec}
            value, term_aux = problem.loss(own, k)
            total = total + weight * value
            aux[name] = {"loss": value, **dict(term_aux)}
        return total, aux
