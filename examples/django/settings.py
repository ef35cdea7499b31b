"""The least Django needs to talk to the database: no project, no views."""
import os

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", ""),
        "PORT": os.environ.get("PGPORT", ""),
        "NAME": os.environ.get("PGDATABASE", ""),
        "USER": os.environ.get("PGUSER", ""),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        # no ATOMIC_REQUESTS: reserve must run outside a transaction block
    }
}
INSTALLED_APPS = ["billing"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
