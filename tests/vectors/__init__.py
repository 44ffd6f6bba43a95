"""Golden vectors (``bundles/vectors``) and the worked examples of ``bundles/FORMAT.md``."""
