"""``NodeProvider``: how the autoscaler gets and gives back machines.

The autoscaler loop on the head calls a provider in this order, once per
update (every ``update_interval_s``), always from one worker thread at a time
(so a provider may block on a cloud API without stalling the head):

1. :meth:`NodeProvider.non_terminated_nodes` — the provider's node ids that
   are launching or running (not terminated, not terminating).
2. :meth:`NodeProvider.node_tags` and :meth:`NodeProvider.is_running` for
   each of those ids — its node type (``TAG_NODE_TYPE``) and whether it has
   booted. A node that runs but has not joined the cluster yet counts as
   launching; the autoscaler matches a provider node to the cluster node that
   registered with the label ``LABEL_PROVIDER_NODE_ID`` equal to its id.
3. :meth:`NodeProvider.create_node` ``(node_type, count)`` when demand does
   not fit — it should return once the request is accepted, not once the
   nodes have booted; the nodes show up in ``non_terminated_nodes`` at once.
4. :meth:`NodeProvider.terminate_node` ``(node_id)`` for idle nodes (and for
   nodes that failed to join in time or whose node process died).
5. :meth:`NodeProvider.shutdown` once, when the head stops.

Plugging in a cloud or Kubernetes provider: ``create_node`` asks the cloud
for ``count`` instances (or scales a Kubernetes node group / creates pods)
whose boot command runs ``distcore start --address <head> --labels
'{"distcore.io/provider-node-id": "<instance id>", "distcore.io/node-type": "<type>"}'``
with ``DISTCORE_AUTH_TOKEN`` set to the cluster token; ``non_terminated_nodes``
lists the instances tagged with the cluster's name; ``node_tags`` reads the
instance's tags; ``is_running`` is the instance state; ``terminate_node``
deletes the instance. Nothing else in the autoscaler depends on where nodes run.

Example (the smallest provider, for tests)::

    class FakeProvider(NodeProvider):
        def __init__(self):
            self.nodes = {}
        def non_terminated_nodes(self):
            return list(self.nodes)
        def create_node(self, node_type, count):
            for _ in range(count):
                self.nodes[f"n{len(self.nodes)}"] = node_type
        def terminate_node(self, node_id):
            self.nodes.pop(node_id, None)
        def node_tags(self, node_id):
            return {TAG_NODE_TYPE: self.nodes[node_id]}
        def is_running(self, node_id):
            return node_id in self.nodes
"""

from __future__ import annotations

from abc import ABC, abstractmethod

TAG_NODE_TYPE = "distcore-node-type"
TAG_NODE_STATUS = "distcore-node-status"  # optional: free text shown by ``distcore status``
LABEL_PROVIDER_NODE_ID = "distcore.io/provider-node-id"
LABEL_NODE_TYPE = "distcore.io/node-type"


class NodeProvider(ABC):
    """Launches and terminates worker nodes for the autoscaler (see the module docstring for the call order)."""

    @abstractmethod
    def non_terminated_nodes(self) -> list[str]:
        """Ids of this provider's nodes that are launching or running."""

    @abstractmethod
    def create_node(self, node_type: str, count: int) -> None:
        """Start ``count`` nodes of ``node_type``; return once they are requested (not booted)."""

    @abstractmethod
    def terminate_node(self, node_id: str) -> None:
        """Stop and release node ``node_id`` (no error if it is already gone)."""

    @abstractmethod
    def node_tags(self, node_id: str) -> dict[str, str]:
        """Tags of a node; must include ``TAG_NODE_TYPE``."""

    @abstractmethod
    def is_running(self, node_id: str) -> bool:
        """Whether the node has booted (its distcore node process is up)."""

    def shutdown(self) -> None:
        """The head is stopping: release what the provider holds (default: nothing).

        A local provider stops the node processes it started; a cloud provider
        usually leaves instances to ``distcore down``.
        """
        return None
