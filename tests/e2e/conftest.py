"""The security attack tests' real dashboard fixture, for the browser attacks here too."""

from tests.security.conftest import dashboards  # noqa: F401  (a fixture)
