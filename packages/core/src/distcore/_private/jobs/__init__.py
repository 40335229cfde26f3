"""The jobs API (Ray Jobs equivalent): an HTTP server on the head that runs
submitted entrypoint commands as drivers of the cluster.

Modules, from the inside out:

- :mod:`common`: ``JobStatus``, ``JobInfo`` and request validation (standard
  library only; the public client shares them);
- :mod:`state`: the pure state machine of one job (events in, new info out);
- :mod:`manager`: job records in the control store's key-value store, and the
  supervisor that runs each driver as a subprocess;
- :mod:`app`: the Starlette routes and the token check in front of them;
- :mod:`server`: uvicorn on the head's event loop, wired to the control store;
- :mod:`head`: what ``node_main`` calls; without ``distcore[default]`` the
  head runs on without the API and says what to install.
"""
