"""The autoscaler: scales worker nodes to the cluster's pending demand.

- :mod:`.config`: the autoscaling config (node types, limits, idle timeout).
- :mod:`.policy`: the pure decision function (snapshot in, launches and terminations out).
- :mod:`.node_provider`: the ``NodeProvider`` interface (local, cloud, Kubernetes).
- :mod:`.local_provider`: worker nodes as process trees on this machine.
- :mod:`.monitor`: the loop on the head that observes, decides and acts.
- :mod:`.status`: formatting the autoscaler's state for ``distcore status``.

The public entry point is :func:`distcore.autoscaler.sdk.request_resources`.
"""
