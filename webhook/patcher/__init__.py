"""The workload patcher: plan and apply the remedy to workloads (`v4only patch`), rescue refused pods, and
the reconciler loop of `serve --reconcile`."""
