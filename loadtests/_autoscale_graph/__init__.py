"""autoscale_graph_live.py's parts: the scenario (a two-stage graph with a router, scaled by the
graph-level policy), the worker that runs it on a live cluster, the analysis of its samples and
decisions, the plots and the report."""
