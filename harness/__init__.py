"""Running the service for real and driving traffic at it, shared by `tests/`, `benchmarks/`
and `deploy/rehearse/`: scratch ports, databases and processes (`scratch`), the audited
submission load (`load`) and hostile traffic beside it (`traffic`).

It sits beside the code it exercises, not inside `tests/`, so that a benchmark or a
rehearsal never imports a test module and a test never imports a benchmark.
"""
