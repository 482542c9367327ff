"""
What tests and a first try need: schedulers that are not a real cluster's.

* :mod:`pypoolparty.testing.local_slurm` and
  :mod:`pypoolparty.testing.local_sge` start a real SLURM cluster or Grid
  Engine cell on this machine, from its packages, in a directory of their
  own, and stop exactly what they started (``python -m ... start|stop``);
* :mod:`pypoolparty.testing.daemons` is what both share (the records of the
  daemons they started, ``/proc``, signals, ``PATH``).

Nothing in the pools imports this package.
"""
