"""salon's benchmark: salon, ngIRCd and InspIRCd under the same load, on a 2-core machine.

Run ``python -m bench --help``; the method is described in docs/BENCHMARKS.md.
"""
