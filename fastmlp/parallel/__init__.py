"""Scale-out: many fits over a Dask cluster (``dask``), one fit over MPI ranks (``mpi``, with
synchronized batchnorm in ``sync_batchnorm``). Both import their cluster libraries lazily (the
``dask`` and ``mpi`` extras)."""
