"""
Small clusters on this machine, for tests and for a first try.

Each module starts a real scheduler from the machine's packages in a
directory of its own and stops exactly what it started.
"""
