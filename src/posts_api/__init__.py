"""posts-api: a FastAPI backend for per-user text posts, with JWT sign-up and log-in.

The package is layered like MVC: thin routers (``*/router.py``) call services (``*/service.py``,
the business rules), which call repositories (``*/repository.py``, SQLAlchemy queries).
``main.create_app`` wires the layers together; ``cli`` runs the service and its migrations.
"""

__version__ = "1.0.0"
