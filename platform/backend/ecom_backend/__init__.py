"""ecom reference backend: an example of the platform's backend contract."""

__version__ = "1.0.0"
