"""The capability tracker inside `v4only serve`: live node capability and namespace labels.

Started by `start.start_tracker`; one module per thread kind below, the timings in config.py.

Threads, all stopped by `TrackerHandle.stop()`:
- one reflector per resource (Nodes, Namespaces, failed Pods): list, then watch from the list's
  resourceVersion; `410 Gone` relists at once; any other error reconnects after an exponential,
  capped, jittered backoff. Each watch asks the server to end it after `timeoutSeconds` and reads
  with a client-side timeout a little longer than that: a connection that hangs without events or
  closing is dropped and rewatched (the watchdog);
- the coordinator: the only writer of the `Inventory` (just the fields decisions need), fetches each
  kubelet's /configz through a bounded pool when a node appears, when its kubelet changes (bootID or
  version) and on a jittered timer, and publishes a new immutable `Capability` into `ClusterState`
  when something changed (at most every `publish_interval_seconds`), or confirms the current one
  while the node and namespace watches are alive (failed pods are extra evidence: a missing
  permission to watch them does not make the rest stale);
- with `publish_labels`, the label publisher: leader election on a Lease, and only the leader keeps
  `v4only.io/ipv6-sysctl=allowed|forbidden` on nodes (removed when unknown).

Evidence (`SysctlForbidden` pods naming a managed sysctl as not allowlisted) marks the pod's node
forbidden while the pod exists, until that kubelet's configuration changes: a different configz
allowlist, or a restart seen as a new bootID or kubelet version.
"""
