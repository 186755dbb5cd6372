"""The `v4only` command line: main.py parses, one module per command; serve.py is the one place that wires
the parts (server, tracker, patcher) together."""
