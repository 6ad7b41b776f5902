"""The hosts around the pure cores, written once: the Ray actors and the simulator both run them.

The protocol cores (:mod:`ftactors.core`) decide the protocol; a host carries their effects out
over a transport it is given. What a host decides itself (which router incarnation a Deliver belongs
to, in which order Delivers apply, which thread drives the core, where output goes, whether a primary
with suspended calls keeps its Deliver, what a restarted router takes over, when a replacement
replica starts) lives here, so that the simulator runs the same decisions as the Ray runtime. Where
a replica goes (:mod:`ftactors.host.placement`) is decided here too, for group creation and for
replacements. The I/O is injected: :class:`~ftactors.host.router.RouterIO` and
:class:`~ftactors.host.replica.ReplicaIO`.
"""

from ftactors.host.placement import PlacementError, choose_node, misplaced, plan_nodes
from ftactors.host.replica import OrphanWatch, ReplicaHost, ReplicaIO
from ftactors.host.router import RouterHost, RouterIO
from ftactors.host.turns import Claim, ReplicaTurns, Verdict

__all__ = ["Claim", "OrphanWatch", "PlacementError", "ReplicaHost", "ReplicaIO", "ReplicaTurns", "RouterHost", "RouterIO",
           "Verdict", "choose_node", "misplaced", "plan_nodes"]
