"""The ARES camera readout answering diffdesign's SubprocessSimulator protocol.

Run as ``python experiments/joint/_camera_server.py REQUEST.npz RESPONSE.npz`` (what
:class:`diffdesign.surrogates.SubprocessSimulator` does): psi = [r], x = [mu_x, sigma_x,
mu_y, sigma_y], y = the measured moments (m), from
:func:`diffdesign.beamline.ares.camera.simulate`. It lives here, not in the beamline
package, because the library's domains may not import :mod:`diffdesign.surrogates`.
"""

from diffdesign.beamline.ares.camera import sample_inputs, simulate
from diffdesign.surrogates.blackbox import serve

if __name__ == "__main__":
    serve(simulate, sample_inputs)
