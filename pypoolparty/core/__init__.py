"""
The scheduler-neutral engine behind every cluster pool.

Data flows one way::

    pool (the multiprocessing.Pool surface)            core.pool, core.results
      -> supervisor (one thread per pool)              core.supervisor
           -> map runs (decisions of each map)         core.map_run, core.reports
           -> fleet (the pool's workers, all maps)     core.workers
                -> adapter (submit / states / cancel)  core.scheduler; slurm/, sun_grid_engine/
           -> pool dir, map dirs (on-disk protocol)    core.pooldir, core.workdir
                -> worker on the node                  python -m pypoolparty.core.worker

Importing this package imports nothing else, so that the worker on a compute
node loads only the modules it uses.
"""
