"""`Segment`: an ordered beamline of elements, tracked as one composed map.

First-order tracking composes the element maps into one map per setting (see
``_affine``) and applies it once, which is what makes batches of settings cheap.
Second-order tracking applies each element's T map in turn, as Cheetah does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import check_positive
from diffdesign.beamline import _affine, _second_order
from diffdesign.beamline._affine import Map
from diffdesign.beamline.beams import Beam, ParameterBeam, ParticleBeam
from diffdesign.beamline.elements import BPM, Drift, Element, Quadrupole, Screen
from diffdesign.beamline.species import ELECTRON, Species


class Segment(eqx.Module):
    """A sequence of elements, addressed by position or by name.

    Args:
        elements: the elements in beam order; named elements must have unique names.
        name: a label for the segment.

    Example:
        >>> segment = Segment([Drift(0.5), Quadrupole(0.2, k1=4.0, name="Q1"), Drift(0.5)])
        >>> out = segment.with_settings({"Q1.k1": 6.0}).track(beam)
    """

    elements: tuple[Element, ...]
    name: str = eqx.field(static=True)

    def __init__(self, elements: Sequence[Element], name: str = ""):
        elements = tuple(elements)
        for i, element in enumerate(elements):
            if not isinstance(element, Element):
                kind = type(element).__name__
                raise TypeError(f"elements[{i}] must be a diffdesign.beamline Element; got {kind}")
        names = [e.name for e in elements if e.name]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"element names must be unique in a segment; repeated: {duplicates}")
        self.elements = elements
        self.name = name

    def __len__(self) -> int:
        return len(self.elements)

    def __iter__(self) -> Iterator[Element]:
        return iter(self.elements)

    @property
    def names(self) -> list[str]:
        """Names of the elements in beam order ('' for unnamed ones)."""
        return [e.name for e in self.elements]

    def index(self, name: str) -> int:
        """Position of the element called ``name``."""
        for i, element in enumerate(self.elements):
            if element.name == name:
                return i
        known = [n for n in self.names if n]
        shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise KeyError(f"no element named '{name}' in segment; elements: {shown}")

    def __getitem__(self, key: str | int) -> Element:
        return self.elements[self.index(key) if isinstance(key, str) else key]

    def __getattr__(self, name: str) -> Element:
        # Only reached when normal lookup fails: `segment.AREAMQZM1`, as in Cheetah.
        elements = self.__dict__.get("elements")
        if elements is not None and not name.startswith("_"):
            for element in elements:
                if element.name == name:
                    return element
        raise AttributeError(f"'Segment' has no attribute or element named '{name}'")

    @property
    def length(self) -> Array:
        """Total length in m."""
        return sum((e.length for e in self.elements), jnp.zeros(()))

    def with_settings(self, settings: Mapping[str, ArrayLike]) -> Segment:
        """A new segment with fields changed, keyed ``"ELEMENT.field"``.

        Values may carry leading batch axes (one value per setting); they are validated
        like constructor arguments (finite; lengths >= 0 except a drift's, which may be
        negative; misalignments of shape (..., 2)).

        Raises:
            KeyError: for an unknown element name.
            ValueError: for a field the element does not have, or a bad value.
        """
        changes: dict[int, dict[str, ArrayLike]] = {}
        for key, value in settings.items():
            element_name, dot, field = key.rpartition(".")
            if not dot:
                raise ValueError(f"setting keys look like 'ELEMENT.field'; got '{key}'")
            index = self.index(element_name)
            allowed = type(self.elements[index]).settings
            if field not in allowed:
                raise ValueError(
                    f"element '{element_name}' ({type(self.elements[index]).__name__}) has no "
                    f"setting '{field}'; settable: {list(allowed)}"
                )
            changes.setdefault(index, {})[field] = value
        elements = list(self.elements)
        for index, fields in changes.items():
            elements[index] = elements[index].replace(**fields)
        return Segment(elements, self.name)

    def linear_map(self, energy: ArrayLike, species: Species = ELECTRON) -> Map:
        """The composed first-order map as a structured table (see ``_affine``)."""
        return _affine.compose_all([e.linear_map(energy, species) for e in self.elements])

    def transfer_map(
        self, energy: ArrayLike, species: Species = ELECTRON
    ) -> Float[Array, "... 7 7"]:
        """First-order map of the whole segment at reference ``energy`` (eV)."""
        return _affine.to_array(self.linear_map(energy, species))

    def track(self, incoming: Beam) -> Beam:
        """Track a beam through the segment at first order.

        A ParameterBeam's moments and a ParticleBeam's particles are mapped by the
        composed map; settings with batch axes give a batch of outgoing beams.
        """
        return _apply(self.linear_map(incoming.energy, incoming.species), incoming, self.length)

    def track_second_order(
        self, incoming: ParticleBeam, *, reproduce_cheetah: bool = False
    ) -> ParticleBeam:
        """Track a ParticleBeam element by element with the second-order maps.

        ``reproduce_cheetah=True`` uses Cheetah 0.8.4's second-order integrals, which
        differ from MAD8's for sextupoles and combined-function bends (see
        `Element.second_order_map`); the default is MAD8's.
        """
        if not isinstance(incoming, ParticleBeam):
            raise TypeError(
                f"second-order tracking needs a ParticleBeam; got {type(incoming).__name__}"
            )
        particles = incoming.particles
        for element in self.elements:
            tensor = element.second_order_map(
                incoming.energy, incoming.species, reproduce_cheetah=reproduce_cheetah
            )
            particles = _second_order.apply(tensor, particles)
        return eqx.tree_at(
            lambda b: (b.particles, b.s), incoming, (particles, incoming.s + self.length)
        )

    def track_along(self, incoming: Beam) -> list[Beam]:
        """The beam before the first element and after each element (len(self) + 1 beams)."""
        beams = [incoming]
        total = _affine.identity()
        s = jnp.zeros(())
        for element in self.elements:
            total = _affine.compose(element.linear_map(incoming.energy, incoming.species), total)
            s = s + element.length
            beams.append(_apply(total, incoming, s))
        return beams

    def readings(self, incoming: Beam) -> dict[str, Array]:
        """Readings of the active screens (images) and BPMs (centroids), by name."""
        beams = self.track_along(incoming)
        return {
            element.name: element.reading(beams[i + 1])
            for i, element in enumerate(self.elements)
            if isinstance(element, Screen | BPM) and element.is_active
        }

    def split(self, resolution: float) -> Segment:
        """Drifts and quadrupoles cut into pieces no longer than ``resolution`` (m) in magnitude.

        The pieces compose exactly to the original element; other elements are kept.
        Used to sample beam envelopes inside elements.
        """
        check_positive(resolution, "resolution", "Segment.split", "m")
        pieces: list[Element] = []
        for element in self.elements:
            if isinstance(element, Drift | Quadrupole):
                n = max(1, int(jnp.ceil(jnp.max(jnp.abs(element.length)) / resolution)))
                pieces.extend(element.split(n))
            else:
                pieces.append(element)
        return Segment(pieces, self.name)

    def subsegment(self, start: str | None = None, end: str | None = None) -> Segment:
        """The elements from ``start`` to ``end`` inclusive (names; None for the ends)."""
        first = 0 if start is None else self.index(start)
        last = len(self.elements) - 1 if end is None else self.index(end)
        return Segment(self.elements[first : last + 1], self.name)


def _apply(linear_map: Map, incoming: Beam, length: Array) -> Beam:
    s = incoming.s + length
    if isinstance(incoming, ParameterBeam):
        mu = _affine.apply_to_vector(linear_map, incoming.mu)
        cov = _affine.apply_to_covariance(linear_map, incoming.cov)
        return eqx.tree_at(lambda b: (b.mu, b.cov, b.s), incoming, (mu, cov, s))
    if isinstance(incoming, ParticleBeam):
        matrix = _affine.to_array(linear_map)
        particles = jnp.einsum("...ij,...nj->...ni", matrix, incoming.particles)
        return eqx.tree_at(lambda b: (b.particles, b.s), incoming, (particles, s))
    raise TypeError(
        f"incoming must be a ParameterBeam or ParticleBeam; got {type(incoming).__name__}"
    )
