"""``configs/chaos.yaml``: a chaos campaign's options in a file (command-line options win)."""

from __future__ import annotations

from typing import List, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class ChaosConfig(BaseModel):
    """A campaign file (``configs/chaos.yaml``): top level, or a ``chaos:`` section."""

    model_config = ConfigDict(extra="forbid")

    module: Optional[str] = None
    faults: Union[str, List[str]] = "kill-primary,kill-backup,kill-router,pause-primary"
    fault_every_s: float = Field(4.0, gt=0)
    duration_s: Optional[float] = Field(None, gt=0)
    faults_max: Optional[int] = Field(None, ge=1)
    seed: int = 0
    pause_s: float = Field(3.0, gt=0)
    clients: Optional[int] = Field(None, ge=1)
    address: Optional[str] = None
    nodes: Optional[int] = Field(None, ge=1)
    out: str = "out/chaos"
    recover_timeout_s: float = Field(60.0, gt=0)
