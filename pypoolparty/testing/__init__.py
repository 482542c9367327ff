"""
What tests and a first try need: real schedulers on this machine, and a
fake one.

* :mod:`~pypoolparty.testing.local_slurm` and
  :mod:`~pypoolparty.testing.local_sge` start a real SLURM cluster or Grid
  Engine cell from the machine's packages and stop exactly what they
  started; both are a :class:`~pypoolparty.testing.local_cluster.LocalCluster`
  and share one command line (:mod:`~pypoolparty.testing.cli`,
  ``python -m pypoolparty.testing.local_slurm start|stop|status|env|install``);
* what they share: :mod:`~pypoolparty.testing.daemons` (the records of the
  daemons they started), :mod:`~pypoolparty.testing.processes` (``/proc``,
  signals);
* what each owns: :mod:`~pypoolparty.testing.slurm_config` (the cluster's
  directory and ``slurm.conf``), :mod:`~pypoolparty.testing.slurm_processes`
  (its jobs' processes, a failing node), :mod:`~pypoolparty.testing.munge`;
  :mod:`~pypoolparty.testing.sge_config` (the Grid Engine cell).

* :mod:`~pypoolparty.testing.fake` is no real scheduler: a
  :class:`~pypoolparty.testing.fake.FakeScheduler` runs the real worker code
  in local subprocesses and loses, holds, requeues or forgets workers and
  fails commands on demand (its scripts: :mod:`~pypoolparty.testing.fake_commands`),
  for fast tests of the core's decisions.

Nothing in the pools imports this package.
"""
