"""The normative format spec (``bundles/FORMAT.md``) and its golden vectors (``bundles/vectors``)."""
