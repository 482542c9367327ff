"""
Functions that run many times on a cluster: ``@parallel`` returns the runs,
``@parallel_average`` their average with its error (ParallelAverage's workflow).

Modules: ``averaging`` (the average over the finished runs), ``seeding`` (each
run's own reproducible randomness).
"""
