"""The admission webhook's HTTP path: the app, its replica cache, the read deadline, the metrics."""
