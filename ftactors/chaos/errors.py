"""The chaos package's errors: bad campaign input, and a fault that cannot be carried out."""

from __future__ import annotations


class CampaignError(Exception):
    """Bad campaign input (a missing module, a target that is not replicated, an unknown fault...)."""


class FaultError(ValueError):
    """A fault cannot be carried out: no such replica, or no usable process id to signal.

    A ``ValueError``, as :func:`ftactors.chaos.pick` raised before the chaos package existed.
    """
