"""The remedy lab: remedy-lab.md's measurements rebuilt with real parts in network namespaces made by the tests.

harness.py (the Lab: namespaces, veth, run/popen in the pod, DNS behaviour, sysctl, F2), netns.py (names,
clean-up, sweeping), servers.py (the router's DNS server and PEP 503 index), tools.py (the real uv, the
index's wheels, the resolver probes), chronicle.py (Chronicle-like images), matrix.py (the tables as cases,
measured and rendered); conftest.py has the fixtures. Usage for scenarios: /work/notes/lab.md.
"""
