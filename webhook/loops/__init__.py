"""What the long-running parts share, so none of them reaches into another: the back-off and counters of
their loops, leader election on a Lease, and `ClusterState`, which the tracker writes and the admission
server and the reconciler read. Imports only core and adapters.
"""
