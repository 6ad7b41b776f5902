"""Behaviour that the mutation run of ``ftactors/core`` showed untested (see docs/mutation.md)."""

from __future__ import annotations
