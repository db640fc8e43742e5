"""The gpu profile: real Hugging Face models and data on one GPU, and the paper's recipe on a node.

The same pipeline as the CPU world's (SFT student, precomputed references, DPO through
:mod:`dpolib.trl_bridge`, AlpacaEval-style evaluation with :mod:`dpolib.evaluation`),
with the lab's synthetic world replaced by the paper's ingredients at small scale:

* :mod:`.profile` — model ids, subset sizes, recipe and β grids (:class:`dpolib.hub.profile.HubProfile`) and the
  per-GPU runtime choices (dtype, micro-batch) that do not enter a record's key;
* :mod:`.data` — UltraFeedback-binarized, UltraChat and AlpacaEval loaders (hub id, local path or ``Dataset``);
* :mod:`.sft` — the SFT student, made as the paper made its Qwen2 student (App. B), cached by config;
* :mod:`.judge` — a local reward-model judge, or the real AlpacaEval 2 (``alpaca_eval`` CLI);
* :mod:`.paper_recipe` — the paper's exact recipe on a node of GPUs (``accelerate launch``);
* :mod:`.launch_check` — that recipe launched for real with 2 CPU processes, checked against one process.

Runs go through :mod:`dpolib.experiments` (its :mod:`~dpolib.experiments.gpu` backend); nothing here imports a
model at import time; ``python -m dpolib.experiments --help`` lists the commands.
"""
