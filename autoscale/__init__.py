"""Custom Ray Serve autoscaling policies for graph nodes (see the autoscaler issue)."""

__all__: list[str] = []
