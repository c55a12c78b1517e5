"""The run queue: submit runs from anywhere, train them on any worker (procrastinate).

:func:`submit`, :func:`cancel_run` and :func:`queue_overview` are what the CLI,
the Python API and the server call; :func:`run_worker` is ``signdb worker``.
The worker and its procrastinate import only when a worker starts.
"""

from signdb.queue.submit import DEFAULT_QUEUE, cancel_run, queue_overview, submit, submit_sweep

__all__ = ["DEFAULT_QUEUE", "cancel_run", "queue_overview", "submit", "submit_sweep"]
