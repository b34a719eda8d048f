"""From run folders to the paper's tables: no model is trained here.

  dimensions.py   the four dimensions every reward scores, without torch
  stats.py        95% intervals with prompts and training seeds both random
  claims.py       the paper's claims as it words them, each with a verdict
  report.py       a report of one or more runs: Tables 1, 3, 4, plots, video grids
  vbench_eval.py  Table 2: VBench's suite, scored in VBench's own environment

    python evaluate.py --report runs/toy-redpo --out runs     # the report (evaluate.py calls report.py)
    python -m analysis.vbench_eval --help
"""
