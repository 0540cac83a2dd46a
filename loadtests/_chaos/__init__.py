"""Parts of ``chaos.py``: load client, analysis, fault injectors, graphs, scenarios, report."""
