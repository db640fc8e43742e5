"""The chapters' analysis: one module per chapter, pure functions of records.

Each module serves one chapter of the book and exposes the same face: ``evidence``
(the records it reads), ``claims`` (the paper's claims with computed verdicts),
tables and figures. Shared parts (labels, seed pooling, display helpers) are in
:mod:`.common`. A chapter module never trains, samples or loads a model; what it needs
measured is measured by :mod:`dpolib.world` or :mod:`dpolib.experiments` and stored.

Modules::

    common     labels, seed pooling, comparisons and display helpers shared by the chapters
    world      the controlled-world chapter (notebooks/controlled_world.md)
    rq1        RQ1: how strong should the KL constraint be? (notebooks/rq1_beta.md)
    rq2        RQ2: is the reference necessary? (notebooks/rq2_reference.md)
    rq3        RQ3 and Appendix E: stronger references (notebooks/rq3_stronger_reference.md)
    practice   training dynamics and the practitioner's checklist (notebooks/practice.md)
"""
