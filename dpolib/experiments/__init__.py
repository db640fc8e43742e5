"""The experiments: typed run configs and grids, typed records, one runner for every profile, one CLI.

Modules::

    config     RunConfig (documented field by field), the profiles, every β grid in one table
    records    the typed Record / Metrics view; reading, writing, selecting; best β; headline arms
    metrics    every metric a record holds, computed once for every profile
    backend    what a backend supplies (world, references, training settings, judge)
    cpu        the CPU world's backend (dpolib.world)
    gpu        real Hugging Face models (dpolib.hub)
    runner     the one pipeline: config -> record with provenance
    __main__   python -m dpolib.experiments {world,run,show,estimate}
"""
