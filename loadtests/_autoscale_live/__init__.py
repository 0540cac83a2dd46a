"""autoscale_live.py's parts: the scenario (graph, policies), the worker that runs it on a live
cluster, the analysis of its samples, the plots and the report."""
