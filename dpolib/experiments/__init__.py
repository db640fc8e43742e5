"""The experiments: typed run configs and grids, typed records, one runner for every profile, one CLI.

Modules::

    config     RunConfig (documented field by field), the profiles, every β grid in one table
    records    the typed Record / Metrics view; reading, writing, selecting; best β; headline arms
    metrics    every metric a record holds, computed once for every profile
    backend    what a backend supplies (world, references, training settings, judge)
    cpu        the CPU world's backend (dpolib.world)
    gpu        real Hugging Face models (dpolib.hub)
    runner     the one pipeline: config -> record with provenance
    lr_rule    the DPO learning-rate rule (validation DPO loss at β = 0.1, fixed before any test prompt)
    ensemble   K copies of a small causal LM stacked into one model (one forward for K members)
    sweep      the sweep engine: the K runs of one arm that share a student, trained as one batched run
    exact_records, exact   the exact world's sweeps and the theory chapter's checks as records (configs, keys; writer)
    __main__   python -m dpolib.experiments {world,run,show,estimate,exact}
"""
