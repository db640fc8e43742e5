"""The CPU world: the paper's setting rebuilt at a size that trains from scratch on a CPU.

Modules::

    profiles   the world's sizes (smoke / cpu / cpu-low-lr): every size in one frozen object
    task       the task language: prompts, gold scorer, fillers, degeneration
    families   two model families (tokenizer, chat template, architecture)
    writers    eight programmatic writers of varied quality, and the judge's baseline writer
    pretrain   pretraining and SFT from scratch, cached on disk by config
    pairs      the candidate pool (siblings first), the GPT-4-like annotator, binarised preference data, test prompts
    judge      the world's judge: gold, win rate, the calibrated length-controlled win rate, the degenerate check
    report     the world report: stage times, SFT quality, data statistics, design
    compatibility  measured compatibility between each student and each candidate reference

Nothing here knows about experiments or chapters (:mod:`dpolib.experiments` builds on it).
"""
