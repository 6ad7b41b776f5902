"""Host logic shared by the Ray actors and the simulator: pure, with no threads, clocks or I/O.

The protocol cores (:mod:`ftactors.core`) decide the protocol; a host carries their effects out
over a transport. What a host decides itself (which router incarnation a Deliver belongs to,
in which order Delivers apply, which thread drives the core, where output goes) lives here,
so that the simulator runs the same decisions as the Ray runtime. Where a replica goes
(:mod:`ftactors.host.placement`) is decided here too, for group creation and for replacements.
"""

from ftactors.host.placement import PlacementError, choose_node, plan_nodes
from ftactors.host.turns import Claim, ReplicaTurns, Verdict

__all__ = ["Claim", "PlacementError", "ReplicaTurns", "Verdict", "choose_node", "plan_nodes"]
