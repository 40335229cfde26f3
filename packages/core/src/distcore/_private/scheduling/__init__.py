"""Pure scheduling bookkeeping: resource sets, node choice, placement groups.

Nothing in this package does I/O, starts threads or talks to the network; the
node manager and the control store (GCS) feed it state and act on its answers.

- :mod:`.resources`: ``ResourceSet`` (fixed-point quantities) and
  ``NodeResources`` (one node's accounting, GPU ids, placement-group bundles).
- :mod:`.policy`: ``SchedulingPolicy.decide`` picks a node for a lease.
- :mod:`.placement`: ``place_bundles`` maps placement-group bundles to nodes.
"""
