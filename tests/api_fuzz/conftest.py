from tests.core.conftest import serve

__all__ = ["serve"]
