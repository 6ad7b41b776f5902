"""The former home of chaos campaigns: every name now lives in :mod:`ftactors.chaos`.

``from ftactors.campaign import Campaign`` keeps working for modules written before the
chaos package; new code imports ``from ftactors.chaos import Campaign``.
"""

from ftactors.chaos import *  # noqa: F401,F403
from ftactors.chaos import __all__  # noqa: F401
