"""The chapters' analysis: one module per chapter, pure functions of records.

Each module serves one chapter of the book and exposes the same face: ``evidence``
(the records it reads), ``claims`` (the paper's claims with computed verdicts),
tables and figures. Shared parts (labels, seed pooling, display helpers) are in
:mod:`.common`. A chapter module never trains, samples or loads a model; what it needs
measured is measured by :mod:`dpolib.world` or :mod:`dpolib.experiments` and stored.

Modules::

    common     labels, seed pooling, comparisons and display helpers shared by the chapters
    evidence   World 4's evidence rules: paired comparisons pooled over world seeds, the validity gate
    theory     the theory chapter's checks, read from their record (notebooks/theory.md)
    exact      the exact tabular world's sweeps, read from their record (notebooks/exact_world.md)
    world      the controlled-world chapter (notebooks/controlled_world.md; with world4, World 4's design and gate)
    cost       what the CPU reproduction costs: wall time, stage seconds, machines, size of results/
    findings   the paper's headline findings against every scale, the front page of the Experiments part (notebooks/findings.md)
    rq1        RQ1: how strong should the KL constraint be? (notebooks/rq1_beta.md; with rq1_tokens, rq1_figures)
    rq2        RQ2: is the reference necessary? (notebooks/rq2_reference.md)
    rq3        RQ3 and Appendix E: stronger references (notebooks/rq3_stronger_reference.md)
    practice   the practitioner's checklist and its evidence (notebooks/practice.md; with practice_dynamics)
"""
