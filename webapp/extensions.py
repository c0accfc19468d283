"""The Flask extensions, created unbound and initialised in ``create_app``."""
import logging

from flask_compress import Compress
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


class Database(SQLAlchemy):
    """Flask-SQLAlchemy whose end-of-request session removal cannot fail the request.

    The library removes the session in an app-context teardown, which runs
    after the error handlers: a connection lost between a page's last query
    and that moment (a database restarting) would make its rollback raise
    there, and the server would answer with its own bare 500 instead of the
    page. The lost connection has been handed back to the pool as invalid by
    then (the pool checks every connection before use), so only the logging
    and forgetting the session are left to do.
    """

    def _teardown_session(self, exc):
        try:
            super()._teardown_session(exc)
        except SQLAlchemyError as error:
            log.warning("a database connection was lost at the end of a request (%s); the "
                        "page went out all the same", str(error).splitlines()[0][:200])
            self.session.registry.clear()  # remove() stops short of this when close() raises


db = Database(model_class=Base)
csrf = CSRFProtect()
login_manager = LoginManager()
#: gzip / brotli for pages and CSVs when the browser accepts it
compress = Compress()
