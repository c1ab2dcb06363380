"""`Segment`: an ordered beamline of elements, tracked as one composed map.

First-order tracking composes the element maps into one map per setting (see
``_affine``) and applies it once, which is what makes batches of settings cheap. Elements
that track themselves (cavities, which change the reference energy) cut the segment into
runs: each run is one composed map at the energy entering it.
Second-order tracking applies each element's T map in turn, as Cheetah does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from diffdesign._validation import check_positive
from diffdesign.beamline import _affine, _second_order, _stacked
from diffdesign.beamline._affine import Map
from diffdesign.beamline.beams import Beam, ParticleBeam
from diffdesign.beamline.elements import (
    BPM,
    Dipole,
    Drift,
    Element,
    Quadrupole,
    Screen,
    apply_map,
)
from diffdesign.beamline.species import ELECTRON, Species

#: ``"NAME[k]"``: the k-th occurrence (from 0) of an element name placed several times.
_OCCURRENCE = re.compile(r"^(?P<name>.+)\[(?P<k>\d+)\]$")


class Segment(eqx.Module):
    """A sequence of elements, addressed by position or by name.

    Args:
        elements: the elements in beam order. A name may repeat (one element of a lattice
            file placed several times): by name, settings reach every occurrence, and
            ``"NAME[k]"`` addresses the k-th one.
        name: a label for the segment.
        second_order: positions of elements that :meth:`track` follows with their
            second-order map (Cheetah's ``tracking_method="second_order"``; only a
            ParticleBeam can pass them); the others are tracked at first order.

    Example:
        >>> segment = Segment([Drift(0.5), Quadrupole(0.2, k1=4.0, name="Q1"), Drift(0.5)])
        >>> out = segment.with_settings({"Q1.k1": 6.0}).track(beam)
    """

    elements: tuple[Element, ...]
    name: str = eqx.field(static=True)
    second_order: tuple[int, ...] = eqx.field(static=True)

    def __init__(
        self, elements: Sequence[Element], name: str = "", *, second_order: Sequence[int] = ()
    ):
        elements = tuple(elements)
        for i, element in enumerate(elements):
            if not isinstance(element, Element):
                kind = type(element).__name__
                raise TypeError(f"elements[{i}] must be a diffdesign.beamline Element; got {kind}")
        marked = sorted(set(second_order))
        for position in marked:
            if not isinstance(position, int | np.integer) or not 0 <= position < len(elements):
                raise ValueError(
                    f"second_order holds element positions 0 ... {len(elements) - 1}; "
                    f"got {position!r}"
                )
        self.elements = elements
        self.name = name
        self.second_order = tuple(int(p) for p in marked)

    def __len__(self) -> int:
        return len(self.elements)

    def __iter__(self) -> Iterator[Element]:
        return iter(self.elements)

    @property
    def names(self) -> list[str]:
        """Names of the elements in beam order ('' for unnamed ones)."""
        return [e.name for e in self.elements]

    def indices(self, name: str) -> list[int]:
        """Positions of every element called ``name`` (empty if there is none).

        Lattice files place one element several times (a drift ``D1`` between every pair of
        quadrupoles), so a name may occur more than once; ``"NAME[k]"`` names the k-th
        occurrence (counted from 0).
        """
        positions = [i for i, element in enumerate(self.elements) if element.name == name]
        match = _OCCURRENCE.match(name)
        if positions or match is None:
            return positions
        every = self.indices(match["name"])
        k = int(match["k"])
        return [every[k]] if k < len(every) else []

    def index(self, name: str) -> int:
        """Position of the one element called ``name`` (or ``"NAME[k]"``, its k-th occurrence).

        Raises:
            KeyError: no element is called ``name``, or several are (the message lists their
                positions and how to address one).
        """
        positions = self.indices(name)
        if len(positions) == 1:
            return positions[0]
        if positions:
            raise KeyError(
                f"element name '{name}' occurs {len(positions)} times in the segment (positions "
                f"{positions}); address one as '{name}[0]' ... '{name}[{len(positions) - 1}]' "
                "or by position"
            )
        known = list(dict.fromkeys(n for n in self.names if n))
        shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        raise KeyError(f"no element named '{name}' in segment; elements: {shown}")

    def __getitem__(self, key: str | int) -> Element:
        return self.elements[self.index(key) if isinstance(key, str) else key]

    def __getattr__(self, name: str) -> Element:
        # Only reached when normal lookup fails: `segment.AREAMQZM1`, as in Cheetah.
        elements = self.__dict__.get("elements")
        if elements is not None and not name.startswith("_"):
            if any(element.name == name for element in elements):
                try:
                    return self.elements[self.index(name)]
                except KeyError as error:  # placed several times
                    raise AttributeError(error.args[0]) from None
        raise AttributeError(f"'Segment' has no attribute or element named '{name}'")

    @property
    def length(self) -> Array:
        """Total length in m."""
        return sum((e.length for e in self.elements), jnp.zeros(()))

    def with_settings(self, settings: Mapping[str, ArrayLike]) -> Segment:
        """A new segment with fields changed, keyed ``"ELEMENT.field"``.

        A name placed several times sets every occurrence (one element of a lattice file,
        placed several times, has one setting); ``"NAME[k].field"`` sets the k-th only.
        Values may carry leading batch axes (one value per setting); they are validated
        like constructor arguments (finite; lengths >= 0 except a drift's, which may be
        negative; misalignments of shape (..., 2)).

        Raises:
            KeyError: for an unknown element name.
            ValueError: for a field the element does not have, or a bad value.
        """
        if not isinstance(settings, Mapping):
            raise TypeError(
                "settings must be a mapping {'ELEMENT.field': value}; got "
                f"{type(settings).__name__}"
            )
        changes: dict[int, dict[str, ArrayLike]] = {}
        for key, value in settings.items():
            element_name, dot, field = key.rpartition(".")
            if not dot:
                raise ValueError(f"setting keys look like 'ELEMENT.field'; got '{key}'")
            positions = self.indices(element_name) or [self.index(element_name)]  # names it
            for index in positions:
                allowed = self.elements[index].settings
                if field not in allowed:
                    raise ValueError(
                        f"element '{element_name}' ({type(self.elements[index]).__name__}) has "
                        f"no setting '{field}'; settable: {list(allowed)}"
                    )
                changes.setdefault(index, {})[field] = value
        elements = list(self.elements)
        for index, fields in changes.items():
            elements[index] = elements[index].replace(**fields)
        return Segment(elements, self.name, second_order=self.second_order)

    def linear_map(self, energy: ArrayLike, species: Species = ELECTRON) -> Map:
        """The composed first-order map as a structured table (see ``_affine``); each
        element's map is taken at the reference energy entering it (cavities change it)."""
        maps = []
        for element in self.elements:
            linear_map, energy = element.map_and_energy(energy, species)
            maps.append(linear_map)
        return _affine.compose_all(maps)

    def outgoing_energy(self, energy: ArrayLike, species: Species = ELECTRON) -> Array:
        """Reference total energy (eV) after the segment for ``energy`` (eV) entering it."""
        for element in self.elements:
            energy = element.outgoing_energy(energy, species)
        return jnp.asarray(energy, dtype=float)

    def transfer_map(
        self, energy: ArrayLike, species: Species = ELECTRON
    ) -> Float[Array, "... 7 7"]:
        """First-order map of the whole segment for reference ``energy`` (eV) at its entrance."""
        return _affine.to_array(self.linear_map(energy, species))

    def track(self, incoming: Beam, *, reproduce_cheetah: bool = False) -> Beam:
        """Track a beam through the segment at first order (and the elements of
        ``second_order`` at second order).

        A ParameterBeam's moments and a ParticleBeam's particles are mapped by the
        composed map; settings with batch axes give a batch of outgoing beams.
        ``reproduce_cheetah`` applies to the second-order elements only (see
        :meth:`track_second_order`).

        Raises:
            TypeError: a ParameterBeam through a segment with second-order elements (as in
                Cheetah: its moments have no second-order map); drop them with
                ``Segment(segment.elements, segment.name)``.
        """
        _check_beam(incoming)
        if self.second_order:
            return self._track_mixed(incoming, reproduce_cheetah)[-1]
        beam, run = incoming, []
        for element in self.elements:
            if element.tracks_itself(beam):
                beam = element.track(_apply_run(run, beam) if run else beam)
                run = []
            else:
                run.append(element)
        return _apply_run(run, beam) if run else beam

    def _track_mixed(self, incoming: Beam, reproduce_cheetah: bool) -> list[Beam]:
        """Element by element, the marked ones at second order: the beam before and after each."""
        if not isinstance(incoming, ParticleBeam):
            named = [self.elements[p].name or f"#{p}" for p in self.second_order]
            raise TypeError(
                f"elements {named} are tracked at second order (second_order=...), which "
                f"needs a ParticleBeam; got {type(incoming).__name__}"
            )
        beams = [incoming]
        for i, element in enumerate(self.elements):
            beam = beams[-1]
            if i in self.second_order:
                tensor = element.second_order_map(
                    beam.energy, beam.species, reproduce_cheetah=reproduce_cheetah
                )
                particles = _second_order.apply(tensor, beam.particles)
                beams.append(
                    eqx.tree_at(
                        lambda b: (b.particles, b.s), beam, (particles, beam.s + element.length)
                    )
                )
            else:
                beams.append(element.track(beam))
        return beams

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
        beam = incoming
        for element in self.elements:
            if element.tracks_itself(beam):
                beam = element.track(beam)
                continue
            tensor = element.second_order_map(
                beam.energy, beam.species, reproduce_cheetah=reproduce_cheetah
            )
            beam = eqx.tree_at(
                lambda b: (b.particles, b.s),
                beam,
                (_second_order.apply(tensor, beam.particles), beam.s + element.length),
            )
        return beam

    def track_along(self, incoming: Beam) -> list[Beam]:
        """The beam before the first element and after each element (len(self) + 1 beams)."""
        _check_beam(incoming)
        if self.second_order:
            return self._track_mixed(incoming, reproduce_cheetah=False)
        beams = [incoming]
        start, total, s = incoming, _affine.identity(), jnp.zeros(())  # since the last cavity
        for element in self.elements:
            if element.tracks_itself(start):
                start, total, s = element.track(beams[-1]), _affine.identity(), jnp.zeros(())
                beams.append(start)
                continue
            total = _affine.compose(element.linear_map(start.energy, start.species), total)
            s = s + element.length
            beams.append(apply_map(total, start, s))
        return beams

    def readings(self, incoming: Beam) -> dict[str, Array]:
        """Readings of the active screens (images) and BPMs (centroids), by name
        (``"NAME[k]"`` for the k-th occurrence of a name placed several times)."""
        beams = self.track_along(incoming)
        counts, seen = Counter(self.names), Counter()
        out = {}
        for i, element in enumerate(self.elements):
            k = seen[element.name]
            seen[element.name] += 1
            if isinstance(element, Screen | BPM) and element.is_active:
                key = element.name if counts[element.name] == 1 else f"{element.name}[{k}]"
                out[key] = element.reading(beams[i + 1])
        return out

    def split(self, resolution: float) -> Segment:
        """Drifts, quadrupoles and bends cut into pieces no longer than ``resolution`` (m) in
        magnitude.

        The pieces compose exactly to the original element (first order; a bend's faces go
        to its first and last piece); other elements are kept. Used to sample beam envelopes
        and optics inside elements. Elements tracked at second order are
        kept whole (the second-order maps of the pieces compose to the whole one's only up
        to third-order terms).
        """
        check_positive(resolution, "resolution", "Segment.split", "m")
        pieces: list[Element] = []
        marked: list[int] = []
        for i, element in enumerate(self.elements):
            if i in self.second_order:
                marked.append(len(pieces))
                pieces.append(element)
            elif isinstance(element, Drift | Quadrupole | Dipole):
                n = max(1, int(jnp.ceil(jnp.max(jnp.abs(element.length)) / resolution)))
                pieces.extend(element.split(n))
            else:
                pieces.append(element)
        return Segment(pieces, self.name, second_order=marked)

    def subsegment(self, start: str | None = None, end: str | None = None) -> Segment:
        """The elements from ``start`` to ``end`` inclusive (names, or ``"NAME[k]"`` for a name
        placed several times; None for the ends)."""
        first = 0 if start is None else self.index(start)
        last = len(self.elements) - 1 if end is None else self.index(end)
        marked = [p - first for p in self.second_order if first <= p <= last]
        return Segment(self.elements[first : last + 1], self.name, second_order=marked)


def _check_beam(incoming) -> None:
    if not isinstance(incoming, Beam):
        raise TypeError(
            "incoming must be a ParameterBeam or ParticleBeam (diffdesign.beamline); got "
            f"{type(incoming).__name__}"
        )


def _apply_run(elements: list[Element], incoming: Beam) -> Beam:
    """``incoming`` through consecutive elements composed into one map at its energy."""
    linear_map = _stacked.composed_map(elements, incoming.energy, incoming.species)
    return apply_map(linear_map, incoming, _stacked.total_length(elements))
