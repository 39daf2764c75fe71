"""A URLconf whose import fails with an error that is neither ImportError nor
ImproperlyConfigured (check W011)."""

raise RuntimeError("a typo in the project's urls.py")
