"""mixscale: compute-optimal data mixtures at any scale and data-source utility.

The math core (pure numpy/scipy):
    runtable  -> validated table of training runs (tokens per domain, losses per eval domain)
    objective -> scalar objective per run (mean loss, weighted, subset, perplexity)
    design    -> base-run detection and the perturbation each run applies
    forms     -> per-domain response functions in one canonical shape A * (S + n) ** -b
    fit       -> per-domain fits with diagnostics and fallbacks (DDO step 1)
    solve     -> exact KKT solver on the simplex with bounds and costs (DDO step 2)
    predict   -> AutoScale: optimal token vectors at larger scales
    utility   -> data-source utility from annealing runs (gains, costs, rank flips, allocation)
"""

__version__ = "0.1.0"
