"""The edgernn benchmark suite: ``python tools/bench/run.py`` (see docs/benchmarks.md).

Modules: ``models`` (the four benchmark models in every framework, same weights), ``peers``
(the contenders and their agreement checks), ``tflite_runtime_peer`` (tflite-runtime 2.14 in a
venv of its own: it needs numpy<2), ``sections`` (step, block, streams, crossover, GIL),
``cold`` (fresh-process start-up), ``report`` (markdown), ``run`` (the command).
"""
